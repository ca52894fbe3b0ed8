"""Following faces through a video's sampled frames: full detection on keyframes, a local look in between.

Full MTCNN on a 1080p frame costs about 0.1 CPU-second; most of it is the PNet pyramid over the
whole picture. Between two faces found a tenth of a second apart there is little to search, so
:class:`FaceFollower` runs the full :class:`vision.face_detector.FaceDetector` only on every
``keyframe_every``-th sampled frame and, on the frames in between, looks for each face only
around its last box with MTCNN's last stage (ONet, 48x48 windows): the previous box and a few
windows shifted from it are scored in one batch, and the best window's regressed box and its
five landmarks become the face in this frame. The landmarks therefore still come from the
detector, and crops are aligned from them exactly as full detection would align them.

A face is followed only while ONet passes it with the detector's gate (``min_confidence``, the
minimum face size and the landmark geometry of :func:`vision.face_geometry.plausible_landmarks`)
and its new box overlaps the old one. When any followed face fails, the track is *lost* and the
frame gets full detection at once. Faces that appear between keyframes are found at the next
keyframe. The gate's second look (re-detection in the aligned crop) runs on fully detected
frames only: a followed face continues one that passed it.

Keyframes are the sampled frames 0, N, 2N, ...; frames are read a chunk at a time so that up
to ``batch_frames`` keyframes go through MTCNN in one batched call (about half the cost of one
call each), holding at most ``buffer_mb`` of frames. ``keyframe_every=1`` is therefore plain
detection of every frame, ``batch_frames`` at a time, as the dataset builder always did.
Following pays when sampled frames are close in time (a few per second or more); with frames
seconds apart most tracks are lost and each loss costs an unbatched full detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pydantic
from pydantic import ConfigDict, Field

from vision.face_detector import DetectedFace, FaceDetector
from vision.face_geometry import plausible_landmarks
from vision.lighting import enhance_for_detection
from vision.face_refine import PIXEL_CENTRE, PIXEL_SCALE, window_patch, window_patches
from vision.video import iou


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class FollowConfig:
    """How :class:`FaceFollower` alternates full detection and following."""

    # Full-frame detection on every N-th sampled frame; 1 = every frame (no following).
    keyframe_every: int = Field(8, ge=1)
    # Extra search windows are offset by this share of the face box side (up/down/left/right).
    shift: float = Field(0.15, ge=0, le=0.5)
    # A followed box must overlap its previous box by this IoU, else the track is lost.
    min_overlap: float = Field(0.3, gt=0, le=1)
    refine: bool = True  # look a second time in the square of the box found (steadier landmarks)
    batch_frames: int = Field(8, ge=1)  # keyframes per batched MTCNN call (batching halves detection cost)
    # At most this many MB of frames are held to batch keyframes (fewer per batch if need be).
    buffer_mb: int = Field(256, ge=1)


@dataclass
class FollowStats:
    """What a follower did, summed over every video it followed."""

    frames: int = 0  # sampled frames seen
    full_detections: int = 0  # frames that got full-frame detection (keyframes and re-detections)
    followed: int = 0  # frames whose faces were found by following alone
    lost: int = 0  # frames where a track was lost, so full detection ran on them
    faces_followed: int = 0  # faces found by following


def square_windows(box: tuple[float, float, float, float], shift: float) -> np.ndarray:
    """Square search windows around a face box: centred on it, then shifted by ``shift`` sides.

    Args:
        box: x, y, width, height of the face in frame pixels.
        shift: offset of the four extra windows as a share of the window side (0: one window).

    Returns:
        float array (n, 3) of window x, y (top-left) and side, as MTCNN squares RNet's boxes.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    cx, cy = x + w / 2.0, y + h / 2.0
    offsets = [(0.0, 0.0)]
    if shift > 0:
        offsets += [(-shift, 0.0), (shift, 0.0), (0.0, -shift), (0.0, shift)]
    return np.array([(cx - side / 2.0 + dx * side, cy - side / 2.0 + dy * side, side) for dx, dy in offsets])


class FaceFollower:
    """Finds the faces of a video's sampled frames with full detection only every few frames.

    Args:
        detector: the loaded detector used on keyframes (and whose gate followed faces must pass).
        config: keyframe interval and following settings; ``FollowConfig()`` when None.
    """

    def __init__(self, detector: FaceDetector, config: FollowConfig | None = None) -> None:
        self.detector = detector
        self.config = config or FollowConfig()
        self.stats = FollowStats()
        self._onet: Any = None

    def follow(self, frames: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray, list[DetectedFace]]]:
        """Yields ``(index, frame, faces)`` for each ``(index, frame)`` of one video, in order.

        ``faces`` are as :meth:`FaceDetector.detect` returns them: at least the minimum face
        size, gated, most confident first. Start a new call for each video (tracks do not carry over).
        Sampled frames number 0, 1, 2, ... in arrival order; those at multiples of
        ``keyframe_every`` are keyframes, detected a chunk at a time in one batched MTCNN call.
        """
        tracks: list[DetectedFace] = []
        chunk: list[tuple[int, np.ndarray]] = []
        size = 0
        for item in frames:
            if not chunk:
                size = self._chunk_frames(item[1])
            chunk.append(item)
            if len(chunk) == size:
                for index, frame, faces in self._chunk(chunk, tracks):
                    tracks = faces  # the last frame's faces are followed into the next chunk
                    yield index, frame, faces
                chunk = []
        if chunk:
            yield from self._chunk(chunk, tracks)

    def _chunk_frames(self, frame: np.ndarray) -> int:
        """Frames per chunk: ``keyframe_every`` times as many keyframes as fit the buffer and the batch."""
        every = self.config.keyframe_every
        fit = int(self.config.buffer_mb * 2**20 // max(every * frame.nbytes, 1))
        return every * max(1, min(self.config.batch_frames, fit))

    def _chunk(self, chunk: list[tuple[int, np.ndarray]], tracks: list[DetectedFace]
               ) -> Iterator[tuple[int, np.ndarray, list[DetectedFace]]]:
        """One chunk: keyframes detected in one batch, the frames between them followed from them."""
        every = self.config.keyframe_every
        keyframes = iter(self.detector.detect_batch([frame for _, frame in chunk[::every]]))
        for position, (index, frame) in enumerate(chunk):
            self.stats.frames += 1
            if position % every == 0:
                faces = next(keyframes)
                self.stats.full_detections += 1
            elif not tracks:
                faces = []  # nothing to follow: new faces are found at the next keyframe
            else:
                followed = self._follow(frame, tracks)
                if followed is None:  # a track was lost: look at the whole frame now
                    faces = self.detector.detect(frame)
                    self.stats.lost += 1
                    self.stats.full_detections += 1
                else:
                    faces = followed
                    self.stats.followed += 1
                    self.stats.faces_followed += len(faces)
            tracks = faces
            yield index, frame, faces

    def _network(self) -> Any:
        """MTCNN's ONet with its published weights, on ONNX Runtime (loaded once per follower)."""
        if self._onet is None:
            from agents.onnx_model import OnnxModel
            from vision.mtcnn_export import MODEL_DIR

            self._onet = OnnxModel(MODEL_DIR / "onet.onnx").run
        return self._onet

    def _follow(self, frame: np.ndarray, tracks: list[DetectedFace]) -> list[DetectedFace] | None:
        """Each track's face in ``frame`` by ONet near its last box; None when any track is lost."""
        found: list[DetectedFace | None] = list(tracks)
        passes = (self.config.shift, 0.0) if self.config.refine else (self.config.shift,)
        for shift in passes:
            # The second pass looks again in the square of the box found, as MTCNN's ONet looks at
            # RNet's squared box: landmarks come from a window centred on the face.
            found = self._best(frame, [square_windows(face.box, shift) for face in found])
            if any(face is None for face in found):
                return None
        if any(iou(new.box, old.box) < self.config.min_overlap for new, old in zip(found, tracks)):
            return None
        return _distinct(found)

    def _best(self, frame: np.ndarray, windows: list[np.ndarray]) -> list[DetectedFace | None]:
        """Per track, the face in its best-scored window (None when it fails the gate); one ONet call."""
        stacked = np.concatenate([self._look(frame, w) for w in windows])
        offsets, points, scores = self._network()((stacked.astype(np.float32) - PIXEL_CENTRE) / PIXEL_SCALE)
        found: list[DetectedFace | None] = []
        start = 0
        for wins in windows:
            rows = np.arange(start, start + len(wins))
            start += len(wins)
            best = rows[int(np.argmax(scores[rows, 1]))]
            found.append(self._candidate(frame, wins[best - rows[0]], offsets[best], points[best],
                                         float(scores[best, 1])))
        return found

    def _look(self, frame: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """The 48x48 patches of one track's windows, light-corrected as the detector would."""
        x0 = int(np.floor(windows[:, 0].min()))
        y0 = int(np.floor(windows[:, 1].min()))
        side = int(np.ceil(max((windows[:, 0] + windows[:, 2]).max() - x0, (windows[:, 1] + windows[:, 2]).max() - y0)))
        # The light correction sees the region around the face (all windows), not the whole frame.
        region = window_patch(frame, np.array([x0, y0, side]), size=side)
        if self.detector.enhance:
            region = enhance_for_detection(region)[0]
        return window_patches(region, windows - np.array([x0, y0, 0.0]))

    def _candidate(self, frame: np.ndarray, window: np.ndarray, offset: np.ndarray, points: np.ndarray,
                   score: float) -> DetectedFace | None:
        """ONet's output for one window -> a face in frame pixels, or None when it fails the gate."""
        gate = self.detector.gate
        x, y, side = (float(v) for v in window)
        x1, y1 = x + offset[0] * side, y + offset[1] * side
        x2, y2 = x + side + offset[2] * side, y + side + offset[3] * side
        height, width = frame.shape[:2]
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        box = (x1, y1, x2 - x1, y2 - y1)
        if score < gate.min_confidence or min(box[2], box[3]) < self.detector.min_face_size:
            return None
        landmarks = np.stack([x + side * points[:5], y + side * points[5:]], axis=1).astype(np.float64)
        if gate.geometry and not plausible_landmarks(box, landmarks, gate.eye_ratio):
            return None
        landmarks.setflags(write=False)
        return DetectedFace(box=box, landmarks=landmarks, confidence=score)


def _distinct(faces: list[DetectedFace]) -> list[DetectedFace]:
    """Most confident first, dropping a face that two tracks converged on (IoU > 0.5) twice."""
    kept: list[DetectedFace] = []
    for face in sorted(faces, key=lambda f: f.confidence, reverse=True):
        if all(iou(face.box, other.box) <= 0.5 for other in kept):
            kept.append(face)
    return kept

"""Per-source work of the dataset builder: one image or video -> written face crops.

Every crop is written atomically (temporary file, then ``os.replace``) before its source is
recorded as finished, so an interrupted build never leaves a half-written JPEG in the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from agents.atomic import atomic_write_bytes
from agents.records import JsonRecord
from vision.face_tracking import FaceFollower, FollowConfig
from vision.alignment import align_face
from vision.face_detector import FaceDetector
from vision.faces import whole_image_crop
from vision.media import ImageError, decode_image
from training.dataset_sources import Source
from training.video import sample_frames
from vision.media import VideoError

if TYPE_CHECKING:  # imported for annotations only: dataset imports this module
    from training.dataset import BuildConfig


@dataclass
class SourceResult(JsonRecord):
    """What one source gave: manifest rows (without label/group/split), rejects and counts."""

    source: str  # the source file
    rows: list[dict[str, Any]] = field(default_factory=list)  # path, frame, confidence, hash
    rejects: list[str] = field(default_factory=list)  # reasons this source gave no crop
    dropped: int = 0  # near-duplicate crops not kept
    frames_sampled: int = 0  # video frames looked at (0 for images)
    frames_without_face: int = 0  # sampled frames with no usable face


def write_atomic(path: Path, data: bytes) -> None:
    """Writes bytes to ``path`` atomically (`agents.atomic`), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def open_detector(config: "BuildConfig") -> FaceDetector:
    """A detector that also sees faces a little below ``min_face``, so they can be rejected as too small.

    Looking much further below ``min_face`` would double MTCNN's cost (its pyramid starts at
    12 px / min_face_size), so only faces within 25% under the limit are reported as too small.
    """
    # min_face_share=0: training crops keep every face down to the configured minimum, however
    # small next to the frame (a face-sized pyramid would skip DFDC's smallest faces).
    return FaceDetector(min_face_size=max(12, int(config.min_face * 0.75)), max_side=config.detect_max_side,
                        min_face_share=0.0)


def open_follower(detector: FaceDetector, config: "BuildConfig") -> FaceFollower:
    """Finds the faces of video frames: ``detector`` on every ``keyframe_every``-th frame, following in between."""
    return FaceFollower(detector, FollowConfig(keyframe_every=config.keyframe_every,
                                               batch_frames=config.batch_frames))


def crop_id(source: str, frame: int, face: int) -> str:
    """A stable file name for a crop: re-running writes the same files."""
    return hashlib.sha1(f"{source}|{frame}|{face}".encode()).hexdigest()[:20]


class _Deduper:
    """Near-duplicate filter over the crops of one source (one video, one label)."""

    def __init__(self, distance: int) -> None:
        self.distance = distance
        self.kept: list[Any] = []
        self.dropped = 0

    def keep(self, crop: np.ndarray) -> tuple[bool, str]:
        import imagehash
        from PIL import Image

        digest = imagehash.phash(Image.fromarray(crop))
        if any(digest - other <= self.distance for other in self.kept):
            self.dropped += 1
            return False, str(digest)
        self.kept.append(digest)
        return True, str(digest)


def _encode(crop: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return buffer.tobytes()


def _save(out: Path, source: Source, frame: int, face: int, data: bytes) -> str:
    relative = Path("crops") / source.label / f"{crop_id(source.path, frame, face)}.jpg"
    write_atomic(out / relative, data)
    return relative.as_posix()


def _faces_to_rows(
    image: np.ndarray, frame: int, source: Source, out: Path, config: "BuildConfig", faces: list, dedupe: _Deduper,
    result: SourceResult,
) -> str | None:
    """Aligns, dedupes and writes the faces of one image/frame; returns a reject reason or None."""
    usable = [f for f in faces if min(f.box[2], f.box[3]) >= config.min_face]
    if not faces:
        return "no face"
    if not usable:
        largest = max(min(f.box[2], f.box[3]) for f in faces)
        return f"too small: largest face {largest:.0f} px < --min-face {config.min_face}"
    for number, face in enumerate(usable if config.all_faces else usable[:1]):
        crop = align_face(image, face.landmarks, size=config.size, margin=config.margin)
        keep, digest = dedupe.keep(crop)
        if not keep:
            continue
        path = _save(out, source, frame, number, _encode(crop, config.jpeg_quality))
        result.rows.append({"path": path, "frame": frame, "confidence": round(face.confidence, 4), "hash": digest})
    return None


def _process_image(source: Source, out: Path, config: "BuildConfig", detector: FaceDetector | None,
                   result: SourceResult) -> None:
    try:
        data = Path(source.path).read_bytes()
        image = decode_image(data)
    except (OSError, ImageError) as exc:
        result.rejects.append(f"unreadable: {exc}")
        return
    dedupe = _Deduper(config.hash_distance)
    if not config.detect:
        if min(image.shape[:2]) < config.min_face:
            result.rejects.append(f"too small: {image.shape[1]}x{image.shape[0]} px < --min-face {config.min_face}")
            return
        crop = whole_image_crop(image, size=config.size).crop
        _, digest = dedupe.keep(crop)
        same_size_jpeg = image.shape[:2] == (config.size, config.size) and data[:3] == b"\xff\xd8\xff"
        # A crop that is already the right size is stored byte for byte: re-encoding would add
        # a second round of JPEG artefacts, which is exactly what a deepfake detector looks at.
        payload = data if same_size_jpeg else _encode(crop, config.jpeg_quality)
        path = _save(out, source, -1, 0, payload)
        result.rows.append({"path": path, "frame": -1, "confidence": 1.0, "hash": digest})
        return
    if detector is None:
        raise TypeError("detect=True needs a FaceDetector; pass open_detector(config)")
    reason = _faces_to_rows(image, -1, source, out, config, detector.detect(image), dedupe, result)
    result.dropped = dedupe.dropped
    if reason:
        result.rejects.append(reason)


def _process_video(source: Source, out: Path, config: "BuildConfig", follower: FaceFollower | None,
                   result: SourceResult) -> None:
    dedupe = _Deduper(config.hash_distance)
    reasons: dict[str, int] = {}
    try:
        frames = sample_frames(source.path, fps=config.video_fps, frames=config.frames)
        found = follower.follow(frames) if follower is not None else ((i, f, None) for i, f in frames)
        for index, image, faces in found:
            result.frames_sampled += 1
            if faces is None:  # --no-detect: the whole frame is the crop
                crop = whole_image_crop(image, size=config.size).crop
                keep, digest = dedupe.keep(crop)
                if keep:
                    path = _save(out, source, index, 0, _encode(crop, config.jpeg_quality))
                    result.rows.append({"path": path, "frame": index, "confidence": 1.0, "hash": digest})
                continue
            reason = _faces_to_rows(image, index, source, out, config, faces, dedupe, result)
            if reason:
                result.frames_without_face += 1
                reasons[reason.split(":")[0]] = reasons.get(reason.split(":")[0], 0) + 1
    except VideoError as exc:
        result.rejects.append(f"unreadable: {exc}")
    result.dropped = dedupe.dropped
    if not result.rows and not result.dropped and not result.rejects:
        common = max(reasons, key=reasons.get) if reasons else "no face"
        result.rejects.append(f"{common}: in all {result.frames_sampled} sampled frames")


def process_source(source: Source, out: Path, config: "BuildConfig", detector: FaceDetector | None,
                   follower: FaceFollower | None = None) -> SourceResult:
    """Turns one source into crops on disk; never raises for a bad input file (it becomes a reject).

    Args:
        source: the image or video.
        out: the output folder.
        config: build settings.
        detector: the face detector (None with ``detect=False``).
        follower: finds the faces of video frames (keyframes + following); made from ``detector``
            and ``config`` when None. Pass one to reuse it (and its stats) across videos.
    """
    result = SourceResult(source=source.path)
    try:
        if source.kind == "video":
            if follower is None and detector is not None:
                follower = open_follower(detector, config)
            _process_video(source, out, config, follower, result)
        else:
            _process_image(source, out, config, detector, result)
    except (ValueError, cv2.error) as exc:
        # Anything a malformed input can still provoke in decoding or alignment.
        result.rejects.append(f"failed: {type(exc).__name__}: {exc}")
    return result

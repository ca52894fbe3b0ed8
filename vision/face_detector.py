"""The MTCNN face detector: candidates, the face gate that drops clutter, and light correction.

Detection is MTCNN (``mtcnn`` 1.0.0's networks, exported to ONNX Runtime), driven by
:class:`vision.face_pyramid.FacePyramid` so that its cost follows the smallest face worth
finding rather than the image size. Each candidate must pass :class:`FaceGate`: confidence, a
face-like layout of its landmarks, and a second look at its own aligned crop
(`vision.alignment`). The box and landmarks of each face kept are then read again from the
face's own neighbourhood (:class:`vision.face_refine.LandmarkRefiner`), so a face gets the same
crop in a group picture as cut out alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import cv2
import numpy as np
import pydantic
from pydantic import ConfigDict, Field, model_validator

from vision.alignment import LANDMARK_NAMES, align_face
from vision.face_geometry import plausible_landmarks, same_face
from vision.face_refine import LandmarkRefiner
from vision.lighting import dim_regions, enhance_for_detection
from vision.media import as_rgb


@dataclass(frozen=True)
class DetectedFace:
    """One face found by the detector."""

    box: tuple[float, float, float, float]  # x, y, width, height in image pixels
    landmarks: np.ndarray  # (5, 2) float: left_eye, right_eye, nose, mouth_left, mouth_right
    confidence: float  # detector probability that this is a face, 0..1
    refined: bool = field(default=False, compare=False)  # landmarks already re-read (vision.face_refine)


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class FaceGate:
    """What an MTCNN detection must pass to be returned as a face.

    MTCNN alone returns face-like clutter (a chair back at 0.98 confidence); the landmark
    geometry check and a second look at the face in its own aligned crop drop most of it.
    """

    min_confidence: float = Field(0.9, ge=0, le=1)  # MTCNN's face probability (ONet)
    eye_ratio: tuple[float, float] = (0.2, 0.8)  # allowed eye distance / box width
    geometry: bool = True  # require a face-like layout of the five landmarks (plausible_landmarks)
    verify: bool = True  # re-detect each face in its aligned crop; keep it only when found again
    verify_confidence: float = Field(0.9, ge=0, le=1)  # MTCNN probability the second look needs

    @model_validator(mode="after")
    def _eye_ratio_range(self) -> "FaceGate":
        if not 0.0 <= self.eye_ratio[0] < self.eye_ratio[1]:
            raise ValueError(f"eye_ratio must be (low, high) with 0 <= low < high, received {self.eye_ratio}.")
        return self


# Default smallest face relative to the image's shorter side (FaceDetector.min_face_share): 86 px
# in a 1080p frame, 82 px in a 1024 px portrait. The shared DFDC videos' faces and the gan-faces
# portraits are all found at this share (benchmarks/bench_photos.py); smaller faces need 0.
MIN_FACE_SHARE = 0.08
MIN_FACE_SIZE = 40  # default smallest face searched for, in input pixels (FaceDetector.min_face_size)
# MTCNN searches with square windows; ONet's box is tighter than the window that found it (a face
# found by a 40 px search in a phone screenshot measures 37-39 x 47-50 px). A face is kept when its
# box's shorter side is at least this share of ``min_face_size`` (32 px for 40, the smallest face
# `blackboard.ood` gives a verdict), not dropped at the edge of the search that found it.
BOX_SHARE = 0.8
# A picture where no face was found is searched again from this share of ``min_face_size`` (the
# smallest box kept) whatever its size: a 40 px search finds a 32-39 px face about half the time,
# and a 1080p screenshot is searched from 86 px (2026-12-05, BENCHMARKS.md).
SMALL_FACE_SHARE = BOX_SHARE
# The detector's first pass unless the caller names one (FaceDetector's first_pass): module-level so
# that a benchmark run (benchmarks/bench_group.py --first-pass) can switch every detector it makes.
FIRST_PASS = "mtcnn"
View = tuple[np.ndarray, float]  # a detection image and its factor (its size over the input's)
# Side of the aligned crop the gate's second look runs on, and the smallest face it looks for.
VERIFY_SIZE = 112
VERIFY_MIN_FACE = 24


def smallest_face_searched(*, min_face_size: int = MIN_FACE_SIZE) -> int:
    """The smallest face (px, input pixels) that :class:`FaceDetector` has searched a picture for
    when it found none, whatever the picture's size: the smallest box it keeps
    (:data:`SMALL_FACE_SHARE`); smaller faces are usually missed."""
    return int(round(SMALL_FACE_SHARE * min_face_size))


def smallest_face_note(shape: Sequence[int], what: str = "picture") -> str:
    """Said to a person whose ``what`` of ``shape`` got no face (the default detector's settings):
    a face in a small video window can be under the size searched for."""
    return (f"the detector looks for faces of about {smallest_face_searched()} px and larger in a "
            f"{int(shape[1])}x{int(shape[0])} {what}")


class FaceDetector:
    """MTCNN face and landmark detector with a face gate and light correction, loaded once.

    Detection runs in up to two passes: the first on each image (shrunk to ``max_side``,
    brightened when dark, see :func:`enhance_for_detection`); a retry for images in which
    nothing passed the gate, on a contrast-corrected copy at full resolution (small images
    upscaled 2x); then the picture's dark regions, each brightened on its own; and where none of
    these found a face, both views again down to the smallest box kept, whatever the picture's
    size (:data:`SMALL_FACE_SHARE`). Every candidate goes through :class:`FaceGate`.

    Args:
        min_face_size: smallest face to search for, in pixels of the input image (MTCNN's square
            window; the face's box may be down to :data:`BOX_SHARE` of it).
        min_face_share: smallest face to find relative to the image, as a share of its shorter
            side; the larger of this and ``min_face_size`` sets where MTCNN's pyramid starts, so a
            1024 px portrait is not searched for 40 px faces (unless no face is found at all, with
            ``retry``). 0 looks down to ``min_face_size``.
        min_confidence: faces the detector is less sure of are dropped (``FaceGate``).
        max_side: images whose longer side exceeds this are shrunk for the first pass (boxes
            and landmarks are mapped back to the input's pixels). ``None`` detects at full size.
        gate: the rest of the face gate (its min_confidence is replaced by ``min_confidence``).
        enhance: brighten dark and stretch flat images before detection.
        retry: run the second pass, and the search for the smallest faces, on images where
            nothing was found.
        refine: read each face's box and landmarks again on canonical windows around it, at
            full resolution (`vision.face_refine`); False keeps MTCNN's own (whole-picture) ones.
        first_pass: "mtcnn" (MTCNN's pyramid, RNet and ONet) or "blazeface": BlazeFace's boxes
            (`vision.blazeface`, one pass on a 192 px copy), each face's landmarks then read by the
            refinement (which it needs), and BlazeFace again in the dark-region pass; the gate and
            the retry stay MTCNN's. None: :data:`FIRST_PASS`.
    """

    def __init__(self, *, min_face_size: int = MIN_FACE_SIZE, min_confidence: float = 0.9, max_side: int | None = 1024,
                 gate: FaceGate | None = None, enhance: bool = True, retry: bool = True,
                 min_face_share: float = MIN_FACE_SHARE, refine: bool = True, first_pass: str | None = None) -> None:
        if not isinstance(min_face_size, (int, np.integer)) or min_face_size < 12:
            raise ValueError(f"min_face_size must be an integer >= 12 (MTCNN's window), received {min_face_size!r}.")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, received {min_confidence!r}.")
        if max_side is not None and max_side < 64:
            raise ValueError(f"max_side must be >= 64 or None, received {max_side!r}.")
        if not 0.0 <= float(min_face_share) < 1.0:
            raise ValueError(f"min_face_share must be in [0, 1), received {min_face_share!r}.")
        first_pass = FIRST_PASS if first_pass is None else first_pass
        if first_pass not in ("mtcnn", "blazeface") or (first_pass == "blazeface" and not refine):
            raise ValueError(f"first_pass must be 'mtcnn' or 'blazeface' (which needs refine=True), received "
                             f"first_pass={first_pass!r}, refine={refine!r}.")
        self.min_face_share = float(min_face_share)
        self.min_face_size = int(min_face_size)
        self.min_confidence = float(min_confidence)
        self.max_side = max_side
        self.gate = replace(gate or FaceGate(), min_confidence=self.min_confidence)
        self.enhance = bool(enhance)
        self.retry = bool(retry)
        from vision.face_pyramid import FacePyramid  # ONNX Runtime: any Keras backend, no TensorFlow

        self._mtcnn = FacePyramid()
        self.refine = bool(refine)
        # The light correction of a refined face sees only the pixels around it (both views alike).
        self._refiner = LandmarkRefiner(self._mtcnn.onet, light=enhance_for_detection if self.enhance else None)
        self.first_pass = first_pass
        if first_pass == "blazeface":
            from vision.blazeface import BlazeFace

            self._blaze = BlazeFace()

    def detect(self, image_rgb: np.ndarray) -> list[DetectedFace]:
        """Finds faces in an RGB uint8 image.

        Returns:
            Faces of at least ``min_face_size`` px that pass the gate, most confident first;
            [] when there are none.
        """
        return self.detect_batch([image_rgb])[0]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[DetectedFace]]:
        """Finds faces in several images, batching MTCNN over same-sized images (video frames).

        Batching halves the per-frame cost on CPU because each network runs once per pyramid
        level for the whole batch instead of once per image.

        Returns:
            One list per image, as :meth:`detect` returns.
        """
        checked = [as_rgb(image) for image in images_rgb]
        # An image narrower than the smallest face cannot hold one (and would scale to nothing).
        usable = [i for i, image in enumerate(checked) if min(image.shape[:2]) >= self.min_face_size]
        results: list[list[DetectedFace]] = [[] for _ in checked]
        for i, faces in zip(usable, self._detect_usable([checked[i] for i in usable])):
            results[i] = faces
        return results

    def _detect_usable(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        """:meth:`detect_batch` on images that are at least ``min_face_size`` on each side."""
        if not images:
            return []
        factors = [self._factor(image) for image in images]
        seen = [_rescale(image, f) for image, f in zip(images, factors)]
        plain = list(seen)  # before the light correction: where the dim-face pass looks
        if self.enhance:
            seen = [enhance_for_detection(image)[0] for image in seen]
        if self.first_pass == "blazeface":
            found = [self._proposed(image, view, f) for image, view, f in zip(images, seen, factors)]
        else:
            found = [self._candidates(raw, f) for raw, f in zip(self._run(seen, factors), factors)]
        first: dict[int, View] = {}  # the first pass's views of the pictures it found no face in
        if self.retry:
            empty = [i for i, faces in enumerate(found) if not faces]
            first = {i: (seen[i], factors[i]) for i in empty}
            scales = [self._retry_factor(images[i]) for i in empty]
            again = [enhance_for_detection(_rescale(images[i], f), force=True)[0] for i, f in zip(empty, scales)]
            for i, f, image, raw in zip(empty, scales, again, self._run(again, scales)):
                seen[i], factors[i], found[i] = image, f, self._candidates(raw, f)
                plain[i] = _rescale(images[i], f)
        if self.gate.verify:
            found = self._verify(seen, factors, found)
        if self.enhance:
            for i, extra in enumerate(self._dim_faces(images, plain, seen, factors, found)):
                found[i] = found[i] + extra
        for i in [i for i in first if not found[i]]:  # no face at all: the smallest faces (SMALL_FACE_SHARE)
            found[i] = self._small_faces(first[i] if first[i][1] >= 1.0 else None, (seen[i], factors[i]))
        if self.refine:
            found = [self._refined(image, faces) for image, faces in zip(images, found)]
        return [sorted(faces, key=lambda face: face.confidence, reverse=True) for faces in found]

    def _small_faces(self, *views: View | None) -> list[DetectedFace]:
        """A picture where no face was found, searched down to the smallest box kept whatever its
        size: each of ``views`` in turn (the first pass's where at full size, then the retry's).
        Its dark regions are not searched that far: on a dim clip in a small player window that
        found no face and cost ~60 ms more (2026-12-05)."""
        for view, factor in (v for v in views if v is not None):
            faces = self._candidates(self._run([view], [factor], small=True)[0], factor)
            if faces and self.gate.verify:
                faces = self._verify([view], [factor], [faces])[0]
            if faces:
                return faces
        return []

    def _refined(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        """Faces with box and landmarks read again around each (`vision.face_refine`), on the input
        image at full resolution; a face whose refined landmarks are not face-like keeps its own.

        Which faces are returned is the gate's decision alone: refining never adds or drops one.
        Faces the first pass already refined (BlazeFace's) are kept as they are."""
        redone = iter(self._refiner.refine(image, [face.box for face in faces if not face.refined]))
        out = []
        for face in faces:
            if not face.refined:
                box, points = next(redone)
                if np.all(np.isfinite(points)) and plausible_landmarks(box, points, self.gate.eye_ratio):
                    points.setflags(write=False)
                    face = DetectedFace(box=box, landmarks=points, confidence=face.confidence, refined=True)
            out.append(face)
        return out

    def _proposed(self, image: np.ndarray, seen: np.ndarray, factor: float, offset: tuple[int, int] = (0, 0),
                  known: Sequence[DetectedFace] = ()) -> list[DetectedFace]:
        """BlazeFace's faces in ``seen`` (light-corrected, ``factor`` times the input's size, its top
        left at ``offset`` in the detection image), each with its landmarks read by the refinement on
        the input image; the smallest faces and those whose landmarks are not face-like are dropped,
        as are boxes on a ``known`` face (before reading landmarks: ~50 ms for a large face) and
        boxes that come to rest on a face already kept."""
        least = max(self.min_face_size, self.min_face_share * min(image.shape[:2]))
        shift = np.array([*offset, 0.0, 0.0])
        boxes = [((row[:4] + shift) / factor, float(row[4])) for row in self._blaze.boxes(seen)]
        boxes = [(box, score) for box, score in boxes
                 if min(box[2], box[3]) >= least and not any(same_face(box, face.box) for face in known)]
        faces: list[DetectedFace] = []
        for (box, points), (_, score) in zip(self._refiner.refine(image, [box for box, _ in boxes]), boxes):
            if np.all(np.isfinite(points)) and plausible_landmarks(box, points, self.gate.eye_ratio):
                points.setflags(write=False)
                face = DetectedFace(box=box, landmarks=points, confidence=score, refined=True)
                if not any(same_face(face.box, other.box) for other in faces):
                    faces.append(face)
        return faces

    def _dim_faces(self, images: list[np.ndarray], plain: list[np.ndarray], seen: list[np.ndarray],
                   factors: list[float], found: list[list[DetectedFace]]) -> list[list[DetectedFace]]:
        """Faces in the dark regions (:func:`dim_regions`) of each image, each region searched after
        brightening it by its own darkness; faces found are not repeated. Images where nothing was
        found are searched too: a dim video in a bright app's screenshot is lit by neither the first
        pass nor the retry, which go by the whole picture's light (a phone screenshot of a dark DFDC
        frame: no face, then the face; `benchmarks/bench_photos.py`'s ``video_in_phone``).

        A region mostly taken by a face already found is not searched (`dim_regions`' ``found``).
        ``plain`` are the detection images before light correction, ``seen`` after it."""
        searched: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in seen]  # (x, y, brightened part)
        extra: list[list[DetectedFace]] = [[] for _ in seen]
        for i, faces in enumerate(found):
            least = self._least(seen[i], factors[i])
            boxes = [tuple(float(v) * factors[i] for v in face.box) for face in faces]
            for (x, y, w, h), dark_mean in dim_regions(plain[i], min_side=least, found=boxes):
                part, _ = enhance_for_detection(plain[i][y:y + h, x:x + w], force=True, dark_mean=dark_mean)
                searched[i].append((x, y, part))
                for moved in self._in_region(images[i], part, (x, y), factors[i], faces + extra[i]):
                    if not any(same_face(moved.box, other.box) for other in faces + extra[i]):
                        extra[i].append(moved)
        if self.gate.verify and any(extra):
            # The second look sees each image with its searched dark regions brightened (a copy
            # only where a face was found in one).
            lit = list(seen)
            for i, parts in enumerate(searched):
                if extra[i]:
                    lit[i] = seen[i].copy()
                    for x, y, part in parts:
                        lit[i][y:y + part.shape[0], x:x + part.shape[1]] = part
            extra = self._verify(lit, factors, extra)
        return extra

    def _in_region(self, image: np.ndarray, part: np.ndarray, corner: tuple[int, int], factor: float,
                   known: list[DetectedFace]) -> list[DetectedFace]:
        """Faces in ``part``, a brightened region of the detection image whose top left is ``corner``
        there, with boxes and landmarks in the input's pixels: the first pass's detector on it
        (BlazeFace skips the ``known`` faces before reading their landmarks again)."""
        if self.first_pass == "blazeface":
            return self._proposed(image, part, factor, offset=corner, known=known)
        shift = np.array(corner, dtype=np.float64) / factor
        moved = []
        for face in self._candidates(self._run([part], [factor])[0], factor):
            points = face.landmarks + shift
            points.setflags(write=False)
            bx, by, bw, bh = face.box
            moved.append(DetectedFace(box=(bx + shift[0], by + shift[1], bw, bh), landmarks=points,
                                      confidence=face.confidence))
        return moved

    def _factor(self, image: np.ndarray) -> float:
        longest = max(image.shape[:2])
        return self.max_side / longest if self.max_side is not None and longest > self.max_side else 1.0

    def _retry_factor(self, image: np.ndarray) -> float:
        """Full resolution (capped at twice max_side), or 2x for an image under half max_side."""
        longest = float(max(image.shape[:2]))
        limit = 2.0 * (self.max_side or longest)
        if 2.0 * longest <= (self.max_side or longest):
            return 2.0
        return min(1.0, limit / longest)

    def _least(self, image: np.ndarray, factor: float, small: bool = False) -> float:
        """The smallest face searched in a detection image (``factor`` times the input's size), in
        its pixels: from ``min_face_size`` and the picture's size, or (``small``) from the smallest
        box kept (SMALL_FACE_SHARE); never under MTCNN's 12 px window."""
        if small:
            return max(12.0, SMALL_FACE_SHARE * self.min_face_size * factor)
        return max(12.0, self.min_face_size * factor, self.min_face_share * min(image.shape[:2]))

    def _run(self, images: list[np.ndarray], factors: list[float], small: bool = False) -> list[list[dict[str, Any]]]:
        """MTCNN's raw output per image (faces from :meth:`_least`); one batched call per group of
        images of one size."""
        mins = [self._least(image, f, small) for image, f in zip(images, factors)]
        groups: dict[tuple[tuple[int, ...], float], list[int]] = {}
        for i, (image, least) in enumerate(zip(images, mins)):
            groups.setdefault((image.shape, least), []).append(i)
        raw: list[list[dict[str, Any]]] = [[] for _ in images]
        for (_, least), members in groups.items():
            for i, found in zip(members, self._mtcnn.detect_faces([images[i] for i in members], least)):
                raw[i] = found
        return raw

    def _candidates(self, found: list[dict[str, Any]], factor: float) -> list[DetectedFace]:
        """MTCNN's output for one image -> faces in input pixels that pass confidence, size and
        landmark geometry."""
        faces = []
        for item in found:
            confidence = float(item["confidence"])
            x, y, w, h = (float(v) / factor for v in item["box"])
            if confidence < self.gate.min_confidence or min(w, h) < BOX_SHARE * self.min_face_size:
                continue
            points = np.array([item["keypoints"][name] for name in LANDMARK_NAMES], dtype=np.float64) / factor
            if self.gate.geometry and not plausible_landmarks((x, y, w, h), points, self.gate.eye_ratio):
                continue
            points.setflags(write=False)
            faces.append(DetectedFace(box=(x, y, w, h), landmarks=points, confidence=confidence))
        return faces

    def _verify(self, seen: list[np.ndarray], factors: list[float],
                found: list[list[DetectedFace]]) -> list[list[DetectedFace]]:
        """Keeps the faces that MTCNN finds again, centred, in their own aligned crop (shrunk from the
        whole picture, as when the gate's thresholds were measured)."""
        owners = [(i, j) for i, faces in enumerate(found) for j in range(len(faces))]
        crops = [align_face(seen[i], found[i][j].landmarks * factors[i], size=VERIFY_SIZE, margin=0.3, shrink="picture")
                 for i, j in owners]
        if not crops:
            return found
        again = self._mtcnn.detect_faces(crops, min_face_size=VERIFY_MIN_FACE)
        keep: set[tuple[int, int]] = set()
        centre = VERIFY_SIZE / 2.0
        for owner, hits in zip(owners, again):
            for hit in hits:
                x, y, w, h = (float(v) for v in hit["box"])
                near = abs(x + w / 2 - centre) < VERIFY_SIZE / 4 and abs(y + h / 2 - centre) < VERIFY_SIZE / 4
                if float(hit["confidence"]) >= self.gate.verify_confidence and near:
                    keep.add(owner)
                    break
        return [[face for j, face in enumerate(faces) if (i, j) in keep] for i, faces in enumerate(found)]


def _rescale(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return image
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_CUBIC
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)

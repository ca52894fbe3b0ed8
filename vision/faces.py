"""Face detection, landmark alignment and safe image decoding.

One code path from a photo, screenshot or video frame to the 224x224 RGB face crops the agents
see: the dataset builder, the gRPC service and the batch jobs all call :func:`extract_faces`, so
a face is framed the same way at training and at serving time.

Detection is MTCNN (``mtcnn`` 1.0.0's networks, TensorFlow), driven by
:class:`vision.face_pyramid.FacePyramid` so that its cost follows the smallest face worth
finding rather than the image size. Alignment maps the five MTCNN landmarks onto
:data:`TEMPLATE` with a similarity transform. The template and the default margin were fitted to
the DFDC training crops (median MTCNN landmarks over DFDC real crops), so an aligned crop frames
a face like the crops the agents were trained on: brow to chin, the face filling the crop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Sequence

import cv2
import numpy as np

# Decoding lives in vision.media; re-exported here for the callers that import it from faces.

MODES = ("off", "on", "auto")
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# Five landmarks (x, y) in a unit face box, in LANDMARK_NAMES order ("left" = the image's left).
# Fitted so that template_points(224, 0.3) matches the median MTCNN landmarks of DFDC crops:
# eyes at 29% of the height, mouth corners at 73%, eye distance 40% of the width.
TEMPLATE = np.array(
    [
        [0.177, 0.162],  # left eye
        [0.823, 0.162],  # right eye
        [0.500, 0.497],  # nose tip
        [0.239, 0.874],  # mouth, left corner
        [0.761, 0.874],  # mouth, right corner
    ],
    dtype=np.float64,
)
TEMPLATE.setflags(write=False)

# Images that already look like face crops (for mode "auto"): aspect range and largest side.
CROP_ASPECT_RANGE = (0.75, 1.33)
CROP_MAX_SIDE = 512
CROP_TRUST_SIDE = 256  # crop-shaped and at most this large: a crop (224 px) used whole, no detection run


@dataclass(frozen=True)
class DetectedFace:
    """One face found by the detector."""

    box: tuple[float, float, float, float]  # x, y, width, height in image pixels
    landmarks: np.ndarray  # (5, 2) float: left_eye, right_eye, nose, mouth_left, mouth_right
    confidence: float  # detector probability that this is a face, 0..1


@dataclass
class FaceCrop:
    """A face ready for the agents, with where it came from."""

    crop: np.ndarray  # (size, size, 3) uint8 RGB
    box: tuple[float, float, float, float]  # x, y, width, height in the source image
    landmarks: np.ndarray | None  # (5, 2) landmarks in the source image; None when not detected
    confidence: float  # detector confidence; 1.0 when the whole image was used as the crop
    aligned: bool  # True when made by align_face from detected landmarks


def template_points(size: int = 224, margin: float = 0.3) -> np.ndarray:
    """Where :func:`align_face` puts the five landmarks in a ``size`` x ``size`` crop.

    Args:
        size: side of the square crop in pixels.
        margin: context added around the unit face box on every side, as a fraction of it.

    Returns:
        float64 array (5, 2) of x, y pixel positions in LANDMARK_NAMES order.
    """
    _check_size_margin(size, margin)
    return (TEMPLATE + margin) / (1.0 + 2.0 * margin) * float(size)


def _check_size_margin(size: int, margin: float) -> None:
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, received {size!r}.")
    if not np.isfinite(margin) or margin < 0 or margin > 2:
        raise ValueError(f"margin must be between 0 and 2, received {margin!r}.")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Validates an image array and returns it as contiguous RGB uint8 (H, W, 3)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"Expected a numpy image array, received {type(image).__name__}.")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"Expected an RGB image of shape (H, W, 3), received shape {image.shape}.")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"Image is too small to hold a face: {image.shape[1]}x{image.shape[0]} pixels.")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def align_face(image_rgb: np.ndarray, landmarks: np.ndarray, *, size: int = 224, margin: float = 0.3) -> np.ndarray:
    """Warps a face so that its five landmarks land on the template.

    Args:
        image_rgb: RGB uint8 image (H, W, 3).
        landmarks: (5, 2) x, y positions in LANDMARK_NAMES order, in image pixels.
        size: side of the output crop.
        margin: context around the face box, as a fraction of it (see :func:`template_points`).

    Returns:
        (size, size, 3) uint8 RGB crop.

    Raises:
        ValueError: bad image, landmarks that are not (5, 2) finite numbers, or degenerate
            landmarks (all in one place) that admit no similarity transform.
    """
    image = _as_rgb(image_rgb)
    src = np.asarray(landmarks, dtype=np.float64)
    if src.shape != (5, 2) or not np.all(np.isfinite(src)):
        raise ValueError(f"landmarks must be a finite (5, 2) array, received shape {src.shape}.")
    dst = template_points(size, margin)
    matrix = _similarity(src, dst, size)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        # Shrinking a large face by more than 2x in one bilinear warp aliases (moire on skin and
        # hair, which a detector of synthesis artefacts must not see). Area-resize first.
        factor = min(1.0, 2.0 * scale)
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        real = np.array([small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]])
        image, src = small, src * real
        matrix = _similarity(src, dst, size)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _similarity(src: np.ndarray, dst: np.ndarray, size: int) -> np.ndarray:
    """Least-squares similarity transform src -> dst, robust to one wild landmark."""
    # A generous RANSAC threshold keeps every plausible landmark as an inlier, and OpenCV then
    # refines on all inliers, which gives the least-squares fit over the five points.
    matrix, _ = cv2.estimateAffinePartial2D(
        src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC, ransacReprojThreshold=0.1 * size
    )
    if matrix is None or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:, :2])) < 1e-8:
        raise ValueError(f"Landmarks admit no similarity transform (degenerate points): {src.tolist()}.")
    return matrix


@dataclass(frozen=True)
class FaceGate:
    """What an MTCNN detection must pass to be returned as a face.

    MTCNN alone returns face-like clutter (a chair back at 0.98 confidence); the landmark
    geometry check and a second look at the face in its own aligned crop drop most of it.
    """

    min_confidence: float = 0.9  # MTCNN's face probability (ONet), 0..1
    eye_ratio: tuple[float, float] = (0.2, 0.8)  # allowed eye distance / box width
    geometry: bool = True  # require a face-like layout of the five landmarks (plausible_landmarks)
    verify: bool = True  # re-detect each face in its aligned crop; keep it only when found again
    verify_confidence: float = 0.9  # MTCNN probability the second look needs

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0 or not 0.0 <= self.verify_confidence <= 1.0:
            raise ValueError(f"confidences must be in [0, 1], received {self.min_confidence}, {self.verify_confidence}.")
        if not 0.0 <= self.eye_ratio[0] < self.eye_ratio[1]:
            raise ValueError(f"eye_ratio must be (low, high) with 0 <= low < high, received {self.eye_ratio}.")


# Light correction before detection: frames darker than DARK_MEAN (mean luma, 0-255) are
# brightened with a gamma curve towards BRIGHT_TARGET; flatter than FLAT_STD get CLAHE on luma.
DARK_MEAN = 80.0
BRIGHT_TARGET = 0.45
FLAT_STD = 30.0
# Default smallest face relative to the image's shorter side (FaceDetector.min_face_share): 86 px
# in a 1080p frame, 82 px in a 1024 px portrait. The shared DFDC videos' faces and the gan-faces
# portraits are all found at this share (benchmarks/bench_photos.py); smaller faces need 0.
MIN_FACE_SHARE = 0.08
# Side of the aligned crop the gate's second look runs on, and the smallest face it looks for.
VERIFY_SIZE = 112
VERIFY_MIN_FACE = 24


def enhance_for_detection(image_rgb: np.ndarray, *, force: bool = False) -> tuple[np.ndarray, bool]:
    """Brightens dark and stretches flat images so MTCNN can see their faces.

    Only the detector sees the corrected pixels; the agents get crops of the original image.

    Args:
        image_rgb: RGB uint8 image.
        force: apply CLAHE (and the gamma curve when dark) whatever the statistics say (the
            retry pass for images in which nothing was found).

    Returns:
        The image to detect on and whether it was changed.
    """
    luma = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    mean, std = float(luma.mean()), float(luma.std())
    out, changed = image_rgb, False
    if mean < DARK_MEAN and mean > 0:
        exponent = float(np.clip(np.log(BRIGHT_TARGET) / np.log(mean / 255.0), 0.25, 1.0))
        table = np.clip(255.0 * (np.arange(256) / 255.0) ** exponent, 0, 255).astype(np.uint8)
        out, changed = cv2.LUT(out, table), True
    if force or std < FLAT_STD:
        lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
        out, changed = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), True
    return out, changed


def plausible_landmarks(box: Sequence[float], points: np.ndarray, eye_ratio: tuple[float, float]) -> bool:
    """True when five landmarks are laid out like a face in its box.

    Eyes above the nose above the mouth corners, left before right, every point within the box
    (with a quarter-box tolerance), and the eye distance a plausible share of the box width.
    """
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0 or points.shape != (5, 2) or not np.all(np.isfinite(points)):
        return False
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    inside = np.all((points[:, 0] >= x - w / 4) & (points[:, 0] <= x + 1.25 * w)
                    & (points[:, 1] >= y - h / 4) & (points[:, 1] <= y + 1.25 * h))
    ordered = (left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
               and max(left_eye[1], right_eye[1]) < nose[1] < max(mouth_left[1], mouth_right[1]))
    eyes = float(np.linalg.norm(right_eye - left_eye)) / w
    return bool(inside and ordered and eye_ratio[0] <= eyes <= eye_ratio[1])


class FaceDetector:
    """MTCNN face and landmark detector with a face gate and light correction, loaded once.

    Detection runs in up to two passes: the first on each image (shrunk to ``max_side``,
    brightened when dark, see :func:`enhance_for_detection`); a retry for images in which
    nothing passed the gate, on a contrast-corrected copy at full resolution (small images
    upscaled 2x). Every candidate then goes through :class:`FaceGate`.

    Args:
        min_face_size: smallest face to find, in pixels of the input image.
        min_face_share: smallest face to find relative to the image, as a share of its shorter
            side; the larger of this and ``min_face_size`` sets where MTCNN's pyramid starts, so a
            1024 px portrait is not searched for 40 px faces. 0 looks down to ``min_face_size``.
        min_confidence: faces the detector is less sure of are dropped (``FaceGate``).
        max_side: images whose longer side exceeds this are shrunk for the first pass (boxes
            and landmarks are mapped back to the input's pixels). ``None`` detects at full size.
        gate: the rest of the face gate (its min_confidence is replaced by ``min_confidence``).
        enhance: brighten dark and stretch flat images before detection.
        retry: run the second pass on images where nothing was found.
    """

    def __init__(self, *, min_face_size: int = 40, min_confidence: float = 0.9, max_side: int | None = 1024,
                 gate: FaceGate | None = None, enhance: bool = True, retry: bool = True,
                 min_face_share: float = MIN_FACE_SHARE) -> None:
        if not isinstance(min_face_size, (int, np.integer)) or min_face_size < 12:
            raise ValueError(f"min_face_size must be an integer >= 12 (MTCNN's window), received {min_face_size!r}.")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, received {min_confidence!r}.")
        if max_side is not None and max_side < 64:
            raise ValueError(f"max_side must be >= 64 or None, received {max_side!r}.")
        if not 0.0 <= float(min_face_share) < 1.0:
            raise ValueError(f"min_face_share must be in [0, 1), received {min_face_share!r}.")
        self.min_face_share = float(min_face_share)
        self.min_face_size = int(min_face_size)
        self.min_confidence = float(min_confidence)
        self.max_side = max_side
        self.gate = replace(gate or FaceGate(), min_confidence=self.min_confidence)
        self.enhance = bool(enhance)
        self.retry = bool(retry)
        backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        if backend != "tensorflow":
            raise RuntimeError(
                f"MTCNN needs KERAS_BACKEND=tensorflow, but it is {backend!r}; set it before importing keras."
            )
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from vision.face_pyramid import FacePyramid

        self._mtcnn = FacePyramid()

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
        checked = [_as_rgb(image) for image in images_rgb]
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
        if self.enhance:
            seen = [enhance_for_detection(image)[0] for image in seen]
        found = [self._candidates(raw, f) for raw, f in zip(self._run(seen, factors), factors)]
        if self.retry:
            empty = [i for i, faces in enumerate(found) if not faces]
            scales = [self._retry_factor(images[i]) for i in empty]
            again = [enhance_for_detection(_rescale(images[i], f), force=True)[0] for i, f in zip(empty, scales)]
            for i, f, image, raw in zip(empty, scales, again, self._run(again, scales)):
                seen[i], factors[i], found[i] = image, f, self._candidates(raw, f)
        if self.gate.verify:
            found = self._verify(seen, factors, found)
        return [sorted(faces, key=lambda face: face.confidence, reverse=True) for faces in found]

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

    def _run(self, images: list[np.ndarray], factors: list[float]) -> list[list[dict[str, Any]]]:
        """MTCNN's raw output per image; one batched call per group of images of one size."""
        # MTCNN cannot look for faces smaller than its 12 px window in the scaled image.
        mins = [max(12.0, self.min_face_size * f, self.min_face_share * min(image.shape[:2]))
                for image, f in zip(images, factors)]
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
            if confidence < self.gate.min_confidence or min(w, h) < self.min_face_size:
                continue
            points = np.array([item["keypoints"][name] for name in LANDMARK_NAMES], dtype=np.float64) / factor
            if self.gate.geometry and not plausible_landmarks((x, y, w, h), points, self.gate.eye_ratio):
                continue
            points.setflags(write=False)
            faces.append(DetectedFace(box=(x, y, w, h), landmarks=points, confidence=confidence))
        return faces

    def _verify(self, seen: list[np.ndarray], factors: list[float],
                found: list[list[DetectedFace]]) -> list[list[DetectedFace]]:
        """Keeps the faces that MTCNN finds again, centred, in their own aligned crop."""
        crops, owners = [], []
        for i, faces in enumerate(found):
            for j, face in enumerate(faces):
                crops.append(align_face(seen[i], face.landmarks * factors[i], size=VERIFY_SIZE, margin=0.3))
                owners.append((i, j))
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


# A detected face covering at least this share of a crop-shaped image means the image is a crop.
CROP_MIN_FACE_SHARE = 0.15


def _area_share(box: tuple[float, float, float, float], image: np.ndarray) -> float:
    return float(box[2] * box[3]) / float(image.shape[0] * image.shape[1])


def looks_like_crop(image_rgb: np.ndarray, max_side: int = CROP_MAX_SIDE) -> bool:
    """True when an image is shaped like a face crop already (near-square, at most ``max_side`` px)."""
    height, width = image_rgb.shape[:2]
    aspect = width / float(height)
    return CROP_ASPECT_RANGE[0] <= aspect <= CROP_ASPECT_RANGE[1] and max(height, width) <= max_side


def will_detect(paths: Sequence[Any], mode: str) -> bool:
    """Whether :func:`extract_faces` will run the detector on any of these files, judged from
    their headers alone (a video always; an image unless used whole as a crop): lets a caller
    start loading MTCNN early, beside its other models, only when it will be needed."""
    if mode == "off":
        return False
    from PIL import Image

    from vision.media import is_video

    for path in paths:
        if mode == "on" or is_video(path):
            return True
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError):
            continue  # unreadable: rejected before detection
        if not looks_like_crop(np.empty((height, width, 0), np.uint8), max_side=CROP_TRUST_SIDE):
            return True
    return False


def whole_image_crop(image_rgb: np.ndarray, *, size: int = 224) -> FaceCrop:
    """The whole image resized to ``size`` x ``size``, as one crop (for inputs that are crops)."""
    image = _as_rgb(image_rgb)
    height, width = image.shape[:2]
    shrinking = height >= size and width >= size
    crop = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return FaceCrop(crop=crop, box=(0.0, 0.0, float(width), float(height)), landmarks=None, confidence=1.0,
                    aligned=False)


def extract_faces(
    image_rgb: np.ndarray,
    detector: FaceDetector | None,
    *,
    mode: str = "auto",
    all_faces: bool = True,
    size: int = 224,
    margin: float = 0.3,
) -> list[FaceCrop]:
    """Turns an image into the face crops the agents classify.

    Args:
        image_rgb: RGB uint8 image (H, W, 3).
        detector: a loaded detector; may be None only with ``mode="off"``.
        mode: "off" uses the whole image as one crop; "on" detects and aligns (no face -> []);
            "auto" detects and aligns, except for an image shaped like a face crop (aspect 0.75-1.33):
            up to ``CROP_TRUST_SIDE`` px it is used whole without running the detector; up to 512 px
            it is used whole when nothing, or one face covering ``CROP_MIN_FACE_SHARE`` of it, is found.
        all_faces: every face found, or only the most confident one.
        size: side of each crop.
        margin: context around the face (see :func:`template_points`).

    Returns:
        Crops, most confident first.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, received {mode!r}.")
    _check_size_margin(size, margin)
    image = _as_rgb(image_rgb)
    if mode == "off" or (mode == "auto" and looks_like_crop(image, max_side=CROP_TRUST_SIDE)):
        return [whole_image_crop(image, size=size)]
    if detector is None:
        raise ValueError(f"mode={mode!r} needs a FaceDetector; pass one or use mode='off'.")
    faces = detector.detect(image)
    if mode == "auto" and looks_like_crop(image):
        # An input that already is a face crop (as the agents were trained on) is classified
        # whole rather than re-aligned: when nothing is found, or one face fills the picture.
        if not faces or (len(faces) == 1 and _area_share(faces[0].box, image) >= CROP_MIN_FACE_SHARE):
            whole = whole_image_crop(image, size=size)
            if faces:
                whole = FaceCrop(crop=whole.crop, box=whole.box, landmarks=faces[0].landmarks,
                                 confidence=faces[0].confidence, aligned=False)
            return [whole]
    if not all_faces:
        faces = faces[:1]
    crops = [
        FaceCrop(crop=align_face(image, face.landmarks, size=size, margin=margin), box=face.box,
                 landmarks=face.landmarks, confidence=face.confidence, aligned=True)
        for face in faces
    ]
    return crops

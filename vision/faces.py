"""From an image to the 224x224 RGB face crops the agents see: the one rule every path shares.

The dataset builder, the gRPC service and the batch jobs all call :func:`extract_faces`, so a
face is framed the same way at training and at serving time: an image shaped like a face crop
is used whole (:func:`looks_like_crop`), any other is searched with
:class:`vision.face_detector.FaceDetector` and each face aligned (`vision.alignment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence, get_args

import cv2
import numpy as np

from vision.alignment import align_face, check_size_margin
from vision.face_detector import FaceDetector
from vision.media import as_rgb

# Face detection modes every front end offers: "auto" detects unless the image looks like a
# crop already, "on" always detects, "off" takes the whole image as the crop.
DetectMode = Literal["auto", "on", "off"]
DETECT_MODES = get_args(DetectMode)

# Images that already look like face crops (for mode "auto"): aspect range and largest side.
CROP_ASPECT_RANGE = (0.75, 1.33)
CROP_MAX_SIDE = 512
CROP_TRUST_SIDE = 256  # crop-shaped and at most this large: a crop (224 px) used whole, no detection run


@dataclass
class FaceCrop:
    """A face ready for the agents, with where it came from."""

    crop: np.ndarray  # (size, size, 3) uint8 RGB
    box: tuple[float, float, float, float]  # x, y, width, height in the source image
    landmarks: np.ndarray | None  # (5, 2) landmarks in the source image; None when not detected
    confidence: float  # detector confidence; 1.0 when the whole image was used as the crop
    aligned: bool  # True when made by align_face from detected landmarks


# A detected face covering at least this share of a crop-shaped image (257-512 px) means the
# image is a crop like those the agents were trained on, used whole; a face covering less is a face
# cut out with its surroundings, detected and aligned as the same face in a group picture is, so
# both get the same crop. Face-box shares measured with FaceDetector (benchmarks/bench_group.py
# shares, 2026-12-03): dfdc-test crops (the training kind) 0.649-0.991 at 224 px (189 crops),
# 0.603-0.996 upscaled to 448 px (1st percentile 0.626, 96 crops); the same faces cut 1.5x their
# box 0.356-0.608 (116 cuts), 2x 0.212-0.363. gan-faces (0.29-0.55) and lfw-swaps (0.06-0.34) frame
# the face loosely, like a cut: at their own 256/224 px they are used whole by the side rule above.
CROP_MIN_FACE_SHARE = 0.62


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
    from vision.media import image_file_size, is_video

    for path in paths:
        if mode == "on" or is_video(path):
            return True
        size = image_file_size(path)
        if size is None:
            continue  # unreadable: rejected before detection
        width, height = size
        if not looks_like_crop(np.empty((height, width, 0), np.uint8), max_side=CROP_TRUST_SIDE):
            return True
    return False


def whole_image_crop(image_rgb: np.ndarray, *, size: int = 224) -> FaceCrop:
    """The whole image resized to ``size`` x ``size``, as one crop (for inputs that are crops)."""
    image = as_rgb(image_rgb)
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
            it is used whole when nothing, or one face covering ``CROP_MIN_FACE_SHARE`` of it, is found
            (a face cut out with its surroundings is aligned, as the same face in a group is).
        all_faces: every face found, or only the most confident one.
        size: side of each crop.
        margin: context around the face (see :func:`template_points`).

    Returns:
        Crops, most confident first.
    """
    if mode not in DETECT_MODES:
        raise ValueError(f"mode must be one of {DETECT_MODES}, received {mode!r}.")
    check_size_margin(size, margin)
    image = as_rgb(image_rgb)
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

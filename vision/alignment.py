"""Landmark alignment: five MTCNN landmarks onto one face template, by a similarity transform.

The template and the default margin were fitted to the DFDC training crops (median MTCNN
landmarks over DFDC real crops), so an aligned crop frames a face like the crops the agents were
trained on: brow to chin, the face filling the crop. The detector's second look
(`vision.face_detector`) and the crops the agents see (`vision.faces`) are both cut here.
"""

from __future__ import annotations

import cv2
import numpy as np

from vision.media import as_rgb

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


def template_points(size: int = 224, margin: float = 0.3) -> np.ndarray:
    """Where :func:`align_face` puts the five landmarks in a ``size`` x ``size`` crop.

    Args:
        size: side of the square crop in pixels.
        margin: context added around the unit face box on every side, as a fraction of it.

    Returns:
        float64 array (5, 2) of x, y pixel positions in LANDMARK_NAMES order.
    """
    check_size_margin(size, margin)
    return (TEMPLATE + margin) / (1.0 + 2.0 * margin) * float(size)


def check_size_margin(size: int, margin: float) -> None:
    """Raises ValueError unless ``size`` is an integer >= 8 and ``margin`` is in [0, 2]."""
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, received {size!r}.")
    if not np.isfinite(margin) or margin < 0 or margin > 2:
        raise ValueError(f"margin must be between 0 and 2, received {margin!r}.")


def align_face(image_rgb: np.ndarray, landmarks: np.ndarray, *, size: int = 224, margin: float = 0.3,
               shrink: str = "face") -> np.ndarray:
    """Warps a face so that its five landmarks land on the template.

    Args:
        image_rgb: RGB uint8 image (H, W, 3).
        landmarks: (5, 2) x, y positions in LANDMARK_NAMES order, in image pixels.
        size: side of the output crop.
        margin: context around the face box, as a fraction of it (see :func:`template_points`).
        shrink: where a face shrunk by more than 2x is first area-resized: ``"face"``, the part of
            the picture the warp reads, its grid anchored there (the crop depends on the pixels
            around the face, not on where the face sits in the picture); ``"picture"``, the
            whole picture, its grid anchored at the picture's corner (the detector's second look,
            whose decisions were measured that way).

    Returns:
        (size, size, 3) uint8 RGB crop.

    Raises:
        ValueError: bad image, landmarks that are not (5, 2) finite numbers, or degenerate
            landmarks (all in one place) that admit no similarity transform.
    """
    if shrink not in ("face", "picture"):
        raise ValueError(f"shrink must be 'face' or 'picture', received {shrink!r}.")
    image = as_rgb(image_rgb)
    src = np.asarray(landmarks, dtype=np.float64)
    if src.shape != (5, 2) or not np.all(np.isfinite(src)):
        raise ValueError(f"landmarks must be a finite (5, 2) array, received shape {src.shape}.")
    dst = template_points(size, margin)
    matrix = _similarity(src, dst, size)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        # Shrinking a large face by more than 2x in one bilinear warp aliases (moire on skin and
        # hair, which a detector of synthesis artefacts must not see). Area-resize first. The area
        # filter's grid starts at the corner of what it shrinks: anchored at the picture's corner,
        # the same face shifted by a pixel was sampled at another phase (crops up to 43 levels
        # apart, verdicts up to 0.12); anchored at the face, it is not. Shrinking only that part
        # is also cheaper (1024 px portraits: evaluate +2-3 %).
        factor = min(1.0, 2.0 * scale)
        height, width = image.shape[:2]
        x0, y0, x1, y1 = _footprint(matrix, size, width, height, pad=2.0 / factor + 2.0)
        if shrink == "face":
            image = image[y0:y1, x0:x1]
            small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            real = np.array([small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]])
        else:
            # The whole picture's grid, but only as far right and down as the warp reads: the area
            # filter's cells start at the top-left corner, so the ones up to there are the very
            # same pixels (a 1024 px portrait: 5.5 -> 4.1 ms). The scale stays the whole picture's
            # (OpenCV rounds its size to the nearest pixel).
            x0 = y0 = 0
            x1, y1 = (_whole_cells(end, factor, limit) for end, limit in ((x1, width), (y1, height)))
            small = cv2.resize(image[:y1, :x1], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            real = np.array([np.rint(width * factor) / width, np.rint(height * factor) / height])
        image, src = small, (src - np.array([x0, y0], dtype=np.float64)) * real
        matrix = _similarity(src, dst, size)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _whole_cells(end: int, factor: float, limit: int) -> int:
    """How far (px) a picture must reach for its area shrink by ``factor`` to hold whole cells up to
    the one at ``end`` (at most ``limit``, the picture's own side)."""
    cells = int(np.ceil(end * factor)) + 1
    return min(limit, int(np.ceil(cells / factor)) + 1)


def _footprint(matrix: np.ndarray, size: int, width: int, height: int, pad: float) -> tuple[int, int, int, int]:
    """The whole-pixel box (x0, y0, x1, y1) of the picture that a ``size`` px crop warped by
    ``matrix`` (picture -> crop) reads, grown by ``pad`` px and clipped to the picture. Where the
    crop reaches past the picture the box ends at its edge, so the warp repeats the picture's own
    edge pixels there, as on the whole picture."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64) @ inverse.T
    x0, y0 = np.floor(corners.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0) + pad).astype(int)
    x0, y0 = min(max(int(x0), 0), width - 1), min(max(int(y0), 0), height - 1)
    return x0, y0, max(min(int(x1), width), x0 + 1), max(min(int(y1), height), y0 + 1)


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


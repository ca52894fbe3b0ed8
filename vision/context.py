"""The picture's condition around a face: cheap statistics a controller can condition its trust on.

Each face gets the same five numbers wherever it is decided (service, batch, fit-controller), all
computed from pixels the pipeline already holds, in well under 2 ms:

``face_size``
    log2 of the face box's side (geometric mean of width and height) in source pixels: a
    face sent at half size scores one less.
``sharpness``
    log(1 + variance of the Laplacian) of the grey 224 px crop: low = blurry. ``blur`` is the
    same number under the name the first context controller was fitted with.
``blockiness``
    JPEG 8x8 block artefacts in the source pixels of the face: log of the ratio of the mean
    jump across block boundaries to the mean jump inside blocks. About 0 for an uncompressed
    face, higher for stronger compression (lower JPEG quality).
``brightness``
    Mean grey level of the crop, 0..1.
``detected``
    1 when the face was found and aligned by the detector, 0 when the input was used as a crop.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import cv2
import numpy as np

CROP_SIDE = 224
BLOCK = 8  # JPEG's block size
# Largest side of the face region scanned for blockiness: a face filling a 4K screenshot would
# otherwise cost tens of milliseconds; a 256 px window already holds 1 000 block boundaries.
BLOCK_WINDOW = 256
CONTEXT_NAMES = ("face_size", "sharpness", "blockiness", "brightness", "detected")
ALIASES = {"blur": "sharpness"}  # old name -> feature (controllers fitted before this module)


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def sharpness(crop: np.ndarray) -> float:
    """log(1 + Laplacian variance) of the grey crop at 224 px (low = blurry)."""
    grey = _grey(crop)
    if grey.shape != (CROP_SIDE, CROP_SIDE):
        grey = cv2.resize(grey, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)
    return float(np.log1p(cv2.Laplacian(grey, cv2.CV_64F).var()))


def brightness(crop: np.ndarray) -> float:
    """Mean grey level in [0, 1]."""
    return float(_grey(crop).mean() / 255.0)


def face_size(box: Sequence[float]) -> float:
    """log2 of the geometric-mean side of an (x, y, width, height) box, at least 1 px."""
    width, height = max(float(box[2]), 1.0), max(float(box[3]), 1.0)
    return float(0.5 * np.log2(width * height))


def blockiness(source: np.ndarray, box: Sequence[float] | None = None) -> float:
    """JPEG blockiness of the face's source pixels (0 ~ none, higher = stronger compression).

    The 8x8 grid is the source image's, so the window is cut on grid lines; a decoder's blocks
    are only visible at their original scale, never on a resized crop.

    Args:
        source: the decoded image the face is in (RGB or grey uint8).
        box: (x, y, width, height) of the face in ``source``; None = the whole image.
    """
    h, w = source.shape[:2]
    x0, y0, bw, bh = (0.0, 0.0, float(w), float(h)) if box is None else (float(v) for v in box)
    # Centre window of at most BLOCK_WINDOW px, its corners snapped to the block grid.
    cx, cy = x0 + bw / 2.0, y0 + bh / 2.0
    half_w, half_h = min(bw, BLOCK_WINDOW) / 2.0, min(bh, BLOCK_WINDOW) / 2.0
    left = max(0, int(np.ceil((cx - half_w) / BLOCK)) * BLOCK)
    top = max(0, int(np.ceil((cy - half_h) / BLOCK)) * BLOCK)
    right = min(w, int((cx + half_w) // BLOCK) * BLOCK)
    bottom = min(h, int((cy + half_h) // BLOCK) * BLOCK)
    window = _grey(source[top:bottom, left:right]).astype(np.float32)  # grey only the window: cheap
    if window.shape[0] < 2 * BLOCK or window.shape[1] < 2 * BLOCK:
        return 0.0  # too small to see a grid: report "no artefacts" rather than noise
    dx = np.abs(np.diff(window, axis=1)).mean(axis=0)  # jump between column j and j+1
    dy = np.abs(np.diff(window, axis=0)).mean(axis=1)
    # Column j -> j+1 crosses a block edge when j+1 is a multiple of 8 (window starts on the grid).
    edge_x, edge_y = (np.arange(len(dx)) + 1) % BLOCK == 0, (np.arange(len(dy)) + 1) % BLOCK == 0
    across = np.concatenate([dx[edge_x], dy[edge_y]]).mean()
    inside = np.concatenate([dx[~edge_x], dy[~edge_y]]).mean()
    return float(np.log((across + 1e-3) / (inside + 1e-3)))


def face_context(crop: np.ndarray, *, box: Sequence[float] | None = None, source: np.ndarray | None = None,
                 detected: bool = False) -> dict[str, float]:
    """Every context feature of one face, in :data:`CONTEXT_NAMES` order.

    Args:
        crop: the crop the agents see (RGB uint8, normally 224 x 224).
        box: the face's (x, y, width, height) in ``source``; None = the crop is the whole input.
        source: the decoded input image; None = the crop itself (a crop sent as given).
        detected: the face was found and aligned by the detector.
    """
    if source is None:
        source, box = crop, None
    if box is None:
        h, w = source.shape[:2]
        box = (0.0, 0.0, float(w), float(h))
    return {"face_size": face_size(box), "sharpness": sharpness(crop), "blockiness": blockiness(source, box),
            "brightness": brightness(crop), "detected": 1.0 if detected else 0.0}


def check_names(names: Sequence[str]) -> None:
    """Raises ValueError naming the known features when a name is unknown."""
    unknown = sorted(set(names) - set(CONTEXT_NAMES) - set(ALIASES))
    if unknown:
        raise ValueError(f"Unknown context feature(s) {unknown}; known: {list(CONTEXT_NAMES)} "
                         f"(and {sorted(ALIASES)} as old names).")


def context_matrix(contexts: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    """(N, K) float64 matrix of the named features of each face (NaN where a face lacks one)."""
    check_names(names)
    keys = [ALIASES.get(n, n) for n in names]
    return np.array([[float(c.get(k, np.nan)) for k in keys] for c in contexts], dtype=np.float64).reshape(
        len(contexts), len(keys))

"""Light correction for face detection: dark and flat pictures, and the dark regions of a picture.

MTCNN (and BlazeFace) see too little contrast in a dark or flat frame to find its faces; only the
detector sees the corrected pixels, the agents get crops of the original. `vision.face_detector`
corrects each picture before its first pass and searches the dark regions of every picture for a
face in shadow (one more beside those found, or the only one: a dim video in a bright screenshot).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from vision.area import area_resize
from vision.face_geometry import centre_inside
from vision.media import as_rgb

# Light correction before detection: frames darker than DARK_MEAN (mean luma, 0-255) are
# brightened with a gamma curve towards BRIGHT_TARGET; flatter than FLAT_STD get CLAHE on luma.
DARK_MEAN = 80.0
BRIGHT_TARGET = 0.45
FLAT_STD = 30.0
# A picture whose faces were found may still hide one in shadow (a group with one face unlit):
# connected blocks darker than DIM_BLOCK_MEAN (mean luma, 0-255), together at least the smallest
# face on each side, get a pass of their own, brightened by their own statistics; at most
# DIM_REGIONS of them, largest first. Blocks are a quarter of the smallest face. Regions darker
# than DIM_BLACK on average are left alone: a face there has under 3 grey levels of contrast
# (a DFDC face at 10 % of its light averages 12), and black sky or clothing costs a pass.
DIM_BLOCK_MEAN = 50.0
DIM_BLACK = 10.0
DIM_REGIONS = 2
# A dark region holding the centre of a face already found that covers at least this share of the
# region's area is that face's own surroundings (dark hair, a shadowed cheek, the dark backdrop of a
# close-up) and is not searched again: on 80 gan-faces portraits at 1024 px such regions cost 11 ms
# of an 89 ms detection and held no other face (2026-12-05, night). A lit face in a group or a
# two-shot covers far less of the dark region around its dim neighbours (a two-shot's ~12 % of
# the picture), so those regions are still searched.
DIM_SKIP_SHARE = 0.25


def enhance_for_detection(image_rgb: np.ndarray, *, force: bool = False, dark_mean: float | None = None,
                          luma: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Brightens dark and stretches flat images so MTCNN can see their faces.

    Only the detector sees the corrected pixels; the agents get crops of the original image.

    Args:
        image_rgb: RGB uint8 image.
        force: apply CLAHE (and the gamma curve when dark) whatever the statistics say (the
            retry pass for images in which nothing was found).
        dark_mean: brighten as if the mean luma were this (the mean of a dark region's dark
            blocks, so that a dim face beside brighter parts is lifted enough); default: the image's.
        luma: the image's luma (``cv2.COLOR_RGB2GRAY``) when already at hand, e.g. the part of a
            whole picture's luma under this region of it: the same pixels, computed once.

    Returns:
        The image to detect on and whether it was changed.
    """
    if luma is None:
        luma = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    elif luma.shape != image_rgb.shape[:2]:
        raise ValueError(f"luma must be the image's {image_rgb.shape[:2]} pixels, received {luma.shape}.")
    total = cv2.sumElems(luma)[0]  # whole numbers, exact in float64: the mean is numpy's, bit for bit
    mean = float(total / luma.size if dark_mean is None else dark_mean)
    out, changed = image_rgb, False
    if mean < DARK_MEAN and mean > 0:
        exponent = float(np.clip(np.log(BRIGHT_TARGET) / np.log(mean / 255.0), 0.25, 1.0))
        table = np.clip(255.0 * (np.arange(256) / 255.0) ** exponent, 0, 255).astype(np.uint8)
        out, changed = cv2.LUT(out, table), True
    if force or _flat(luma, total):
        lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
        out, changed = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), True
    return out, changed


def _flat(luma: np.ndarray, total: float) -> bool:
    """Whether the luma's standard deviation is under FLAT_STD, from whole numbers (count**2 *
    variance = count * sum of squares - sum**2: cheap for each region `vision.face_refine` lights);
    a spread within a hair of the limit is left to numpy's std, so the answer is always numpy's."""
    count, squares = luma.size, int(cv2.norm(luma, cv2.NORM_L2SQR))
    spread, limit = count * squares - int(total) ** 2, FLAT_STD ** 2 * count ** 2
    if abs(spread - limit) <= 1e-9 * limit:
        return float(luma.std()) < FLAT_STD
    return spread < limit


def dim_regions(image_rgb: np.ndarray, *, min_side: float,
                found: Sequence[Sequence[float]] = ()) -> list[tuple[tuple[int, int, int, int], float]]:
    """Rectangles (x, y, width, height) around the dark parts of an image where a face of at
    least ``min_side`` px could hide, each with the mean luma of its dark blocks; largest first
    (at most ``DIM_REGIONS``).

    Dark means blocks (a quarter of ``min_side``) whose mean luma is under ``DIM_BLOCK_MEAN``;
    each group of touching dark blocks at least ``min_side`` on both sides and not black (mean
    at least ``DIM_BLACK``) gives one rectangle, grown by a block on every side (a face's bright
    edge may lie just outside). A rectangle holding the centre of a ``found`` box (x, y, width,
    height: faces already found) that covers :data:`DIM_SKIP_SHARE` of it is left out, and leaves
    its place to the next largest.
    """
    luma = cv2.cvtColor(as_rgb(image_rgb), cv2.COLOR_RGB2GRAY)
    height, width = luma.shape
    block = max(4, int(min_side // 4))
    if height < 2 * block or width < 2 * block:
        return []
    # OpenCV's area filter, from an integral image (`vision.area`: 0.4 ms, not 2.7, for a 1024 px
    # portrait, whose blocks are not a whole number of pixels).
    small = area_resize(luma, (width // block, height // block))
    count, labels, stats, _ = cv2.connectedComponentsWithStats((small < DIM_BLOCK_MEAN).astype(np.uint8),
                                                               connectivity=8)
    regions = []
    for label in range(1, count):
        x, y, w, h, _ = stats[label]
        mean = float(small[labels == label].mean())
        if min(w, h) * block < min_side or mean < DIM_BLACK:
            continue
        x0, y0 = max(0, (x - 1) * block), max(0, (y - 1) * block)
        x1, y1 = min(width, (x + w + 1) * block), min(height, (y + h + 1) * block)
        rect = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
        # A region mostly taken by a face already found is that face's own surroundings.
        if not any(centre_inside(box, rect) and box[2] * box[3] >= DIM_SKIP_SHARE * rect[2] * rect[3]
                   for box in found):
            regions.append((rect, mean))
    return sorted(regions, key=lambda r: r[0][2] * r[0][3], reverse=True)[:DIM_REGIONS]

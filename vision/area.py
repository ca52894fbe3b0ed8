"""Area-averaging resize (OpenCV's ``INTER_AREA`` when shrinking) from an integral image.

OpenCV's area filter walks every source pixel for each output, and at a scale that is not a whole
number it costs about 1 ms to shrink a 500 px window to 48 px, or 4 ms for one MTCNN pyramid level
of a 600 px image (2026-12-04). When many outputs are cut from one image (the five windows of a
face's refinement, the levels of a pyramid), one integral image serves them all: the integral of a
piecewise-constant image is exactly bilinear between whole pixels, so the sum over any cell with
fractional edges is four interpolated integral values, and its mean is what the area filter
computes (OpenCV sums in single precision and rounds about 1 pixel in 30 000 one level the other
way; these sums are exact to double precision).
"""

from __future__ import annotations

import cv2
import numpy as np

from vision.jit import compiled


def integral_image(image: np.ndarray) -> np.ndarray:
    """The integral image of an (h, w, c) uint8 image: (h + 1, w + 1, c) whole-number sums."""
    # Whole-pixel sums are exact in int32 up to 2**31 / 255 pixels of one channel.
    depth = cv2.CV_32S if image.shape[0] * image.shape[1] < 2 ** 31 // 255 else cv2.CV_64F
    table = cv2.integral(image, sdepth=depth)
    return table if table.ndim == 3 else table[:, :, None]


def cell_means(integral: np.ndarray, ys: np.ndarray, xs: np.ndarray, *,
               origin: tuple[int, int] = (0, 0), shape: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 means of the image over the cells between consecutive edges, per output.

    Args:
        integral: an :func:`integral_image` (h + 1, w + 1, c).
        ys: (n, rows + 1) cell edges down the image, in fractional pixels within [0, h], rising.
        xs: (n, cols + 1) cell edges across, within [0, w].
        origin: (top, left) of the image within a larger picture whose integral ``integral`` is:
            its sums are then taken back to the image's own, whole numbers exactly, so the means
            are those of the image's own integral, to the last bit.
        shape: the image's (h, w) there; default: the rest of the picture from ``origin``.

    Returns:
        (n, rows, cols, c) uint8, each cell's mean rounded to the nearest level.
    """
    row0, col0 = (int(v) for v in origin)
    full_width, channels = integral.shape[1:]
    height, width = ((integral.shape[0] - row0, full_width - col0) if shape is None
                     else (int(shape[0]) + 1, int(shape[1]) + 1))  # the image's own table
    if row0 < 0 or col0 < 0 or row0 + height > integral.shape[0] or col0 + width > full_width:
        raise ValueError(f"the image at {origin} of shape {shape} is not inside the {integral.shape[0] - 1}x"
                         f"{full_width - 1} picture whose integral was given.")
    ys, xs = (np.ascontiguousarray(v, dtype=np.float64) for v in (ys, xs))
    out = np.empty((ys.shape[0], ys.shape[1] - 1, xs.shape[1] - 1, channels), np.uint8)
    _cell_means_into(integral, ys, xs, row0, col0, height - 2, width - 2, out)
    return out


def _cell_means_vectorised(integral, ys, xs, row0, col0, last_y, last_x, out):  # noqa: ANN001
    """:func:`_cell_means_into` in whole-array NumPy steps: the same values, for a process that cuts
    few patches (`vision.jit`)."""
    full_width, channels = integral.shape[1:]
    flat = integral.reshape(-1, channels)
    low_y = np.minimum(np.floor(ys).astype(np.intp), last_y)
    low_x = np.minimum(np.floor(xs).astype(np.intp), last_x)
    fy, fx = (ys - low_y)[:, :, None, None], (xs - low_x)[:, None, :, None]
    at = (low_y + row0)[:, :, None] * full_width + (low_x + col0)[:, None, :]  # each crossing's top-left entry
    c0, c1, c2, c3 = (flat.take(at + step, axis=0) for step in (0, 1, full_width, full_width + 1))
    c1 -= c0
    c3 -= c2
    if row0 or col0:
        above = integral[row0, col0:col0 + last_x + 2]
        beside = integral[row0:row0 + last_y + 2, col0] - integral[row0, col0]
        first = above.take(low_x, axis=0)[:, None]
        step = above.take(low_x + 1, axis=0)[:, None]
        step -= first
        for value in (c1, c3):
            value -= step
        for value, down in ((c0, 0), (c2, 1)):
            value -= first
            value -= beside.take(low_y + down, axis=0)[:, :, None]
    # In place, term for term (sums and products commute exactly): no temporary arrays to make.
    top = c1.astype(np.float64)
    top *= fx
    top += c0
    grid = c3.astype(np.float64)
    grid *= fx
    grid += c2
    grid -= top
    grid *= fy
    grid += top
    sums = grid[:, 1:, 1:] - grid[:, :-1, 1:]
    sums -= grid[:, 1:, :-1]
    sums += grid[:, :-1, :-1]
    sums /= np.diff(ys, axis=1)[:, :, None, None] * np.diff(xs, axis=1)[:, None, :, None]
    out[...] = np.clip(np.rint(sums, out=sums), 0, 255, out=sums)


@compiled(vectorised=_cell_means_vectorised)
def _cell_means_into(integral, ys, xs, row0, col0, last_y, last_x, out):  # noqa: ANN001 - compiled by Numba
    """:func:`cell_means` into ``out``, value by value, each rounding as in the plain formula
    (``tests/unit/vision/test_area.py``'s). The vectorised twin spends about 1 ms on the five 48 px
    patches of a refinement state, 7 of a 600 px photo's 55 ms of detection (2026-12-06); this
    loop ~0.2 ms.

    The image's own integral at (y, x) is the picture's, less the picture's at (row0, x) above the
    image and at (y, col0) beside it, plus their corner: whole numbers, so exactly the image's own.
    Around each crossing of cell edges the table holds c0 c1 on its row and c2 c3 on the next; the
    interpolation reads c0, c1 - c0, c2 and c3 - c2. A cell's sum is then four crossings': the
    crossings are made a row at a time, and each row's cells as soon as the row below is made.
    ``last_y``, ``last_x``: the highest top-left row and column a crossing may read (the image's
    own table's size less 2).
    """
    channels, across = integral.shape[2], xs.shape[1]
    above, here = np.empty((across, channels)), np.empty((across, channels))
    cols, fxs = np.empty(across, np.int64), np.empty(across)
    # The corrections from the picture's table to the image's own: along the row above the image
    # (per column), and down the column beside it (per row); all zero for the image's own table.
    first, step = np.zeros((across, channels), integral.dtype), np.zeros((across, channels), integral.dtype)
    beside = np.zeros((2, channels), integral.dtype)
    inside = row0 > 0 or col0 > 0
    for i in range(ys.shape[0]):
        for b in range(across):
            low_x = min(int(np.floor(xs[i, b])), last_x)
            cols[b], fxs[b] = col0 + low_x, xs[i, b] - low_x
            if inside:
                for k in range(channels):
                    first[b, k] = integral[row0, cols[b], k]
                    step[b, k] = integral[row0, cols[b] + 1, k] - first[b, k]
        for a in range(ys.shape[1]):
            low_y = min(int(np.floor(ys[i, a])), last_y)
            fy = ys[i, a] - low_y
            row, below = row0 + low_y, row0 + low_y + 1
            if inside:
                for k in range(channels):
                    beside[0, k] = integral[row, col0, k] - integral[row0, col0, k]
                    beside[1, k] = integral[below, col0, k] - integral[row0, col0, k]
            for b in range(across):
                col, fx = cols[b], fxs[b]
                for k in range(channels):
                    c0, c2 = integral[row, col, k], integral[below, col, k]
                    c1 = integral[row, col + 1, k] - c0 - step[b, k]
                    c3 = integral[below, col + 1, k] - c2 - step[b, k]
                    c0 = c0 - first[b, k] - beside[0, k]
                    c2 = c2 - first[b, k] - beside[1, k]
                    top = c1 * fx
                    top += c0
                    value = c3 * fx
                    value += c2
                    value -= top
                    value *= fy
                    here[b, k] = value + top
            if a:
                height = ys[i, a] - ys[i, a - 1]
                for b in range(across - 1):
                    area = height * (xs[i, b + 1] - xs[i, b])
                    for k in range(channels):
                        total = here[b + 1, k] - above[b + 1, k]
                        total -= here[b, k]
                        total += above[b, k]
                        out[i, a - 1, b, k] = min(max(np.rint(total / area), 0.0), 255.0)
            above, here = here, above

def area_resize(image: np.ndarray, size: tuple[int, int], integral: np.ndarray | None = None) -> np.ndarray:
    """``cv2.resize(image, size, interpolation=cv2.INTER_AREA)`` for a shrink (size is width,
    height, each no larger than the image's), from ``integral`` when given (one table, many sizes)."""
    height, width = image.shape[:2]
    if size[0] > width or size[1] > height:
        raise ValueError(f"area_resize only shrinks: {width}x{height} -> {size[0]}x{size[1]} received.")
    table = integral_image(image) if integral is None else integral
    ys = np.arange(size[1] + 1, dtype=np.float64)[None] * (height / size[1])
    xs = np.arange(size[0] + 1, dtype=np.float64)[None] * (width / size[0])
    out = cell_means(table, ys, xs)[0]
    return out if image.ndim == 3 else out[:, :, 0]

"""MTCNN's box arithmetic, and TensorFlow's ``crop_and_resize``, in NumPy (or compiled loops: `vision.jit`).

Why this module exists: :mod:`vision.face_pyramid` needs the box helpers of the ``mtcnn`` package
(``mtcnn.utils.bboxes``), but importing anything under ``mtcnn`` first runs ``mtcnn/__init__.py``,
which imports TensorFlow (4-5 s). Once MTCNN's networks run on ONNX Runtime, those helpers and the
patch cutting (``tf.image.crop_and_resize``) are the only reasons left to load TensorFlow, so they
are reproduced here. Nothing here imports ``tensorflow``, ``keras`` or ``mtcnn``.

The functions keep the package's names, arguments and quirks so that a caller can switch imports
without any detection moving: rows are ``[image_id, x1, y1, x2, y2, score, ...]`` (five landmark
x then five landmark y in columns 6-15 after ONet), and each function gives the same rows in the
same order, with values equal bit for bit (``tests/unit/vision/test_mtcnn_boxes.py`` checks this
against the package and TensorFlow). To get there the float operations are done in the same order
and dtypes as the originals; the comments say where that is what dictates the code.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vision.jit import compiled

# Landmark order in ONet's output (and so in columns 6-10 / 11-15 of a row), and the JSON names.
_LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# The order in which the package's dicts list the keypoints (kept: callers may iterate them).
_KEYPOINT_ORDER = ("nose", "mouth_right", "right_eye", "left_eye", "mouth_left")


def _descending(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows ordered by score, highest first, ties exactly as the package orders them.

    The package reverses numpy's default (unstable) ``argsort``; which of two tied rows comes
    first then depends on that sort's internals, so the very same call is made here.
    """
    return rows[np.argsort(scores)[::-1]]


def generate_bounding_box(bbox_reg: Any, bbox_class: Any, threshold_face: float, strides: int = 2,
                          cell_size: int = 12) -> np.ndarray:
    """Candidate boxes from PNet's output maps, for a batch of images.

    Args:
        bbox_reg: PNet's box regression, (batch, h, w, 4): offsets of x1, y1, x2, y2 in window sizes.
        bbox_class: PNet's scores, (batch, h, w, 2); channel 1 is the face probability.
        threshold_face: keep the cells whose face probability is strictly above this.
        strides: PNet's step in pixels of the level's image.
        cell_size: PNet's window in pixels.

    Returns:
        float64 rows ``[image_id, x1, y1, x2, y2, score]`` (level pixels), highest score first.
    """
    reg = np.asarray(bbox_reg)
    face = np.asarray(bbox_class)[..., 1]
    rows = np.empty((np.count_nonzero(face > threshold_face), 6))
    # The threshold in the scores' dtype: NumPy compares float32 scores with a Python float so.
    _cells_into(reg, face, face.dtype.type(threshold_face), strides, cell_size, rows)
    return _descending(rows, rows[:, -1])


def _cells_vectorised(reg, face, threshold, strides, cell_size, rows):  # noqa: ANN001
    """:func:`_cells_into` in whole-array NumPy steps (the same rows)."""
    image, row, col = np.nonzero(face > threshold)
    side = np.float64(cell_size - 1)
    wide = reg[image, row, col].astype(np.float64)
    rows[:] = np.stack([image, col * strides + 1 + wide[:, 0] * side, row * strides + 1 + wide[:, 1] * side,
                        col * strides + cell_size + wide[:, 2] * side, row * strides + cell_size + wide[:, 3] * side,
                        face[image, row, col]], axis=1)


@compiled(vectorised=_cells_vectorised)
def _cells_into(reg, face, threshold, strides, cell_size, rows):  # noqa: ANN001 - compiled by Numba
    """:func:`generate_bounding_box`'s rows, before their sort: the cells whose face probability is
    above ``threshold``, in NumPy's ``nonzero`` order (image, row, column).

    The window's corners as the package takes them: the top-left is 1-based (stride * i + 1), the
    bottom-right is stride * i + cell_size, so the offsets are scaled by cell_size - 1; each offset
    is widened to float64 before the product, as NumPy does for float32 * int64 in the package, so
    each coordinate rounds exactly as there. (The vectorised twin's dozen whole-array steps cost
    ~75 us a pyramid level, 2026-12-06.)
    """
    side = np.float64(cell_size - 1)
    n = 0
    for image in range(face.shape[0]):
        for row in range(face.shape[1]):
            for col in range(face.shape[2]):
                if face[image, row, col] > threshold:
                    rows[n, 0] = image
                    rows[n, 1] = col * strides + 1 + np.float64(reg[image, row, col, 0]) * side
                    rows[n, 2] = row * strides + 1 + np.float64(reg[image, row, col, 1]) * side
                    rows[n, 3] = col * strides + cell_size + np.float64(reg[image, row, col, 2]) * side
                    rows[n, 4] = row * strides + cell_size + np.float64(reg[image, row, col, 3]) * side
                    rows[n, 5] = face[image, row, col]
                    n += 1


def _beaten_vectorised(corners, threshold, union):  # noqa: ANN001
    """:func:`_beaten` in whole-array NumPy steps, from the (n, n) matrix of overlaps."""
    x1, y1, x2, y2 = (corners[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    across = np.maximum(0, np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]))
    down = np.maximum(0, np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]))
    inter = across * down
    base = area[:, None] + area[None, :] - inter if union else np.minimum(area[:, None], area[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.triu(inter / base > threshold, k=1).any(axis=0)


@compiled(vectorised=_beaten_vectorised)
def _beaten(corners, threshold, union):  # noqa: ANN001 - compiled by Numba
    """Whether each box, given as (n, 4) ``x1, y1, x2, y2`` in ranking order, overlaps any box ranked
    above it by more than ``threshold`` (of the same dtype as the corners): intersection over union,
    or over the smaller area when not ``union``. Areas are plain differences (no +1 pixel), as in
    the package's NMS, and every value is computed in its order of operations and dtype; a
    degenerate (zero-area) pair gives 0/0 = nan, which never counts as an overlap (as there).

    The vectorised twin makes the whole (n, n) matrix of overlaps, a few hundred microseconds a call
    and about 20 calls a photo (2026-12-06); the loop stops at a box's first overlap above the threshold.
    """
    n = corners.shape[0]
    area = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
    beaten = np.zeros(n, np.bool_)
    for j in range(n):
        for i in range(j):
            across = min(corners[i, 2], corners[j, 2]) - max(corners[i, 0], corners[j, 0])
            down = min(corners[i, 3], corners[j, 3]) - max(corners[i, 1], corners[j, 1])
            # A zero of the corners' own dtype (a literal 0 would widen float32 arithmetic to float64).
            if across < 0:
                across -= across
            if down < 0:
                down -= down
            inter = across * down
            base = area[i] + area[j] - inter if union else min(area[i], area[j])
            if inter / base > threshold:
                beaten[j] = True
                break
    return beaten


def smart_nms_from_bboxes(bboxes: np.ndarray, threshold: float, column_image_id: int = 0,
                          columns_bbox: slice = slice(1, 5), column_confidence: int = 5,
                          method: str = "union", initial_sort: bool = True) -> np.ndarray:
    """Non-maximum suppression within each image of a batch.

    Note that this is MTCNN's variant, not greedy NMS: a box is dropped when any box ranked above it
    overlaps it by more than ``threshold``, whether or not that box was itself kept.

    Args:
        bboxes: rows with the image id, the box corners and a score (any extra columns ride along).
        threshold: overlap above which the lower-ranked box goes.
        column_image_id: column of the image id.
        columns_bbox: columns of ``x1, y1, x2, y2``.
        column_confidence: column of the score, used by ``initial_sort``.
        method: ``"union"`` (intersection over union) or ``"min"`` (over the smaller box's area).
        initial_sort: rank the rows by score first; otherwise their current order is the ranking.

    Returns:
        The kept rows, image by image in ascending id, each image's in ranking order. An input with
        no rows gives an empty (0, 6) array whatever its width, as the package does.
    """
    if method not in ("union", "min"):
        raise ValueError("method must be 'union' or 'min'.")
    if initial_sort:
        bboxes = _descending(bboxes, bboxes[:, column_confidence])
    ids = bboxes[:, column_image_id]
    kept = []
    for image_id in np.unique(ids):
        group = bboxes[ids == image_id]
        corners = np.ascontiguousarray(group[:, columns_bbox], dtype=np.result_type(group.dtype, np.float32))
        # The threshold in the corners' dtype: NumPy compares a float32 overlap with a Python float so.
        beaten = _beaten(corners, corners.dtype.type(threshold), method == "union")
        kept.append(group[~beaten])
    return np.concatenate(kept, axis=0) if kept else np.empty((0, 6))


def resize_to_square(bboxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares (side: the longer of width and height) about the same centre.

    Args:
        bboxes: rows ``[image_id, x1, y1, x2, y2, ...]``; not modified.

    Returns:
        A copy with columns 1-4 squared; other columns unchanged.
    """
    out = bboxes.copy()
    width, height = out[:, 3] - out[:, 1], out[:, 4] - out[:, 2]
    side = np.maximum(width, height)
    # Shift the corner by half the growth, in this order of operations (bit-equal to the package).
    out[:, 1] = out[:, 1] + width * 0.5 - side * 0.5
    out[:, 2] = out[:, 2] + height * 0.5 - side * 0.5
    out[:, 3] = out[:, 1] + side
    out[:, 4] = out[:, 2] + side
    return out


def adjust_bboxes(bboxes_batch: np.ndarray, bboxes_offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by a network's regression (RNet, ONet).

    Args:
        bboxes_batch: rows ``[image_id, x1, y1, x2, y2, ...]``; not modified.
        bboxes_offsets: (n, 4) offsets of x1, y1, x2, y2 in units of the box's width / height,
            where those are counted in pixels inclusive (x2 - x1 + 1).

    Returns:
        A copy with columns 1-4 moved.
    """
    out = bboxes_batch.copy()
    width = out[:, 3] - out[:, 1] + 1
    height = out[:, 4] - out[:, 2] + 1
    out[:, 1:5] += bboxes_offsets * np.stack([width, height, width, height], axis=-1)
    return out


def pick_matches(bboxes_batch: np.ndarray, scores_column: int = -1, score_threshold: float = 0.7) -> np.ndarray:
    """The rows whose score (column ``scores_column``) is strictly above ``score_threshold``, in order."""
    return bboxes_batch[bboxes_batch[:, scores_column] > score_threshold]


def limit_bboxes(bboxes_batch: np.ndarray, images_shapes: np.ndarray, limit_landmarks: bool = True) -> np.ndarray:
    """Boxes (and optionally landmarks) clamped into their image.

    Args:
        bboxes_batch: rows ``[image_id, x1, y1, x2, y2, score, 5 x, 5 y]`` (landmarks optional).
        images_shapes: one row per image id, ``(height, width, channels)`` as ``image.shape``
            gives it (the package's docstring says width first; its code, and this, use height first).
        limit_landmarks: clamp columns 6-10 (x) and 11-15 (y) too.

    Returns:
        A copy with x in [0, width - 1] and y in [0, height - 1].
    """
    out = bboxes_batch.copy()
    shapes = np.asarray(images_shapes)[out[:, 0].astype(int)]
    x_max, y_max = shapes[:, 1:2] - 1, shapes[:, 0:1] - 1
    # np.minimum(np.maximum(...)) rather than np.clip: the same operations as the package's.
    out[:, [1, 3]] = np.minimum(np.maximum(out[:, [1, 3]], 0), x_max)
    out[:, [2, 4]] = np.minimum(np.maximum(out[:, [2, 4]], 0), y_max)
    if limit_landmarks:
        out[:, 6:11] = np.minimum(np.maximum(out[:, 6:11], 0), x_max)
        out[:, 11:16] = np.minimum(np.maximum(out[:, 11:16], 0), y_max)
    return out


def _json_box(row: np.ndarray, input_as_width_height: bool, output_as_width_height: bool) -> list[int]:
    """Columns 1-4 of a row as four ints, converted between corner and width/height forms.

    Width and height are rounded as differences (round(x2 - x1), not round(x2) - round(x1)), and a
    corner-to-corner conversion goes through them, as the package does.
    """
    x, y, third, fourth = row[1:5]
    width, height = (third, fourth) if input_as_width_height else (third - x, fourth - y)
    values = [x, y, width, height] if output_as_width_height else [x, y, x + width, y + height]
    return np.asarray(values).round().astype(int).tolist()


def _json_keypoints(row: np.ndarray) -> dict[str, list[Any]] | None:
    """Landmarks of a row as ``name -> [x, y]`` (numpy ints, rounded half to even), or None when
    the row has none. As in the package, a row of exactly 10 values is read as landmarks alone."""
    start = 0 if row.shape[0] == 10 else 6
    if row.shape[0] < start + 10:
        return None
    points = row[start:start + 10].round().astype(int)
    where = {name: [points[k], points[k + 5]] for k, name in enumerate(_LANDMARKS)}
    return {name: where[name] for name in _KEYPOINT_ORDER}


def to_json(bboxes_batch: np.ndarray, images_count: int, input_as_width_height: bool = False,
            output_as_width_height: bool = True) -> list[list[dict[str, Any]]]:
    """Rows as the package's per-image lists of dicts.

    Args:
        bboxes_batch: rows ``[image_id, x1, y1, x2, y2, score, 5 x, 5 y]`` (landmarks optional), or
            a single such row as a 1-D array.
        images_count: number of images; ids 0 .. images_count - 1 get a list each (maybe empty).
        input_as_width_height: columns 3-4 hold width and height rather than x2, y2.
        output_as_width_height: give ``box`` as [x, y, width, height] rather than [x1, y1, x2, y2].

    Returns:
        Per image, in row order, ``{"box": [4 ints], "confidence": row[5] (numpy scalar),
        "keypoints": {name: [x, y]}}``; ``keypoints`` only for rows that carry landmarks.
    """
    rows = np.asarray(bboxes_batch)
    if rows.ndim == 1:
        rows = rows[None, :]
    result = []
    for image_id in range(images_count):
        faces = []
        for row in rows[rows[:, 0] == image_id]:
            face: dict[str, Any] = {"box": _json_box(row, input_as_width_height, output_as_width_height),
                                    "confidence": row[5]}
            keypoints = _json_keypoints(row)
            if keypoints is not None:
                face["keypoints"] = keypoints
            faces.append(face)
        result.append(faces)
    return result


def _sample_positions(start: np.ndarray, end: np.ndarray, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Where TensorFlow's ``crop_and_resize`` samples along one axis: float32 positions (n, count) in
    pixels, and which of them lie inside [0, size - 1].

    The arithmetic is float32 in the kernel's order: step = (end - start) * (size - 1) / (count - 1),
    position = start * (size - 1) + i * step; a single sample sits at the box's centre.
    """
    extent = np.float32(size - 1)
    if count > 1:
        step = (end - start) * extent / np.float32(count - 1)
        positions = start[:, None] * extent + np.arange(count, dtype=np.float32)[None, :] * step[:, None]
    else:
        # The kernel computes this one in double and rounds once; the float32 product below is also
        # a single rounding of the same exact value, so the two agree.
        positions = ((start + end) * np.float32(0.5) * extent)[:, None]
    return positions, (positions >= 0) & (positions <= extent)


def crop_and_resize(images: np.ndarray, boxes: np.ndarray, box_indices: np.ndarray,
                    crop_size: Sequence[int], extrapolation_value: float = 0.0) -> np.ndarray:
    """``tf.image.crop_and_resize(images, boxes, box_indices, crop_size, extrapolation_value=...)``
    (bilinear), vectorised in numpy.

    Args:
        images: (batch, height, width, depth) images; pixels are read as float32.
        boxes: (n, 4) normalized ``y1, x1, y2, x2``: 0 and 1 are the first and last pixel centres.
            Boxes may extend past the image, or be flipped (y1 > y2 gives an upside-down crop).
        box_indices: (n,) the image each box is cut from.
        crop_size: (crop_height, crop_width).
        extrapolation_value: the value of samples that fall outside the image.

    Returns:
        float32 (n, crop_height, crop_width, depth).

    Raises:
        ValueError: on a box index outside the batch.
    """
    images = np.asarray(images)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    index = np.asarray(box_indices).astype(np.intp).reshape(-1)
    crop_height, crop_width = (int(s) for s in crop_size)
    batch, height, width, depth = images.shape
    if index.shape[0] != boxes.shape[0]:
        raise ValueError("box_indices needs one index per box.")
    if index.size and (index.min() < 0 or index.max() >= batch):
        raise ValueError(f"box_indices must lie in [0, {batch}).")
    ys, y_inside = _sample_positions(boxes[:, 0], boxes[:, 2], height, crop_height)
    xs, x_inside = _sample_positions(boxes[:, 1], boxes[:, 3], width, crop_width)
    # Neighbouring pixels of each sample (floor and ceiling, in float32 as the kernel takes them);
    # samples outside the image are never read.
    top, left = np.floor(ys), np.floor(xs)
    crops = np.empty((boxes.shape[0], crop_height, crop_width, depth), np.float32)
    _bilinear_into(images, index, top.astype(np.intp), np.ceil(ys).astype(np.intp), ys - top, y_inside,
                   left.astype(np.intp), np.ceil(xs).astype(np.intp), xs - left, x_inside,
                   np.float32(extrapolation_value), crops)
    return crops


def _bilinear_vectorised(images, index, top, bottom, y_lerp, y_inside, left, right, x_lerp, x_inside,  # noqa: ANN001
                         outside, out):
    """:func:`_bilinear_into` in whole-array NumPy steps (the same values)."""
    height, width, depth = images.shape[1:]
    # Gathered by flat pixel index, one ``take`` per corner; outside samples read pixel 0, then
    # get ``outside``.
    rows = [((np.where(y_inside, r, 0) + (index * height)[:, None]) * width)[:, :, None] for r in (top, bottom)]
    cols = [np.where(x_inside, c, 0)[:, None, :] for c in (left, right)]
    pixels = images.reshape(-1, depth)
    top_left, top_right, bottom_left, bottom_right = (
        pixels.take(r + c, axis=0).astype(np.float32) for r in rows for c in cols)
    across, down = x_lerp[:, None, :, None], y_lerp[:, :, None, None]
    upper = top_left + (top_right - top_left) * across
    lower = bottom_left + (bottom_right - bottom_left) * across
    out[...] = upper + (lower - upper) * down
    out[~(y_inside[:, :, None] & x_inside[:, None, :])] = outside


@compiled(vectorised=_bilinear_vectorised)
def _bilinear_into(images, index, top, bottom, y_lerp, y_inside, left, right, x_lerp, x_inside,  # noqa: ANN001
                   outside, out):
    """:func:`crop_and_resize`'s samples into ``out``: TensorFlow's interpolation, term for term, in
    float32 (a separate multiply and add): ``upper + (lower - upper) * y_lerp`` with ``upper`` and
    ``lower`` mixed across by ``x_lerp``; ``outside`` where a sample's row or column is not in the image.

    The vectorised twin spends 3.3 % of a 600 px photo's work on the mixes of four gathered corners
    over a last axis of three channels (2026-12-06); the loop does each value once.
    """
    for n in range(out.shape[0]):
        image = images[index[n]]
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                if not (y_inside[n, i] and x_inside[n, j]):
                    out[n, i, j, :] = outside
                    continue
                y0, y1, x0, x1 = top[n, i], bottom[n, i], left[n, j], right[n, j]
                across, down = x_lerp[n, j], y_lerp[n, i]
                for k in range(out.shape[3]):
                    top_left, top_right = np.float32(image[y0, x0, k]), np.float32(image[y0, x1, k])
                    bottom_left, bottom_right = np.float32(image[y1, x0, k]), np.float32(image[y1, x1, k])
                    upper = top_left + (top_right - top_left) * across
                    lower = bottom_left + (bottom_right - bottom_left) * across
                    out[n, i, j, k] = upper + (lower - upper) * down

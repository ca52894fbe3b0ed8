"""vision.mtcnn_boxes against the mtcnn package's box helpers and tf.image.crop_and_resize.

Every comparison is exact (same rows, same order, np.array_equal, same dtype) on seeded random
inputs shaped like the ones vision.face_pyramid feeds them: several images in a batch, empty
inputs, boxes partly outside the image, tied scores, both NMS methods, rows with landmarks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vision import mtcnn_boxes as ours

# The references import TensorFlow (~5 s); the tests themselves take ~1.5 s, and run twice: with
# NumPy's whole-array loops and with the compiled ones (`vision.jit`).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loops")]

theirs = pytest.importorskip("mtcnn.utils.bboxes")
tf = pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[3]


def _same(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)


def _rows(rng: np.random.Generator, n: int, images: int = 3, landmarks: bool = True, ties: bool = True,
          size: float = 200.0) -> np.ndarray:
    """Rows [image, x1, y1, x2, y2, score(, 5 x, 5 y)]; corners spill past [0, size] on purpose."""
    x1, y1 = rng.uniform(-0.2 * size, size, (2, n))
    w, h = rng.uniform(4, 0.4 * size, (2, n))
    score = rng.integers(60, 100, n) / 100.0 if ties else rng.uniform(0.5, 1.0, n)
    cols = [rng.integers(0, images, n).astype(np.float64), x1, y1, x1 + w, y1 + h, score]
    if landmarks:
        cols += list(x1 + w * rng.uniform(-0.1, 1.1, (5, n))) + list(y1 + h * rng.uniform(-0.1, 1.1, (5, n)))
    return np.stack(cols, axis=1)


def _clustered(rng: np.random.Generator, n: int, images: int = 3) -> np.ndarray:
    """Rows crowded around a few faces, so NMS has overlaps to resolve at every threshold."""
    rows = _rows(rng, n, images)
    centres = rng.uniform(20, 180, (4, 2))
    pick = centres[rng.integers(0, 4, n)] + rng.normal(0, 6, (n, 2))
    side = rng.uniform(30, 60, n)
    rows[:, 1:3] = pick - side[:, None] / 2
    rows[:, 3:5] = pick + side[:, None] / 2
    return rows


def _pnet_maps(rng: np.random.Generator, batch: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    reg = rng.normal(0, 0.2, (batch, h, w, 4)).astype(np.float32)
    face = (rng.integers(0, 21, (batch, h, w)) / 20.0).astype(np.float32)  # many tied scores
    return reg, np.stack([1 - face, face], axis=-1)


@pytest.mark.parametrize("threshold", [0.6, 0.0, 1.0])  # 1.0: no cell passes, an empty result
def test_generate_bounding_box(threshold):
    rng = np.random.default_rng(1)
    for batch, h, w in [(1, 5, 7), (3, 20, 31), (2, 1, 1)]:
        reg, cls = _pnet_maps(rng, batch, h, w)
        expected = theirs.generate_bounding_box(tf.constant(reg), tf.constant(cls), threshold)
        _same(ours.generate_bounding_box(reg, cls, threshold), expected)
    # Other strides / window, and tensors in (the networks' output before ONNX).
    reg, cls = _pnet_maps(rng, 2, 9, 6)
    expected = theirs.generate_bounding_box(tf.constant(reg), tf.constant(cls), 0.3, strides=3, cell_size=16)
    _same(ours.generate_bounding_box(tf.constant(reg), tf.constant(cls), 0.3, strides=3, cell_size=16), expected)


@pytest.mark.parametrize("method", ["union", "min"])
@pytest.mark.parametrize("initial_sort", [True, False])
def test_smart_nms_from_bboxes(method, initial_sort):
    rng = np.random.default_rng(2)
    for n, landmarks in [(1, False), (7, True), (60, False), (400, True)]:
        for rows in (_rows(rng, n, landmarks=landmarks), _clustered(rng, n)):
            if not landmarks:
                rows = rows[:, :6]
            for threshold in (0.3, 0.5, 0.7):
                expected = theirs.smart_nms_from_bboxes(rows, threshold, method=method, initial_sort=initial_sort)
                _same(ours.smart_nms_from_bboxes(rows, threshold, method=method, initial_sort=initial_sort),
                      expected)


def test_smart_nms_exact_ties_duplicates_and_empty_input():
    rng = np.random.default_rng(3)
    rows = _clustered(rng, 50, images=2)
    rows = np.concatenate([rows, rows[::3]])  # exact duplicate boxes with tied scores
    rows[:, 5] = 0.9  # every score tied: the order comes from the sort alone
    for method in ("union", "min"):
        _same(ours.smart_nms_from_bboxes(rows, 0.5, method=method),
              theirs.smart_nms_from_bboxes(rows, 0.5, method=method))
    for width in (6, 16):
        empty = np.empty((0, width))
        _same(ours.smart_nms_from_bboxes(empty, 0.7), theirs.smart_nms_from_bboxes(empty, 0.7))
    with pytest.raises(ValueError):
        ours.smart_nms_from_bboxes(rows, 0.5, method="max")


def test_smart_nms_zero_area_boxes_and_float32_rows():
    """0/0 overlaps (a zero-area box beside its duplicate) never suppress; float32 rows compare
    their overlaps with the threshold in float32, as NumPy does."""
    rng = np.random.default_rng(5)
    rows = _clustered(rng, 40)
    rows[::4, 3] = rows[::4, 1]  # zero width
    rows = np.concatenate([rows, rows[::4]])
    for method in ("union", "min"):
        for table in (rows, rows.astype(np.float32)):
            for threshold in (0.5, 0.7, 0.3):
                with np.errstate(invalid="ignore"):  # the package's 0/0
                    expected = theirs.smart_nms_from_bboxes(table, threshold, method=method)
                _same(ours.smart_nms_from_bboxes(table, threshold, method=method), expected)


def test_float32_overlaps_are_compared_in_float32():
    # A threshold equal to a pair's float32 overlap: computed in float64 instead, about half of
    # those overlaps would land above it.
    rng = np.random.default_rng(6)
    corners = _clustered(rng, 40, images=1)[:, 1:5].astype(np.float32)
    x1, y1, x2, y2 = corners.T
    inter = (np.maximum(0, np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1))
             * np.maximum(0, np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1)))
    area = (x2 - x1) * (y2 - y1)
    overlap = inter / (area[:, None] + area - inter)
    ties = overlap[np.triu_indices(40, 1)]
    ties = np.unique(ties[(ties > 0.05) & (ties < 0.95)])[::7]
    assert ties.dtype == np.float32 and len(ties) >= 20
    for threshold in ties:
        expected = np.triu(overlap > threshold, k=1).any(axis=0)
        np.testing.assert_array_equal(ours._beaten(corners, threshold, True), expected)


def test_resize_to_square_and_adjust_bboxes():
    rng = np.random.default_rng(4)
    for n in (0, 1, 33):
        rows = _rows(rng, n)
        before = rows.copy()
        _same(ours.resize_to_square(rows), theirs.resize_to_square(rows))
        offsets = rng.normal(0, 0.1, (n, 4)).astype(np.float32)  # networks give float32
        _same(ours.adjust_bboxes(rows, offsets), theirs.adjust_bboxes(rows, offsets))
        _same(ours.adjust_bboxes(rows[:, :6], offsets.astype(np.float64)),
              theirs.adjust_bboxes(rows[:, :6], offsets.astype(np.float64)))
        _same(rows, before)  # neither modifies its input


def test_pick_matches():
    rng = np.random.default_rng(5)
    rows = _rows(rng, 40)
    rows[::4, 5] = 0.7  # exactly at the threshold: dropped (strictly above is kept)
    for kwargs in ({}, {"score_threshold": 0.7}, {"scores_column": 5, "score_threshold": 0.8},
                   {"scores_column": 5, "score_threshold": 1.0}):
        _same(ours.pick_matches(rows, **kwargs), theirs.pick_matches(rows, **kwargs))
    _same(ours.pick_matches(rows[:, :6], score_threshold=0.7), theirs.pick_matches(rows[:, :6], score_threshold=0.7))
    _same(ours.pick_matches(rows[:0], scores_column=5), theirs.pick_matches(rows[:0], scores_column=5))


@pytest.mark.parametrize("limit_landmarks", [True, False])
def test_limit_bboxes(limit_landmarks):
    rng = np.random.default_rng(6)
    shapes = np.array([[180, 240, 3], [200, 150, 3], [90, 300, 3]])  # height, width, channels
    for rows in (_rows(rng, 50, size=300), _rows(rng, 20, landmarks=False, size=300), _rows(rng, 0)):
        _same(ours.limit_bboxes(rows, shapes, limit_landmarks=limit_landmarks),
              theirs.limit_bboxes(rows, images_shapes=shapes, limit_landmarks=limit_landmarks))


def _same_json(a, b) -> None:
    """Equal nesting, keys in the same order, equal values of the same types."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _same_json(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_json(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("input_wh", [False, True])
@pytest.mark.parametrize("output_wh", [True, False])
def test_to_json(input_wh, output_wh):
    rng = np.random.default_rng(7)
    rows = _rows(rng, 30, images=3)
    rows[:5, 1:16] = np.round(rows[:5, 1:16]) + 0.5  # halves: numpy rounds them to even
    rows[5:8, 0] = 4  # an id past images_count: left out
    for batch in (rows, rows[:, :6], rows[:0], rows[3], rows[3, :6], rows[:, :12]):
        for count in (1, 3, 5):
            _same_json(ours.to_json(batch, count, input_as_width_height=input_wh, output_as_width_height=output_wh),
                       theirs.to_json(batch, count, input_as_width_height=input_wh, output_as_width_height=output_wh))


def test_the_chain_face_pyramid_runs_gives_the_same_faces():
    """PNet maps -> NMS per level and merged -> square -> RNet/ONet adjustments -> JSON."""
    rng = np.random.default_rng(8)
    shapes = np.array([[120, 160, 3]] * 3)

    def run(lib, maps):
        found = []
        for scale, (reg, cls) in zip((0.5, 0.35), maps):
            boxes = lib.generate_bounding_box(tf.constant(reg) if lib is theirs else reg,
                                              tf.constant(cls) if lib is theirs else cls, 0.6)
            boxes[:, 1:5] /= scale
            found.append(lib.smart_nms_from_bboxes(boxes, threshold=0.5, method="union", initial_sort=False))
        boxes = lib.resize_to_square(lib.smart_nms_from_bboxes(np.concatenate(found), 0.7, initial_sort=True))
        boxes[:, 5] = rng_scores[: len(boxes)]
        boxes = lib.pick_matches(lib.adjust_bboxes(boxes, offsets[: len(boxes)]), score_threshold=0.7)
        boxes = lib.resize_to_square(lib.smart_nms_from_bboxes(boxes, 0.7, method="union"))
        points = np.repeat(boxes[:, 1:5], [3, 2, 2, 3], axis=1) + 1.5  # 5 x then 5 y, roughly inside
        boxes = np.concatenate([lib.adjust_bboxes(boxes, offsets[: len(boxes)]), points], axis=1)
        boxes = lib.smart_nms_from_bboxes(lib.pick_matches(boxes, scores_column=5, score_threshold=0.8), 0.7,
                                          method="min")
        return lib.to_json(lib.limit_bboxes(boxes, images_shapes=shapes, limit_landmarks=False), images_count=3,
                           output_as_width_height=True, input_as_width_height=False)

    maps = [_pnet_maps(rng, 3, 55, 75), _pnet_maps(rng, 3, 37, 51)]
    rng_scores = rng.integers(50, 100, 10_000) / 100.0
    offsets = rng.normal(0, 0.05, (10_000, 4)).astype(np.float32)
    expected = run(theirs, maps)
    assert sum(map(len, expected)) > 3  # the chain keeps faces in more than one image
    _same_json(run(ours, maps), expected)


def _tf_crop(images, boxes, index, size):
    return tf.image.crop_and_resize(images, boxes, index, size, method="bilinear", extrapolation_value=0).numpy()


@pytest.mark.parametrize("size", [(24, 24), (48, 48), (1, 1), (1, 6), (5, 1), (3, 7)])
def test_crop_and_resize_equals_tensorflow(size):
    rng = np.random.default_rng(9)
    images = rng.normal(0, 0.6, (3, 37, 53, 3)).astype(np.float32)
    n = 40
    y1, x1 = rng.uniform(-0.4, 1.0, (2, n))
    h, w = rng.uniform(0.02, 0.9, (2, n))
    boxes = np.stack([y1, x1, y1 + h, x1 + w], axis=1)
    boxes[0] = [0, 0, 1, 1]  # the whole image
    boxes[1] = [0.5, 0.5, 0.5, 0.5]  # a point
    boxes[2] = [0.8, 0.9, 0.1, 0.2]  # flipped
    boxes[3] = [1.2, 1.1, 1.6, 1.5]  # wholly outside
    boxes[4] = [-0.3, -0.2, 1.3, 1.2]  # around the whole image
    boxes = boxes.astype(np.float32)
    index = rng.integers(0, 3, n).astype(np.int32)
    got = ours.crop_and_resize(images, boxes, index, size)
    _same(got, _tf_crop(images, boxes, index, size))


def test_crop_and_resize_as_face_pyramid_calls_it():
    """Boxes from pixel rows divided by the image size (mtcnn's convention), one image and several."""
    rng = np.random.default_rng(10)
    images = ((rng.integers(0, 256, (2, 61, 47, 3)).astype(np.float32) - 127.5) / 128.0)
    rows = _rows(rng, 25, images=2, size=60)
    coords = np.stack([rows[:, 2] / 61, rows[:, 1] / 47, rows[:, 4] / 61, rows[:, 3] / 47], axis=1).astype(np.float32)
    index = rows[:, 0].astype(np.int32)
    _same(ours.crop_and_resize(images, coords, index, (24, 24)), _tf_crop(images, coords, index, (24, 24)))
    _same(ours.crop_and_resize(images[:1], coords, np.zeros(25, np.int32), (48, 48)),
          _tf_crop(images[:1], coords, np.zeros(25, np.int32), (48, 48)))
    empty = ours.crop_and_resize(images, np.empty((0, 4), np.float32), np.empty(0, np.int32), (24, 24))
    assert empty.shape == (0, 24, 24, 3) and empty.dtype == np.float32
    with pytest.raises(ValueError):
        ours.crop_and_resize(images, coords[:1], np.array([2], np.int32), (24, 24))


def test_importing_the_module_loads_neither_tensorflow_nor_mtcnn():
    code = ("import sys, vision.mtcnn_boxes\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mtcnn'))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout

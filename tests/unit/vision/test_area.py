"""Area averaging from an integral image: OpenCV's INTER_AREA shrink, and the refiner's patches."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.area import area_resize, cell_means, integral_image
from vision.face_refine import window_patch, window_patches

pytestmark = pytest.mark.usefixtures("loops")  # each test with NumPy's loops, then the compiled ones


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), np.uint8), (0, 0), 1.0)


@pytest.mark.parametrize("size", [(53, 53), (106, 71), (150, 150), (13, 40)])
def test_area_resize_is_opencvs_area_filter(size):
    image = _texture(600, 600)
    ours, theirs = area_resize(image, size), cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    # OpenCV sums in single precision: a pixel within a hair of a half level may round the other way.
    assert np.abs(ours.astype(int) - theirs).max() <= 1
    assert np.mean(ours != theirs) < 1e-3


def test_area_resize_keeps_a_grey_image_and_refuses_to_enlarge():
    grey = np.full((90, 70), 77, np.uint8)
    assert np.all(area_resize(grey, (33, 41)) == 77) and area_resize(grey, (33, 41)).shape == (41, 33)
    with pytest.raises(ValueError, match="only shrinks: 70x90 -> 80x41"):
        area_resize(grey, (80, 41))


def test_cell_means_are_the_means_of_whole_and_fractional_cells():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 10
    table = integral_image(image)
    whole = cell_means(table, np.array([[0.0, 2.0, 4.0]]), np.array([[0.0, 2.0, 4.0]]))[0, :, :, 0]
    assert whole.tolist() == [[25, 45], [105, 125]]
    # Half of column 0 and all of column 1 in row 0: (0.5 * 0 + 10) / 1.5.
    part = cell_means(table, np.array([[0.0, 1.0]]), np.array([[0.5, 2.0]]))[0, 0, 0, 0]
    assert part == round(10 / 1.5)


def test_window_patches_equal_window_patch_inside_and_across_the_edge():
    region = _texture(400, 420, seed=3)
    windows = np.array([[0, 0, 400], [10, 5, 333], [20.4, 7.6, 120.2], [100, 100, 48], [200, 300, 30],
                        [300, 300, 150]])  # the last one reaches past the region: padded grey
    ours = window_patches(region, windows)
    theirs = np.stack([window_patch(region, w) for w in windows])
    assert ours.shape == (6, 48, 48, 3)
    assert np.abs(ours.astype(int) - theirs).max() <= 1
    assert np.mean(ours != theirs) < 1e-3
    assert np.all(ours[5, -5:] == 128)



def test_cell_means_are_the_interpolated_sums_term_for_term():
    # The in-place arithmetic keeps every rounding of the plain formula: the same uint8, always.
    rng = np.random.default_rng(1)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(60, 300, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if trial % 2:
            image = (image // 64 * 64 + 7).astype(np.uint8)  # flat patches: means near a half more often
        table = integral_image(image)
        n, k = int(rng.integers(1, 6)), int(rng.integers(2, 50))
        side = rng.uniform(k, min(h, w) - 1, (n, 1))
        ys = rng.uniform(0, h - side) + np.arange(k + 1) * (side / k)
        xs = rng.uniform(0, w - side) + np.arange(k + 1) * (side / k)
        flat = table.reshape(-1, 3)
        ly, lx = np.floor(ys).astype(int), np.floor(xs).astype(int)
        fy, fx = (ys - ly)[:, :, None, None], (xs - lx)[:, None, :, None]
        at = ly[:, :, None] * table.shape[1] + lx[:, None, :]
        c = [flat[at + s].astype(np.float64) for s in (0, 1, table.shape[1], table.shape[1] + 1)]
        top = c[0] + fx * (c[1] - c[0])
        grid = top + fy * (c[2] + fx * (c[3] - c[2]) - top)
        sums = grid[:, 1:, 1:] - grid[:, :-1, 1:] - grid[:, 1:, :-1] + grid[:, :-1, :-1]
        area = np.diff(ys, axis=1)[:, :, None, None] * np.diff(xs, axis=1)[:, None, :, None]
        np.testing.assert_array_equal(cell_means(table, ys, xs), np.clip(np.rint(sums / area), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("depth", ["int32", "float64"])
def test_cell_means_from_a_larger_pictures_integral_are_the_regions_own_to_the_bit(depth):
    # A region's sums taken back from the whole picture's table give the means of the region's own
    # table, bit for bit: a patch still depends on the region's pixels alone.
    rng = np.random.default_rng(2)
    picture = rng.integers(0, 256, (240, 300, 3), dtype=np.uint8)
    whole = integral_image(picture)
    whole = whole if depth == "int32" else whole.astype(np.float64)  # the table of a huge picture
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(30, 200, 2))
        top, left = int(rng.integers(0, 240 - h + 1)), int(rng.integers(0, 300 - w + 1))
        n, k = int(rng.integers(1, 6)), int(rng.integers(2, 30))
        side = rng.uniform(k, min(h, w), (n, 1))
        ys = rng.uniform(0, h - side) + np.arange(k + 1) * (side / k)
        xs = rng.uniform(0, w - side) + np.arange(k + 1) * (side / k)
        own = cell_means(integral_image(picture[top:top + h, left:left + w]), ys, xs)
        np.testing.assert_array_equal(cell_means(whole, ys, xs, origin=(top, left), shape=(h, w)), own)
    with pytest.raises(ValueError, match=r"at \(200, 0\) of shape \(50, 10\) is not inside the 240x300 picture"):
        cell_means(whole, ys, xs, origin=(200, 0), shape=(50, 10))

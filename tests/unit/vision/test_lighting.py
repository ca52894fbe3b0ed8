"""Light correction for detection: dark and flat pictures, and where a face could hide in shadow."""

from __future__ import annotations

import numpy as np
import pytest

import vision.lighting as lighting
from vision.lighting import enhance_for_detection


def test_enhance_brightens_dark_images_and_leaves_normal_ones(face_rgb):
    dark = (face_rgb * 0.1).astype(np.uint8)
    out, changed = enhance_for_detection(dark)
    assert changed and out.mean() > 3 * dark.mean()
    same, changed = enhance_for_detection(face_rgb)
    assert not changed and same is face_rgb


def test_enhance_reads_the_luma_it_is_given_as_its_own(face_rgb):
    import cv2

    for image in (face_rgb, (face_rgb * 0.2).astype(np.uint8), (face_rgb // 8 + 100).astype(np.uint8)):  # dark, flat
        luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        region, part = image[40:300, 60:330], luma[40:300, 60:330]  # a part of a picture and of its luma
        out, changed = enhance_for_detection(region, luma=part)
        own, own_changed = enhance_for_detection(region)
        assert changed == own_changed and np.array_equal(out, own)
    with pytest.raises(ValueError, match=r"luma must be the image's \(260, 270\) pixels, received \(10, 10\)"):
        enhance_for_detection(region, luma=part[:10, :10])


def test_flatness_from_whole_numbers_is_numpys_decision_even_at_the_limit():
    rng = np.random.default_rng(0)
    for _ in range(300):
        low, spread = int(rng.integers(0, 200)), int(rng.integers(1, 120))
        luma = rng.integers(low, min(256, low + spread), size=tuple(rng.integers(1, 200, 2))).astype(np.uint8)
        assert lighting._flat(luma, float(luma.sum())) == (float(luma.std()) < lighting.FLAT_STD)
    limit = np.zeros((10, 10), np.uint8)
    limit[:5] = 2 * int(lighting.FLAT_STD)  # std exactly FLAT_STD: not flat, as numpy says
    assert limit.std() == lighting.FLAT_STD and not lighting._flat(limit, float(limit.sum()))
    limit[0, 0] = 1  # a hair under
    assert lighting._flat(limit, float(limit.sum())) == (float(limit.std()) < lighting.FLAT_STD)


def test_dim_regions_finds_dark_areas_big_enough_for_a_face_but_not_black_ones():
    image = np.full((300, 400, 3), 160, np.uint8)
    image[40:160, 30:150] = 25  # a dim patch where a face could hide
    image[200:290, 250:390] = 3  # black: no face there has contrast to find
    image[10:30, 300:320] = 25  # dark, but smaller than a face
    regions = lighting.dim_regions(image, min_side=40)
    assert len(regions) == 1
    (x, y, w, h), mean = regions[0]
    assert x <= 30 and y <= 40 and x + w >= 150 and y + h >= 160 and w < 200 and h < 200
    assert mean == pytest.approx(25, abs=1)
    assert lighting.dim_regions(np.full((300, 400, 3), 160, np.uint8), min_side=40) == []


def test_dim_regions_leave_out_a_region_mostly_taken_by_a_face_already_found():
    image = np.full((300, 400, 3), 160, np.uint8)
    image[40:160, 30:150] = 25  # the dim patch, grown by a block on each side: 140 x 140 px
    (rect, _), = lighting.dim_regions(image, min_side=40)
    x, y, w, h = rect
    large = (x + 30.0, y + 30.0, w * 0.6, h * 0.6)  # centred inside, 36 % of the region
    small = (x + 50.0, y + 50.0, w * 0.3, h * 0.3)  # centred inside, 9 %: a neighbour may still hide there
    outside = (x + w + 5.0, y, w, h)  # as large, but its centre is elsewhere
    assert lighting.dim_regions(image, min_side=40, found=[large]) == []
    assert [r for r, _ in lighting.dim_regions(image, min_side=40, found=[small, outside])] == [rect]

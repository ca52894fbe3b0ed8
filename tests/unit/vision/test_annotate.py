"""Annotated images: labels placed so that no two overlap, also in a crowded group picture."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vision.annotate import THUMB, annotate, draw_faces, face_crop, label_text, place_labels
from vision.media import encode_png


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _rects(spots, sizes):
    return [(x, y, w, h) for (x, y), (w, h) in zip(spots, sizes)]


def test_a_lone_face_keeps_its_label_above_the_box_or_inside_at_the_top():
    assert place_labels([(100, 80, 60, 60)], [(90, 20)], 400, 300) == [(100, 60)]
    # No room above (the face touches the top edge): the label sits at the top of the box.
    assert place_labels([(100, 5, 60, 60)], [(90, 20)], 400, 300) == [(100, 0)]
    # A box at the right edge: its label is moved back into the picture.
    assert place_labels([(370, 80, 30, 30)], [(90, 20)], 400, 300) == [(310, 60)]


def test_side_by_side_faces_with_wide_labels_do_not_overlap():
    boxes = [(20, 60, 40, 40), (65, 60, 40, 40), (110, 60, 40, 40)]  # labels twice as wide as the boxes
    sizes = [(90, 18)] * 3
    rects = _rects(place_labels(boxes, sizes, 300, 200), sizes)
    assert not any(_overlap(a, b) for a, b in itertools.combinations(rects, 2)), rects
    assert rects[0][:2] == (20, 42)  # the first face gets the best spot


def test_a_crowded_grid_never_overlaps_and_spills_below_when_full():
    # 24 faces of 24 px packed 4 px apart, labels 70 x 16 px: more label area than free picture.
    boxes = [(4 + 28 * c, 4 + 28 * r, 24, 24) for r in range(4) for c in range(6)]
    sizes = [(70, 16)] * len(boxes)
    spots = place_labels(boxes, sizes, 172, 116)
    rects = _rects(spots, sizes)
    assert not any(_overlap(a, b) for a, b in itertools.combinations(rects, 2))
    inside = [r for r in rects if r[1] + r[3] <= 116]
    below = [r for r in rects if r[1] >= 116]
    assert len(inside) + len(below) == len(rects) and below  # every label is in the picture or under it
    assert all(0 <= x and x + w <= 172 for x, _, w, _ in rects)

    with pytest.raises(ValueError, match="one label size per box"):
        place_labels(boxes, sizes[:3], 172, 116)


def test_drawn_group_picture_has_disjoint_labels_and_grows_only_when_needed():
    rgb = np.full((120, 180, 3), 200, np.uint8)
    faces = [{"box": (4 + 28 * c, 4 + 28 * r, 24, 24), "verdict": ("fake", "real", "uncertain")[(r + c) % 3],
              "p_fake": 0.5 + 0.01 * c, "index": 6 * r + c} for r in range(4) for c in range(6)]
    img = draw_faces(rgb, faces)
    assert img.shape[1] == 180 and img.shape[0] > 120  # a band below holds what did not fit
    assert (img[120:] == 255).any() and not (img[120:] == 200).all()
    few = draw_faces(rgb, faces[:2])
    assert few.shape == (120, 180, 3)  # room enough: the picture keeps its size
    assert annotate(rgb, faces[:2]).shape == (120, 180, 3)  # no heat maps: nothing below


def test_label_text_gives_no_probability_for_cant_tell():
    assert label_text({"verdict": "fake", "p_fake": 0.874, "index": 2}) == "#2 FAKE p=0.87"
    assert label_text({"verdict": "uncertain", "p_fake": 0.5, "index": 0}) == "#0 CAN'T TELL"


def test_heat_map_tiles_are_drawn_at_224_px_and_withheld_maps_say_why():
    rgb = np.full((300, 400, 3), 180, np.uint8)
    small = encode_png(np.full((96, 96, 3), 40, np.uint8))  # a map smaller than the tile: scaled up
    face = {"box": (50, 50, 100, 100), "verdict": "fake", "p_fake": 0.8, "index": 0, "heatmaps": {"custom": small},
            "heatmap_notes": {"lenet": "lenet's map shows no location: not shown."}}
    img = annotate(rgb, [face])
    assert THUMB == 224 and img.shape[0] >= 300 + 224 + 15
    tile = img[300 + 2 + 30:300 + 2 + 224, 0:224]  # under the tile's label
    assert (tile == 40).all()
    notes = img[300 + 4 + 224:]
    assert (notes < 128).any() and (notes == 255).any()  # a dark line of text on white
    only_notes = annotate(rgb, [{**face, "heatmaps": {}}])
    assert 300 < only_notes.shape[0] < 300 + 224


def test_a_face_crop_keeps_its_aspect_and_is_clipped_to_the_image():
    rgb = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    assert face_crop(rgb, (10, 10, 40, 20), side=224).shape == (112, 224, 3)
    assert face_crop(rgb, (180, 80, 50, 50), side=100).shape == (100, 100, 3)  # clipped to 20x20, then scaled
    with pytest.raises(ValueError, match="does not overlap"):
        face_crop(rgb, (300, 10, 20, 20))
    with pytest.raises(ValueError, match="side must be >= 1"):
        face_crop(rgb, (10, 10, 20, 20), side=0)

"""BlazeFace's boxes on ONNX Runtime: the anchor grid, a real face, nothing in a blank picture."""

from __future__ import annotations

import numpy as np
import pytest

from vision.blazeface import SIDE, STRIDE, BlazeFace, anchors


def test_anchors_are_one_per_cell_x_fastest():
    grid = anchors()
    cells = SIDE // STRIDE
    assert grid.shape == (cells * cells, 2)
    assert grid[0] == pytest.approx([0.5 / cells, 0.5 / cells])
    assert grid[1] == pytest.approx([1.5 / cells, 0.5 / cells])  # the next column, same row
    assert grid[cells] == pytest.approx([0.5 / cells, 1.5 / cells])  # the next row


@pytest.fixture(scope="module")
def blaze() -> BlazeFace:
    return BlazeFace(threads=1)


def test_the_astronauts_face_is_one_box_where_it_is(blaze, face_rgb):
    boxes = blaze.boxes(face_rgb)
    assert boxes.shape == (1, 5)
    x, y, w, h, score = boxes[0]
    # The face is around x 180-265, y 64-172 in the 512x512 photograph.
    assert 160 < x + w / 2 < 250 and 80 < y + h / 2 < 160 and 60 < w < 140 and score > 0.5


def test_the_box_follows_the_face_in_a_wider_picture(blaze, face_rgb):
    wide = np.full((512, 1200, 3), 128, np.uint8)
    wide[:, 600:1112] = face_rgb  # letterboxing and scale must map the box back to these pixels
    (x, y, w, h, _), = blaze.boxes(wide)
    (x0, y0, w0, h0, _), = blaze.boxes(face_rgb)
    assert abs(x - 600 - x0) < 12 and abs(y - y0) < 12 and abs(w - w0) < 0.15 * w0


def test_a_blank_picture_has_no_face(blaze):
    assert blaze.boxes(np.full((300, 400, 3), 128, np.uint8)).shape == (0, 5)


def test_min_score_is_checked():
    with pytest.raises(ValueError, match="min_score must be in \\[0, 1\\), received 1.5"):
        BlazeFace(min_score=1.5)

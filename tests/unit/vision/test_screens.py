"""Synthetic screenshots: every kind puts the face where its box says, on a screen of a size asked for."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.screens import SCREENS, screenshot


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_the_box_holds_the_pasted_face(name):
    face = np.zeros((60, 50, 3), np.uint8)
    face[:, :, 1] = 255  # pure green: no chrome or backdrop colour is
    canvas, (x, y, w, h) = screenshot(name, face, np.random.default_rng(1))
    assert (canvas.shape[1], canvas.shape[0]) in SCREENS[name].sizes
    assert 0 <= x and x + w <= canvas.shape[1] and 0 <= y and y + h <= canvas.shape[0]
    green = (canvas[:, :, 1] == 255) & (canvas[:, :, 0] == 0) & (canvas[:, :, 2] == 0)
    ys, xs = np.nonzero(green)
    assert (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) == (x, y, w, h)


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_sizes_and_face_scale_override_the_kinds_defaults(name):
    face = cv2.resize(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64))

    def shot(scale: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        return screenshot(name, face, np.random.default_rng(2), sizes=((640, 1000),), face_scale=(scale, scale))

    (canvas, half), (again, _), (_, quarter) = shot(0.5), shot(0.5), shot(0.25)
    assert canvas.shape == (1000, 640, 3)
    np.testing.assert_array_equal(canvas, again)  # one seed, one screen
    assert half[3] / quarter[3] == pytest.approx(2.0, abs=0.05)  # the face's height follows face_scale


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown screenshot kind 'tv'; known: player, phone"):
        screenshot("tv", np.zeros((32, 32, 3), np.uint8), np.random.default_rng(0))

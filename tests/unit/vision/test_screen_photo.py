"""A phone's photo of a screen (`vision.screen_photo`): the panel's stripes, the camera's exposure
and angle, a box that holds the face, and a face the shipped detector finds again."""

from __future__ import annotations

import numpy as np
import pytest

from vision import screen_photo, screens


def test_the_panel_shows_each_pixel_as_three_stripes_and_the_camera_exposes_for_it():
    grey = np.full((4, 5, 3), 200, np.uint8)
    panel = screen_photo._panel(grey)
    assert panel.shape == (12, 15, 3) and panel[0, 0].tolist() == [200, 0, 0] and panel[0, 1].tolist() == [0, 200, 0]
    assert panel[2, 0, 0] < panel[0, 0, 0]  # the gap between rows of pixels
    assert abs(panel.mean() / 200 - screen_photo.PANEL_LIGHT) < 0.01
    photo, (x, y, w, h) = screen_photo.photograph(np.full((720, 1280, 3), 160, np.uint8), (600, 300, 100, 100),
                                                  np.random.default_rng(2), tilt=0.0)
    assert photo.shape == (1200, 1600, 3)
    assert abs(photo[y:y + h, x:x + w].mean() - 160) < 40 and photo[:, :40].mean() < 100  # a lit screen, a dim room


def test_the_box_follows_the_angle_and_the_same_seed_gives_the_same_photo(face_crop):
    screen, box = screens.screenshot("player", face_crop, np.random.default_rng(5))
    flat, flat_box = screen_photo.photograph(screen, box, np.random.default_rng(1), tilt=0.0)
    tilted, tilted_box = screen_photo.photograph(screen, box, np.random.default_rng(1), tilt=0.08)
    assert abs(flat_box[2] / flat_box[3] - box[2] / box[3]) < 0.03  # seen square on: the face's shape kept
    assert tilted_box != flat_box
    again, _ = screen_photo.photograph(screen, box, np.random.default_rng(1), tilt=0.08)
    np.testing.assert_array_equal(tilted, again)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_detector_finds_the_face_where_the_box_says(face_crop, seed):
    from vision.face_detector import FaceDetector

    screen, box = screens.screenshot("player", face_crop, np.random.default_rng(seed), face_scale=(0.4, 0.6))
    photo, (x, y, w, h) = screen_photo.photograph(screen, box, np.random.default_rng(seed))
    faces = FaceDetector().detect(photo)
    assert len(faces) == 1
    fx, fy, fw, fh = faces[0].box
    overlap = max(0, min(x + w, fx + fw) - max(x, fx)) * max(0, min(y + h, fy + fh) - max(y, fy))
    assert overlap > 0.3 * fw * fh


def test_bad_screens_and_framings_are_refused():
    screen = np.zeros((72, 128, 3), np.uint8)
    with pytest.raises(ValueError, match="fill must be a range"):
        screen_photo.photograph(screen, (0, 0, 8, 8), np.random.default_rng(0), fill=(0.9, 0.5))
    with pytest.raises(ValueError, match="RGB uint8"):
        screen_photo.photograph(screen.astype(np.float32), (0, 0, 8, 8), np.random.default_rng(0))

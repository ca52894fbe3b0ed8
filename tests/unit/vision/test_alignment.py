"""Landmark alignment onto the face template, on a real photograph's MTCNN landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from vision.alignment import TEMPLATE, align_face, template_points


def test_aligned_crop_puts_the_eyes_on_the_template(detector, face_rgb, astronaut_face):
    crop = align_face(face_rgb, astronaut_face.landmarks, size=224, margin=0.3)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    again = detector.detect(crop)
    assert again, "the aligned crop must still contain a detectable face"
    expected = template_points(224, 0.3)
    eye_error = np.linalg.norm(again[0].landmarks[:2] - expected[:2], axis=1)
    # Five points are fitted in least squares, so a wide smile pulls the eyes a little.
    assert eye_error.max() < 8.0, f"eyes off the template by {eye_error} px"
    eye_distance = np.linalg.norm(again[0].landmarks[1] - again[0].landmarks[0])
    assert abs(eye_distance - (expected[1, 0] - expected[0, 0])) < 8.0


def test_template_points_scale_with_size_and_margin():
    np.testing.assert_allclose(template_points(100, 0.0), TEMPLATE * 100)
    tight, loose = template_points(224, 0.1), template_points(224, 0.5)
    # More margin: the face is smaller and the eyes move toward the centre.
    assert (tight[1, 0] - tight[0, 0]) > (loose[1, 0] - loose[0, 0])
    with pytest.raises(ValueError, match="margin"):
        template_points(224, -0.1)
    with pytest.raises(ValueError, match="size"):
        template_points(4, 0.3)


def test_align_face_rejects_bad_landmarks(face_rgb):
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        align_face(face_rgb, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        align_face(face_rgb, np.full((5, 2), 100.0))
    with pytest.raises(ValueError, match="RGB"):
        align_face(np.zeros((10, 10, 2), np.uint8), np.zeros((5, 2)))



def test_a_large_face_gets_the_same_crop_wherever_it_sits_in_the_picture(face_rgb, astronaut_face):
    import cv2

    x0, y0 = (astronaut_face.landmarks.mean(axis=0) - 110).astype(int)
    around = face_rgb[max(y0, 0):y0 + 220, max(x0, 0):x0 + 220]
    big = cv2.resize(around, None, fx=5.0, fy=5.0, interpolation=cv2.INTER_CUBIC)  # a face shrunk > 2x
    points = (astronaut_face.landmarks - [max(x0, 0), max(y0, 0)]) * 5.0
    crops = {shrink: [align_face(np.ascontiguousarray(big[k:, k:]), points - k, shrink=shrink) for k in (0, 1, 2, 5)]
             for shrink in ("face", "picture")}
    for crop in crops["face"][1:]:
        np.testing.assert_array_equal(crop, crops["face"][0])
    # Shrunk from the whole picture, the area filter's grid moved with the picture's corner.
    assert not np.array_equal(crops["picture"][1], crops["picture"][0])
    # Both are the same face on the template: they differ by resampling alone.
    assert np.abs(crops["face"][0].astype(int) - crops["picture"][0].astype(int)).mean() < 3.0
    with pytest.raises(ValueError, match="shrink"):
        align_face(face_rgb, astronaut_face.landmarks, shrink="image")


def _shrunk_from_the_whole_picture(image, points, size):
    """The second look's crop by its definition: the whole picture area-shrunk (grid at its corner), then warped."""
    import cv2

    from vision.alignment import _similarity

    dst = template_points(size, 0.3)
    factor = min(1.0, 2.0 * float(np.sqrt(abs(np.linalg.det(_similarity(points, dst, size)[:, :2])))))
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    real = np.array([small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]])
    return cv2.warpAffine(small, _similarity(points * real, dst, size), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("corner", [(0, 0), (300, 40), (610, 590), (880, 900), (-40, 700)])
@pytest.mark.parametrize("upscale", [2.7, 4.0, 6.3])
def test_the_second_look_crop_is_the_whole_picture_shrink_wherever_the_face_sits(face_rgb, astronaut_face, corner,
                                                                                  upscale):
    # Only the part the warp reads is shrunk, on the whole picture's grid: the same pixels, to the last bit.
    import cv2

    x0, y0 = (astronaut_face.landmarks.mean(axis=0) - 60).astype(int)
    face = cv2.resize(face_rgb[y0:y0 + 120, x0:x0 + 120], None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    picture = np.random.default_rng(7).integers(0, 256, (1100, 1000, 3), dtype=np.uint8)
    x, y = corner
    picture[max(y, 0):y + face.shape[0], max(x, 0):x + face.shape[1]] = face[max(-y, 0):1100 - y, max(-x, 0):1000 - x]
    points = (astronaut_face.landmarks - [x0, y0]) * upscale + [x, y]
    expected = _shrunk_from_the_whole_picture(picture, points, 112)
    np.testing.assert_array_equal(align_face(picture, points, size=112, margin=0.3, shrink="picture"), expected)

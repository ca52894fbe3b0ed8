"""Face geometry: landmarks laid out like a face, and two boxes of one face."""

from __future__ import annotations

import numpy as np

from vision.face_geometry import centre_inside, plausible_landmarks, same_face


def test_landmark_geometry_accepts_a_face_and_refuses_scrambled_points(astronaut_face):
    box, points = astronaut_face.box, astronaut_face.landmarks
    assert plausible_landmarks(box, points, (0.2, 0.8))
    upside_down = points[[3, 4, 2, 0, 1]]  # mouth above the eyes
    assert not plausible_landmarks(box, upside_down, (0.2, 0.8))
    mirrored = points[[1, 0, 2, 4, 3]]  # right eye left of the left eye
    assert not plausible_landmarks(box, mirrored, (0.2, 0.8))
    far = points + np.array([box[2] * 2, 0.0])  # landmarks outside the box
    assert not plausible_landmarks(box, far, (0.2, 0.8))
    assert not plausible_landmarks(box, points, (0.6, 0.8))  # eyes too close for that ratio


def test_two_boxes_are_one_face_when_either_centre_lies_in_the_other():
    face = (100.0, 100.0, 80.0, 100.0)
    assert same_face(face, (110.0, 120.0, 60.0, 70.0))  # a tighter box of the same face
    assert same_face((60.0, 60.0, 200.0, 220.0), face)  # a looser one around it
    assert same_face(face, (130.0, 100.0, 80.0, 100.0))  # shifted by 30 px: its centre (170, 150) is inside
    assert not same_face(face, (185.0, 100.0, 80.0, 100.0))  # beside it: neither centre inside the other
    assert centre_inside((60.0, 60.0, 200.0, 220.0), face) and not centre_inside(face, (185.0, 100.0, 80.0, 100.0))

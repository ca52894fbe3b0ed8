"""Whether detections look like faces, and whether two boxes hold the same one.

Plain geometry on boxes (x, y, width, height, in image pixels) and MTCNN's five landmarks, shared
by the detector's gate (`vision.face_detector`) and face following in videos
(`vision.face_tracking`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def plausible_landmarks(box: Sequence[float], points: np.ndarray, eye_ratio: tuple[float, float]) -> bool:
    """True when five landmarks are laid out like a face in its box.

    Eyes above the nose above the mouth corners, left before right, every point within the box
    (with a quarter-box tolerance), and the eye distance a plausible share of the box width.
    """
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0 or points.shape != (5, 2) or not np.all(np.isfinite(points)):
        return False
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    inside = np.all((points[:, 0] >= x - w / 4) & (points[:, 0] <= x + 1.25 * w)
                    & (points[:, 1] >= y - h / 4) & (points[:, 1] <= y + 1.25 * h))
    ordered = (left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
               and max(left_eye[1], right_eye[1]) < nose[1] < max(mouth_left[1], mouth_right[1]))
    eyes = float(np.linalg.norm(right_eye - left_eye)) / w
    return bool(inside and ordered and eye_ratio[0] <= eyes <= eye_ratio[1])


def centre_inside(box: Sequence[float], other: Sequence[float]) -> bool:
    """True when the centre of ``box`` lies inside ``other`` (both x, y, width, height)."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return other[0] <= cx <= other[0] + other[2] and other[1] <= cy <= other[1] + other[3]


def same_face(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when one box's (x, y, width, height) centre lies inside the other box."""
    return centre_inside(a, b) or centre_inside(b, a)

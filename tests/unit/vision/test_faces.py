"""From an image to the agents' crops (`extract_faces`): detection modes and which faces are kept."""

from __future__ import annotations

import numpy as np
import pytest

from vision.faces import extract_faces


def test_extract_faces_modes(detector, face_rgb):
    off = extract_faces(face_rgb, None, mode="off", size=128)
    assert len(off) == 1 and off[0].crop.shape == (128, 128, 3)
    assert off[0].confidence == 1.0 and not off[0].aligned and off[0].box == (0.0, 0.0, 512.0, 512.0)

    on = extract_faces(face_rgb, detector, mode="on")
    assert len(on) == 1 and on[0].aligned and on[0].landmarks is not None and on[0].crop.shape == (224, 224, 3)

    blank_square = np.full((200, 200, 3), 90, np.uint8)
    assert extract_faces(blank_square, detector, mode="on") == []
    auto = extract_faces(blank_square, detector, mode="auto")
    assert len(auto) == 1 and not auto[0].aligned  # shaped like a crop: used whole
    wide = np.full((100, 600, 3), 90, np.uint8)
    assert extract_faces(wide, detector, mode="auto") == []  # not crop-shaped: nothing

    with pytest.raises(ValueError, match="mode must be one of"):
        extract_faces(face_rgb, detector, mode="sometimes")
    with pytest.raises(ValueError, match="needs a FaceDetector"):
        extract_faces(face_rgb, None, mode="on")


def test_extract_all_faces_or_the_best(detector, face_rgb):
    darker = (face_rgb * 0.8).astype(np.uint8)
    pair = np.hstack([face_rgb, darker])
    every = extract_faces(pair, detector, mode="on", all_faces=True)
    assert len(every) == 2
    assert every[0].confidence >= every[1].confidence
    assert {round(c.box[0] // 512) for c in every} == {0, 1}
    best = extract_faces(pair, detector, mode="on", all_faces=False)
    assert len(best) == 1 and best[0].box == every[0].box



def _cut(image, box, factor, width=300):
    """The region ``factor`` times a face box around its centre, enlarged to ``width`` px (over the
    256 px under which a crop-shaped image is used whole without detection)."""
    import cv2

    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    cut = image[int(cy - factor * h / 2):int(cy + factor * h / 2), int(cx - factor * w / 2):int(cx + factor * w / 2)]
    return cv2.resize(cut, (width, round(width * cut.shape[0] / cut.shape[1])), interpolation=cv2.INTER_CUBIC)


def test_a_face_cut_with_its_surroundings_is_aligned_a_tight_crop_used_whole(detector, face_rgb, astronaut_face):
    # The face cut loosely out of a picture is framed as the same face in the whole picture is:
    # detected and aligned, so both reach the agents as the same crop.
    for factor in (1.5, 2.0):
        cut = _cut(face_rgb, astronaut_face.box, factor)
        faces = extract_faces(cut, detector, mode="auto")
        assert len(faces) == 1 and faces[0].aligned, factor
    # A crop the face fills, like the data set crops the agents learnt from, is used whole.
    tight = _cut(face_rgb, astronaut_face.box, 1.05)
    whole = extract_faces(tight, detector, mode="auto")
    assert len(whole) == 1 and not whole[0].aligned and whole[0].box == (0.0, 0.0, 300.0, float(tight.shape[0]))
    assert whole[0].landmarks is not None  # the detector's face is kept for the record

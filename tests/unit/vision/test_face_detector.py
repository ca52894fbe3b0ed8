"""The MTCNN detector and its face gate, on a real photograph."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import vision.face_detector as fd
import vision.lighting as lighting
from vision.alignment import LANDMARK_NAMES
from vision.face_detector import BOX_SHARE, DetectedFace, FaceDetector, FaceGate, smallest_face_searched
from vision.face_geometry import plausible_landmarks


def test_detects_the_astronaut_with_landmarks_in_order(astronaut_face):
    x, y, w, h = astronaut_face.box
    # The face is around x 180-265, y 64-172 in the 512x512 photograph.
    assert 150 < x < 210 and 40 < y < 100 and 60 < w < 120 and 80 < h < 140
    assert astronaut_face.confidence > 0.95
    points = astronaut_face.landmarks
    assert points.shape == (5, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]  # the image's left first
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_detect_batch_matches_detect(detector, face_rgb, astronaut_face):
    shifted = np.roll(face_rgb, 20, axis=1)
    batch = detector.detect_batch([face_rgb, shifted])
    assert len(batch) == 2 and len(batch[0]) == 1 and len(batch[1]) == 1
    np.testing.assert_allclose(batch[0][0].landmarks, astronaut_face.landmarks, atol=2.0)
    np.testing.assert_allclose(batch[1][0].landmarks[:, 0], astronaut_face.landmarks[:, 0] + 20, atol=3.0)


@pytest.fixture(scope="module")
def plain_detector() -> FaceDetector:
    """MTCNN with only the confidence and size thresholds (the detector before the gate)."""
    return FaceDetector(enhance=False, retry=False, gate=FaceGate(geometry=False, verify=False))


def test_second_look_drops_a_candidate_that_is_not_a_face(detector, face_rgb, astronaut_face):
    # A candidate with a face-like landmark layout on the astronaut's sleeve/background: the gate's
    # second look (MTCNN on the aligned crop) must not find a face there, and keeps the real one.
    shifted = astronaut_face.landmarks + np.array([200.0, 250.0])
    x, y, w, h = astronaut_face.box
    clutter = DetectedFace(box=(x + 200, y + 250, w, h), landmarks=shifted, confidence=0.98)
    kept = detector._verify([face_rgb], [1.0], [[astronaut_face, clutter]])
    assert kept == [[astronaut_face]]


def test_dark_face_is_found_only_with_the_light_correction(detector, plain_detector, face_rgb):
    dark = (face_rgb.astype(np.float32) * 0.08).astype(np.uint8)  # mean brightness ~9/255
    assert plain_detector.detect(dark) == []
    faces = detector.detect(dark)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 150 < x < 210 and 40 < y < 100  # the astronaut's face, not something else


def test_flat_face_is_found_only_with_the_contrast_correction(detector, plain_detector, face_rgb):
    flat = (face_rgb.astype(np.float32) * 0.12 + 110).astype(np.uint8)  # luma std ~8
    assert plain_detector.detect(flat) == []
    assert len(detector.detect(flat)) == 1


def test_images_too_narrow_for_a_face_give_no_face_not_an_error(detector):
    assert detector.detect_batch([np.zeros((8, 5000, 3), np.uint8), np.zeros((30, 30, 3), np.uint8)]) == [[], []]


def test_face_gate_validates():
    with pytest.raises(ValueError, match="eye_ratio"):
        FaceGate(eye_ratio=(0.8, 0.2))
    with pytest.raises(ValueError, match=r"verify_confidence\n.*less than or equal to 1.*input_value=1\.5"):
        FaceGate(verify_confidence=1.5)


def test_a_dim_face_beside_a_lit_one_is_found_by_the_dark_region_pass(detector, face_rgb, monkeypatch):
    # The astronaut twice: lit, and in hazy shadow (7 % of the light over a raised black level).
    shadow = (face_rgb * 0.07 + 12).astype(np.uint8)
    pair = np.ascontiguousarray(np.hstack([face_rgb, shadow]))
    found = detector.detect(pair)
    assert sorted(int(f.box[0] // 512) for f in found) == [0, 1]
    dim = next(f for f in found if f.box[0] >= 512)
    assert plausible_landmarks(dim.box, dim.landmarks, (0.2, 0.8))
    lit = next(f for f in found if f.box[0] < 512)
    assert abs(dim.box[0] - 512 - lit.box[0]) < 15 and abs(dim.box[1] - lit.box[1]) < 15  # the same place
    monkeypatch.setattr(lighting, "DIM_REGIONS", 0)  # without the pass, the shadowed face is missed
    assert [int(f.box[0] // 512) for f in detector.detect(pair)] == [0]


def test_a_dim_video_in_a_bright_screenshot_is_searched_though_nothing_else_was_found(detector, face_rgb,
                                                                                      monkeypatch):
    # A phone screenshot of a dark clip: white app UI around a dim video, the only face in the video.
    # The whole picture is bright, so neither the first pass nor the retry brightens the video.
    screen = np.full((1334, 750, 3), 246, np.uint8)
    video = cv2.resize((face_rgb * 0.12 + 6).astype(np.uint8), (420, 420), interpolation=cv2.INTER_AREA)
    screen[140:560, 165:585] = video
    found = detector.detect(screen)
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert 165 < x < 585 and 140 < y < 560 and plausible_landmarks(found[0].box, found[0].landmarks, (0.2, 0.8))
    monkeypatch.setattr(lighting, "DIM_REGIONS", 0)  # without the dark-region pass: no face at all
    assert detector.detect(screen) == []


def test_a_close_up_on_a_dark_backdrop_is_not_searched_again_around_its_own_face(detector, face_rgb, monkeypatch):
    # The astronaut's face filling a dark backdrop: the dark region around it is the face's own
    # surroundings, and searching it again found nothing on 80 portraits (lighting.DIM_SKIP_SHARE).
    found = detector.detect(face_rgb)
    x, y, w, h = (int(v) for v in found[0].box)
    pad = int(0.3 * max(w, h))
    close_up = np.full((h + 2 * pad, w + 2 * pad, 3), 30, np.uint8)
    close_up[pad:pad + h, pad:pad + w] = face_rgb[y:y + h, x:x + w]
    close_up = np.ascontiguousarray(cv2.resize(close_up, (512, 512), interpolation=cv2.INTER_AREA))
    searched = []
    real_search = FaceDetector._in_region
    monkeypatch.setattr(FaceDetector, "_in_region", lambda self, *a: searched.append(a[2]) or real_search(self, *a))
    faces = detector.detect(close_up)
    assert len(faces) == 1 and searched == []
    monkeypatch.setattr(lighting, "DIM_SKIP_SHARE", 2.0)  # no face covers twice its region: searched
    again = detector.detect(close_up)
    assert len(searched) >= 1
    assert [f.box for f in again] == [f.box for f in faces]  # and the same face, nothing more


@pytest.mark.parametrize("picture, at, face_px, grey, missed_share", [
    ((320, 480), (40, 60), 32.0, 150, 1.0),  # a small picture: a search from min_face_size (40 px) misses it
    ((1080, 1920), (300, 500), 36.0, 235, 3.0),  # a 1080p desktop, a small window: its own search starts at 86 px
])
def test_a_picture_where_nothing_was_found_is_searched_again_down_to_the_smallest_box_kept(
        detector, face_rgb, astronaut_face, monkeypatch, picture, at, face_px, grey, missed_share):
    scale = face_px / astronaut_face.box[2]
    window = cv2.resize(face_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    image = np.full((*picture, 3), grey, np.uint8)
    image[at[0]:at[0] + window.shape[0], at[1]:at[1] + window.shape[1]] = window
    found = detector.detect(image)
    assert len(found) == 1 and 28 <= found[0].box[2] < 45
    monkeypatch.setattr(fd, "SMALL_FACE_SHARE", missed_share)  # not searched that small: missed
    assert detector.detect(image) == []
    monkeypatch.setattr(fd, "SMALL_FACE_SHARE", BOX_SHARE)
    assert [f.box for f in detector.detect(image)] == [found[0].box]


def test_a_face_box_tighter_than_the_search_window_is_kept_down_to_the_box_share(detector, astronaut_face):
    # MTCNN's box is tighter than the square window that found the face: a 40 px search gives
    # 37-39 px boxes, which must not be dropped at the edge of the search that found them.
    def candidate(side):
        scale = side / astronaut_face.box[2]
        x, y, _, _ = astronaut_face.box
        points = (astronaut_face.landmarks - (x, y)) * scale
        keypoints = dict(zip(LANDMARK_NAMES, points.tolist()))
        return {"box": [0.0, 0.0, side, side * 1.25], "confidence": 0.99, "keypoints": keypoints}

    assert detector.min_face_size == 40 and BOX_SHARE * 40 == 32
    kept = detector._candidates([candidate(s) for s in (31.0, 32.0, 37.0, 45.0)], 1.0)
    assert [round(f.box[2]) for f in kept] == [32, 37, 45]


def test_blazeface_as_the_first_pass_finds_the_same_face_with_the_same_landmarks(detector, face_rgb):
    blaze = FaceDetector(first_pass="blazeface")
    (ours,), (theirs,) = detector.detect(face_rgb), blaze.detect(face_rgb)
    # BlazeFace's box differs from MTCNN's; the landmarks are read again around the face from
    # canonical windows and come to rest on the same ones, so the crop is the same.
    np.testing.assert_array_equal(theirs.landmarks, ours.landmarks)
    assert theirs.box == ours.box and theirs.refined
    shadow = (face_rgb * 0.07 + 12).astype(np.uint8)  # and the dim face beside it, by its own region pass
    pair = np.ascontiguousarray(np.hstack([face_rgb, shadow]))
    assert sorted(int(f.box[0] // 512) for f in blaze.detect(pair)) == [0, 1]
    assert blaze.detect(np.full((300, 400, 3), 128, np.uint8)) == []


def test_the_first_pass_is_checked():
    with pytest.raises(ValueError, match="first_pass must be 'mtcnn' or 'blazeface'.*received first_pass='yunet'"):
        FaceDetector(first_pass="yunet")
    with pytest.raises(ValueError, match="needs refine=True.*refine=False"):
        FaceDetector(first_pass="blazeface", refine=False)


def test_a_picture_without_a_face_was_searched_down_to_the_smallest_box_kept():
    assert smallest_face_searched() == round(BOX_SHARE * 40) == 32  # whatever the picture's size
    assert smallest_face_searched(min_face_size=60) == 48

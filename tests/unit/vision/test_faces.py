"""Face detection, alignment and image decoding on a real photograph with the real MTCNN."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from vision.faces import TEMPLATE, DetectedFace, FaceDetector, FaceGate, align_face, enhance_for_detection, extract_faces, plausible_landmarks, template_points
from vision.media import ImageError, decode_image, read_image


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut_face(detector, face_rgb):
    faces = detector.detect(face_rgb)
    assert faces, "MTCNN must find the astronaut's face at min_face_size=40"
    return faces[0]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


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


def test_detect_batch_matches_detect(detector, face_rgb, astronaut_face):
    shifted = np.roll(face_rgb, 20, axis=1)
    batch = detector.detect_batch([face_rgb, shifted])
    assert len(batch) == 2 and len(batch[0]) == 1 and len(batch[1]) == 1
    np.testing.assert_allclose(batch[0][0].landmarks, astronaut_face.landmarks, atol=2.0)
    np.testing.assert_allclose(batch[1][0].landmarks[:, 0], astronaut_face.landmarks[:, 0] + 20, atol=3.0)


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


def test_decode_image_round_trips_colour():
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = 255  # pure red in RGB
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    decoded = decode_image(png.tobytes())
    assert decoded.shape == (20, 30, 3)
    np.testing.assert_array_equal(decoded[0, 0], [255, 0, 0])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty input"),
        (b"this is not an image" * 20, "not a decodable image"),
        (png_claiming(50_000, 50_000), "decompression bomb"),
        (png_claiming(8_000, 8_000), "64000000 pixels"),
    ],
)
def test_decode_image_refuses_bad_input(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_read_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(ImageError, match="missing.png: cannot read file"):
        read_image(tmp_path / "missing.png")


# --------------------------------------------------------------------------- gate and light


@pytest.fixture(scope="module")
def plain_detector() -> FaceDetector:
    """MTCNN with only the confidence and size thresholds (the detector before the gate)."""
    return FaceDetector(enhance=False, retry=False, gate=FaceGate(geometry=False, verify=False))


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


def test_enhance_brightens_dark_images_and_leaves_normal_ones(face_rgb):
    dark = (face_rgb * 0.1).astype(np.uint8)
    out, changed = enhance_for_detection(dark)
    assert changed and out.mean() > 3 * dark.mean()
    same, changed = enhance_for_detection(face_rgb)
    assert not changed and same is face_rgb


def test_images_too_narrow_for_a_face_give_no_face_not_an_error(detector):
    assert detector.detect_batch([np.zeros((8, 5000, 3), np.uint8), np.zeros((30, 30, 3), np.uint8)]) == [[], []]


def test_face_gate_validates():
    with pytest.raises(ValueError, match="eye_ratio"):
        FaceGate(eye_ratio=(0.8, 0.2))
    with pytest.raises(ValueError, match="confidences"):
        FaceGate(verify_confidence=1.5)

"""The face-sized MTCNN driver against the mtcnn package itself, on a real photograph."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.face_pyramid import WINDOW, FacePyramid, _normalized, pyramid_scales
from vision.alignment import LANDMARK_NAMES
from vision.face_detector import FaceDetector


@pytest.fixture(scope="module")
def pyramid() -> FacePyramid:
    return FacePyramid()


def _points(found: dict) -> np.ndarray:
    return np.array([found["keypoints"][name] for name in LANDMARK_NAMES], dtype=np.float64)


def test_pyramid_starts_at_the_smallest_face_and_stops_at_the_window():
    scales = pyramid_scales(1000, 100)
    assert scales[0] == pytest.approx(WINDOW / 100)
    assert 1000 * scales[-1] >= WINDOW > 1000 * scales[-1] * 0.709
    # A larger smallest face means fewer, smaller levels: the work follows the face.
    assert len(pyramid_scales(1000, 200)) < len(scales) and pyramid_scales(50, 60) == []


def test_finds_the_same_face_and_landmarks_as_the_mtcnn_package(pyramid, face_rgb):
    from mtcnn import MTCNN

    # 12 px: the only smallest face at which the package's own pyramid has no empty level.
    reference = MTCNN().detect_faces(face_rgb, min_face_size=12)
    ours = pyramid.detect_faces([face_rgb], min_face_size=12)[0]
    assert len(reference) == 1 and len(ours) == 1
    np.testing.assert_allclose(ours[0]["box"], reference[0]["box"], atol=4)
    np.testing.assert_allclose(_points(ours[0]), _points(reference[0]), atol=3)
    assert ours[0]["confidence"] > 0.95


def test_onet_patches_equal_crop_and_resize_on_the_whole_image(pyramid, face_rgb):
    import tensorflow as tf

    # Boxes inside, across the border and wholly outside the picture's top left.
    boxes = np.array([[0, 170.4, 60.2, 270.9, 175.5, 0.9], [0, -30.0, -12.5, 90.0, 101.0, 0.9],
                      [0, 430.0, 400.0, 560.0, 530.0, 0.9]])
    height, width = face_rgb.shape[:2]
    coords = np.stack([boxes[:, 2] / height, boxes[:, 1] / width, boxes[:, 4] / height, boxes[:, 3] / width], axis=1)
    whole = tf.image.crop_and_resize(_normalized(face_rgb)[None], coords.astype(np.float32),
                                     np.zeros(len(boxes), np.int32), (48, 48))
    np.testing.assert_allclose(np.asarray(pyramid._patches_full(face_rgb, boxes)), np.asarray(whole), atol=1e-4)


def test_detection_imports_no_tensorflow(face_rgb, tmp_path):
    import subprocess
    import sys

    import cv2

    # The point of the ONNX exports: a process that only detects faces never pays TensorFlow's import.
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), face_rgb[:, :, ::-1])
    code = ("import sys, cv2; from vision.face_detector import FaceDetector; "
            f"faces = FaceDetector().detect(cv2.imread({str(path)!r})[:, :, ::-1]); "
            "print(len(faces), 'tensorflow' in sys.modules, 'keras' in sys.modules, 'mtcnn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["1", "False", "False", "False"]


def test_batch_of_one_size_gives_each_image_its_own_faces(pyramid, face_rgb):
    blank = np.full_like(face_rgb, 128)
    found = pyramid.detect_faces([blank, face_rgb, np.roll(face_rgb, 30, axis=1)], min_face_size=40)
    assert [len(f) for f in found] == [0, 1, 1]
    assert found[2][0]["box"][0] == pytest.approx(found[1][0]["box"][0] + 30, abs=4)
    with pytest.raises(ValueError, match="one size"):
        pyramid.detect_faces([face_rgb, face_rgb[:200]], min_face_size=40)


def test_min_face_share_skips_faces_small_next_to_the_image_and_keeps_large_ones(face_rgb):
    # The astronaut's face (~95 px) in a 2400x2400 canvas is 4 % of the short side.
    canvas = np.full((2400, 2400, 3), 200, np.uint8)
    canvas[900:1412, 1000:1512] = face_rgb
    everywhere = FaceDetector(min_face_share=0.0)
    sized = FaceDetector(min_face_share=0.12, retry=False)
    assert len(everywhere.detect(canvas)) == 1
    assert sized.detect(canvas) == []  # a third of 12 % of the side: not looked for
    # ... unless nothing else is found: a picture without a face is searched for the smallest ones.
    assert len(FaceDetector(min_face_share=0.12).detect(canvas)) == 1
    # The same photo upscaled to a portrait: the face is 19 % of the side and found alike.
    portrait = cv2.resize(face_rgb, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    a, b = everywhere.detect(portrait), sized.detect(portrait)
    assert len(a) == len(b) == 1
    eyes = np.linalg.norm(a[0].landmarks[1] - a[0].landmarks[0])
    assert np.abs(a[0].landmarks - b[0].landmarks).max() < 0.05 * eyes


def test_min_face_share_is_validated():
    with pytest.raises(ValueError, match="min_face_share"):
        FaceDetector(min_face_share=1.5)


def test_load_loops_loads_every_loop_a_detection_runs_and_changes_no_face(face_rgb, monkeypatch):
    # A worker loads the loops with its models, not on its first picture; NumPy's twins and the
    # compiled loops find the same faces, to the last bit.
    from vision import area, jit, mtcnn_boxes
    from vision.face_pyramid import load_loops

    monkeypatch.setattr(jit, "_IN_USE", [False])
    detector = FaceDetector()
    pictures = [face_rgb, cv2.resize(face_rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)]

    def faces() -> list[tuple]:
        return [(f.box, f.landmarks.tolist(), f.confidence) for p in pictures for f in detector.detect(p)]

    vectorised = faces()
    load_loops()
    assert jit.compiled_loops_in_use()
    loops = (area._cell_means_into, mtcnn_boxes._cells_into, mtcnn_boxes._beaten, mtcnn_boxes._bilinear_into)
    loaded = {loop.__name__: set(loop.dispatcher().signatures) for loop in loops}
    assert len(vectorised) == 2 and faces() == vectorised
    assert {loop.__name__: set(loop.dispatcher().signatures) for loop in loops} == loaded

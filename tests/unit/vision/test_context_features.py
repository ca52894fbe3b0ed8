"""vision.context: the picture's condition around a face, deterministic and ordered as named."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from vision.context import CONTEXT_NAMES, blockiness, context_matrix, face_context


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def test_features_are_deterministic_and_named_in_order(face_crop):
    first, second = face_context(face_crop), face_context(face_crop.copy())
    assert list(first) == list(CONTEXT_NAMES)
    assert first == second


def test_a_blurred_copy_scores_blurrier_and_a_q30_copy_blockier(face_rgb):
    sharp = face_context(face_rgb)
    blurred = face_context(cv2.GaussianBlur(face_rgb, (0, 0), 2.0))
    assert blurred["sharpness"] < sharp["sharpness"] - 1.0
    q90, q30 = (face_context(_jpeg(face_rgb, q))["blockiness"] for q in (90, 30))
    assert q30 > q90 + 0.2 > sharp["blockiness"] - 0.1  # q30: lower quality, more block artefacts


def test_blockiness_reads_the_source_grid_not_the_resized_crop(face_rgb):
    blocky = _jpeg(face_rgb, 20)
    box = (100.0, 20.0, 260.0, 260.0)
    crop = cv2.resize(blocky[20:280, 100:360], (224, 224), interpolation=cv2.INTER_AREA)
    from_source = face_context(crop, box=box, source=blocky)["blockiness"]
    assert from_source == pytest.approx(blockiness(blocky, box))
    assert from_source > face_context(crop)["blockiness"] + 0.2  # the resize hid the grid


def test_face_size_brightness_and_detected(face_crop):
    small = cv2.resize(face_crop, (112, 112), interpolation=cv2.INTER_AREA)
    assert face_context(face_crop)["face_size"] - face_context(small)["face_size"] == pytest.approx(1.0)
    dark = (face_crop * 0.4).astype(np.uint8)
    assert face_context(dark)["brightness"] < face_context(face_crop)["brightness"]
    assert face_context(face_crop, detected=True)["detected"] == 1.0
    assert face_context(face_crop)["detected"] == 0.0


def test_context_matrix_orders_columns_knows_the_old_name_and_refuses_others(face_crop):
    ctx = face_context(face_crop)
    m = context_matrix([ctx, {}], ("blur", "brightness"))
    assert m[0].tolist() == [ctx["sharpness"], ctx["brightness"]]
    assert np.isnan(m[1]).all()
    with pytest.raises(ValueError, match="jpeg"):
        context_matrix([ctx], ("jpeg",))


def test_cheap_enough_for_every_face(face_rgb):
    screen = cv2.resize(face_rgb, (1920, 1080))
    crop = cv2.resize(face_rgb[30:250, 120:340], (224, 224))
    face_context(crop, box=(800, 300, 400, 400), source=screen)  # warm OpenCV
    start = time.perf_counter()
    for _ in range(20):
        face_context(crop, box=(800, 300, 400, 400), source=screen, detected=True)
    # Budget 2 ms per face; 10 ms leaves room for a loaded shared test machine.
    assert (time.perf_counter() - start) / 20 < 0.010

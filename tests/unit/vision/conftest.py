"""Fixtures of the vision tests: the real MTCNN detector, loaded once, and the face it finds."""

from __future__ import annotations

import pytest

from vision.face_detector import DetectedFace, FaceDetector


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="session")
def astronaut_face(detector, face_rgb) -> DetectedFace:
    faces = detector.detect(face_rgb)
    assert faces, "MTCNN must find the astronaut's face at min_face_size=40"
    return faces[0]


@pytest.fixture(params=["vectorised", "compiled"])
def loops(request, monkeypatch) -> str:
    """Runs a test with `vision.jit`'s loops as NumPy's whole-array twins, then compiled by Numba:
    the values must be the same either way."""
    from vision import jit

    monkeypatch.setattr(jit, "_IN_USE", [request.param == "compiled"])
    return request.param

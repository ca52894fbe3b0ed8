"""A stage worker's thread cap (`blackboard.worker_threads`): one number for ONNX Runtime's and
TensorFlow's pools (read from the environment when they start), OpenMP and OpenCV."""

from __future__ import annotations

import cv2
import pytest

from blackboard.worker_threads import limit_threads

VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


@pytest.fixture
def restored_cv2_threads():
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


@pytest.mark.parametrize("asked, applied", [(3, 3), (1, 1), (0, 1), (-2, 1), (2.7, 2)])
def test_every_pool_gets_the_cap_and_never_less_than_one(asked, applied, monkeypatch, restored_cv2_threads):
    for var in VARS:
        monkeypatch.setenv(var, "16")
    limit_threads(asked)
    assert [int(__import__("os").environ[var]) for var in VARS] == [applied] * 3
    assert cv2.getNumThreads() == applied

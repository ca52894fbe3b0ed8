"""vision.jit: NumPy's twins unless a process asks for the compiled loops; compiled, NumPy's rounding and division."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vision import jit

ROOT = Path(__file__).resolve().parents[3]


def _product_plus_twin(a, b, c, out):  # noqa: ANN001
    out[:] = -1.0  # not the loop's values: which one ran shows


@jit.compiled(vectorised=_product_plus_twin)
def _product_plus(a, b, c, out):  # noqa: ANN001
    for i in range(a.shape[0]):
        out[i] = a[i] * b[i] + c[i]


def _ratio_twin(a, b):  # noqa: ANN001
    return np.float64(a) / b


@jit.compiled(vectorised=_ratio_twin)
def _ratio(a, b):  # noqa: ANN001
    return a / b


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.setattr(jit, "_IN_USE", [False])
    jit.use_compiled_loops()
    assert jit.compiled_loops_in_use()


def test_the_twin_runs_until_the_process_asks_for_the_loops(monkeypatch):
    monkeypatch.setattr(jit, "_IN_USE", [False])
    out = np.empty(2)
    _product_plus(np.ones(2), np.ones(2), np.ones(2), out)
    assert out.tolist() == [-1.0, -1.0]
    jit.use_compiled_loops()
    _product_plus(np.ones(2), np.ones(2), np.ones(2), out)
    assert out.tolist() == [2.0, 2.0] and _product_plus.dispatcher().signatures


def test_a_product_and_a_sum_round_twice_as_numpy_does(compiled):
    # (1 + 2**-30) * (1 - 2**-30) = 1 - 2**-60: rounded to 1 before the sum, the result is 0; a
    # fused multiply-add would keep -2**-60.
    a, b, c = np.array([1 + 2.0 ** -30, 3.0]), np.array([1 - 2.0 ** -30, 0.1]), np.array([-1.0, 0.7])
    out = np.empty(2)
    _product_plus(a, b, c, out)
    np.testing.assert_array_equal(out, a * b + c)
    assert out[0] == 0.0


def test_division_by_zero_is_numpys_not_an_exception(compiled):
    assert _ratio(1.0, 0.0) == np.inf
    assert np.isnan(_ratio(0.0, 0.0))


def test_a_one_shot_detection_never_imports_numba_and_load_loops_does(face_rgb, tmp_path):
    picture = tmp_path / "face.png"
    import cv2

    cv2.imwrite(str(picture), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR))
    code = ("import sys, cv2\nfrom vision.face_detector import FaceDetector\n"
            f"rgb = cv2.cvtColor(cv2.imread({str(picture)!r}), cv2.COLOR_BGR2RGB)\n"
            "assert FaceDetector().detect(rgb)\nprint('numba' in sys.modules)\n"
            "from vision.face_pyramid import load_loops\nload_loops()\nprint('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]

"""vision.jit: loops compiled on first call, with NumPy's rounding and NumPy's division."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from vision.jit import compiled

ROOT = Path(__file__).resolve().parents[3]


def _product_plus(a, b, c, out):  # noqa: ANN001
    for i in range(a.shape[0]):
        out[i] = a[i] * b[i] + c[i]


def _ratio(a, b):  # noqa: ANN001
    return a / b


def test_a_product_and_a_sum_round_twice_as_numpy_does():
    # (1 + 2**-30) * (1 - 2**-30) = 1 - 2**-60: rounded to 1 before the sum, the result is 0; a
    # fused multiply-add would keep -2**-60.
    a, b, c = np.array([1 + 2.0 ** -30, 3.0]), np.array([1 - 2.0 ** -30, 0.1]), np.array([-1.0, 0.7])
    out = np.empty(2)
    compiled(_product_plus)(a, b, c, out)
    np.testing.assert_array_equal(out, a * b + c)
    assert out[0] == 0.0


def test_division_by_zero_is_numpys_not_an_exception():
    ratio = compiled(_ratio)
    assert ratio(1.0, 0.0) == np.inf
    assert np.isnan(ratio(0.0, 0.0))


def test_numba_is_imported_on_first_call_only():
    code = ("import sys\nimport vision.area, vision.mtcnn_boxes\n"
            "print('numba' in sys.modules)\n"
            "import numpy as np\nvision.area.area_resize(np.zeros((8, 8), np.uint8), (4, 4))\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]

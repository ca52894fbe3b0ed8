"""The committed MTCNN exports against the mtcnn package's own networks."""

from __future__ import annotations

import numpy as np
import pytest

from agents.onnx_model import OnnxModel
from vision.mtcnn_export import MODEL_DIR, NETWORKS, package_network

pytestmark = pytest.mark.slow  # TensorFlow and tf2onnx: several seconds


def test_regenerated_exports_are_the_committed_files_byte_for_byte(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    # As for the generated gRPC code: the files in the repository are what the exporter makes
    # from the installed mtcnn's weights, so an upgrade that changes them cannot go unnoticed.
    # In a process of its own, as a maintainer runs it (tensor names follow TensorFlow's counters).
    repo = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-m", "fakeface.cli", "bundle", "export-mtcnn", "--out", str(tmp_path)],
                   cwd=repo, check=True, capture_output=True, timeout=300)
    for name in NETWORKS:
        assert (tmp_path / f"{name}.onnx").read_bytes() == (MODEL_DIR / f"{name}.onnx").read_bytes(), name


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_each_export_answers_as_the_package_network(name):
    shape = NETWORKS[name][2]
    side = (37, 53) if shape[1] is None else shape[1:3]
    x = np.random.default_rng(0).uniform(-1, 1, size=(6, *side, 3)).astype(np.float32)
    theirs = [np.asarray(t) for t in package_network(name)(x)]
    ours = OnnxModel(MODEL_DIR / f"{name}.onnx").run(x)
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, atol=2e-6)

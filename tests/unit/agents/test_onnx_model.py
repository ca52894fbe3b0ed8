"""The CNN agents on ONNX Runtime: the export computes what the Keras file does (agents/onnx_model.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents import signing
from agents.bundle import BundleError, load_bundle
from agents.bundle_edit import add_onnx
from agents.bundle_staging import staged_bundle
from agents.onnx_model import OnnxModel
from agents.predictor import AgentPredictor
from agents.registry import agent_names
from fakeface.bundle_cli import main as bundle_main

REPO = Path(__file__).resolve().parents[3]


def _faces(n: int = 5, side: int = 48) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", agent_names(kind="keras"))
def test_the_export_answers_as_the_keras_model(tiny_bundle, name):
    bundle = load_bundle(tiny_bundle)
    info = bundle.agent(name)
    assert info.onnx_file == f"{name}.onnx" and len(info.onnx_sha256) == 64
    onnx, keras = AgentPredictor(bundle, name), AgentPredictor(bundle, name, runtime="keras")
    assert isinstance(onnx.model, OnnxModel) and not isinstance(keras.model, OnnxModel)
    faces = _faces()
    np.testing.assert_allclose(onnx.predict_proba(faces), keras.predict_proba(faces), atol=1e-6)
    # Any batch size, as serving's micro-batches come.
    np.testing.assert_allclose(onnx.predict_proba(faces[:1]), keras.predict_proba(faces[:1]), atol=1e-6)


def test_float16_stored_weights_keep_their_export_small_and_exact(tmp_path):
    from agents.bundle import write_bundle
    from agents.registry import get_agent

    spec = get_agent("lenet")
    model = spec.build(input_size=32, dense_units=64)
    art = {"lenet": {"model": model, "preprocessing": spec.contract(32)}}
    b32, b16 = write_bundle(tmp_path / "f32", art), write_bundle(tmp_path / "f16", art, storage_dtype="float16")
    assert (b16.path / "lenet.onnx").stat().st_size < 0.6 * (b32.path / "lenet.onnx").stat().st_size
    faces = _faces(side=32)
    np.testing.assert_array_equal(AgentPredictor(b16, "lenet").predict_proba(faces),
                                  AgentPredictor(b16, "lenet").predict_proba(faces))
    np.testing.assert_allclose(AgentPredictor(b16, "lenet").predict_proba(faces),
                               AgentPredictor(b16, "lenet", runtime="keras").predict_proba(faces), atol=1e-6)


def _without_onnx(src: Path, dest: Path) -> Path:
    """A copy of a bundle as written before the exports existed (no `onnx` entries or files)."""
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    with staged_bundle(dest, manifest, copy_of=dest) as tmp:
        for entry in manifest["agents"].values():
            (tmp / entry.pop("onnx")["file"]).unlink()
    return dest


def test_an_older_bundle_runs_on_keras_and_add_onnx_brings_it_over(controlled_bundle, tmp_path, capsys):
    old = _without_onnx(controlled_bundle(), tmp_path / "old")
    before = load_bundle(old, trust=signing.WRITER)
    assert not before.agent("custom").onnx_file
    faces = _faces()
    legacy = AgentPredictor(before, "custom")
    assert not isinstance(legacy.model, OnnxModel)  # no export: the Keras file, as before
    assert not legacy.thread_safe  # so in-process stages call it from one thread at a time

    assert bundle_main(["add-onnx", "--bundle", str(old), "--out", str(tmp_path / "new")]) == 0
    assert "ONNX export" in capsys.readouterr().out
    after = load_bundle(tmp_path / "new", trust=signing.WRITER)
    assert all(after.agent(n).onnx_file for n in after.agent_names)
    assert after.extra("controller") == before.extra("controller")  # same votes: nothing to refit
    ported = AgentPredictor(after, "custom")
    assert isinstance(ported.model, OnnxModel) and ported.thread_safe
    np.testing.assert_allclose(ported.predict_proba(faces), legacy.predict_proba(faces), atol=1e-6)
    assert add_onnx(tmp_path / "new").version == after.version  # nothing left to export: unchanged


def test_an_export_that_is_not_a_model_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="runtime must be"):  # a usage error, said before any file is read
        load_bundle().load_model("custom", runtime="torch")
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="x.onnx does not load as an ONNX model"):
        OnnxModel(tmp_path / "x.onnx")


@pytest.mark.slow
def test_a_process_that_scores_faces_imports_no_tensorflow(tiny_bundle, face_rgb, tmp_path):
    # The cold start this buys: agents and detector on ONNX Runtime, TensorFlow never imported.
    import cv2

    cv2.imwrite(str(tmp_path / "face.png"), face_rgb[:, :, ::-1])
    code = ("import sys, cv2\n"
            "from blackboard.inprocess import InProcessBoard\n"
            f"board = InProcessBoard({str(tiny_bundle)!r}, preload_detector=True)\n"
            f"image = cv2.imread({str(tmp_path / 'face.png')!r})[:, :, ::-1]\n"
            "case = board.classify(image)\n"
            "print(len(case.faces), sorted(m for m in ('tensorflow', 'keras', 'mtcnn') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1 []"

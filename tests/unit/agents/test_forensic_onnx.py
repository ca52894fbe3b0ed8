"""The forensic agent's trees on ONNX Runtime: the same probabilities and explanations as scikit-learn,
carried in the bundle beside the skops file, and a scoring process without scikit-learn."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents import signing
from agents.bundle import load_bundle, write_bundle
from agents.bundle_edit import add_onnx
from agents.bundle_staging import staged_bundle
from agents.forensic import build_forensic
from agents.forensic_features import CONTRACT, N_FEATURES
from agents.forensic_onnx import OnnxTrees, export_forensic_onnx, load_forensic_onnx
from agents.predictor import AgentPredictor

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def fitted():
    """A small forensic model on features where two columns carry the class."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 100)
    features = rng.normal(size=(200, N_FEATURES)).astype(np.float32)
    features[:, 3] += 1.5 * labels
    features[:, 40] -= 1.0 * labels
    model = build_forensic(input_shape=(64, 64, 3), max_iter=30, early_stopping=False, min_samples_leaf=5)
    return model.fit(features, labels), features


def test_the_export_scores_and_explains_as_scikit_learn(fitted, tmp_path):
    model, features = fitted
    ported = load_forensic_onnx(export_forensic_onnx(model, tmp_path / "f.onnx"))
    assert isinstance(ported.estimator, OnnxTrees)
    assert (ported.name, ported.n_features, ported.feature_version) == (model.name, model.n_features,
                                                                         model.feature_version)
    np.testing.assert_array_equal(ported.medians, model.medians)
    expected, got = model.predict_features(features), ported.predict_features(features)
    assert expected[:, 1].min() < 0.2 and expected[:, 1].max() > 0.8  # the trees do decide
    np.testing.assert_allclose(got, expected, atol=1e-6)
    for ours, theirs in zip(ported.explain_features(features[:20]), model.explain_features(features[:20])):
        assert ours.keys() == theirs.keys()
        np.testing.assert_allclose(list(ours.values()), list(theirs.values()), atol=1e-4)


def test_a_file_that_is_not_a_forensic_export_is_refused_by_name(fitted, tmp_path):
    model, _ = fitted
    with pytest.raises(ValueError, match="not a fakeface forensic ONNX export"):
        load_forensic_onnx(REPO / "vision" / "mtcnn_onnx" / "rnet.onnx")  # ONNX, but not ours
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="x.onnx does not load as an ONNX model"):
        load_forensic_onnx(tmp_path / "x.onnx")
    unfitted = build_forensic()
    with pytest.raises(ValueError, match="Only a fitted forensic model"):
        export_forensic_onnx(unfitted, tmp_path / "u.onnx")


@pytest.mark.parametrize("change", [{"feature_version": -1}, {"feature_names": ["renamed"] * N_FEATURES},
                                    {"feature_names": None, "feature_version": 999}],
                         ids=["older-version-full-width", "other-features", "no-names-newer-version"])
def test_an_export_made_for_other_features_is_refused_like_the_skops_file(fitted, tmp_path, change):
    import onnx

    from agents.forensic_onnx import METADATA_KEY

    model, _ = fitted
    proto = onnx.load(str(export_forensic_onnx(model, tmp_path / "f.onnx")))
    (entry,) = [e for e in proto.metadata_props if e.key == METADATA_KEY]
    about = json.loads(entry.value)
    assert about["feature_names"][:2] and len(about["feature_names"]) == model.n_features  # kept for this check
    about.update(change)
    if about["feature_names"] is None:
        del about["feature_names"]  # an export from before the names were kept
    entry.value = json.dumps(about)
    onnx.save(proto, str(tmp_path / "g.onnx"))
    with pytest.raises(ValueError, match="was trained on forensic features version .* Retrain the agent"):
        load_forensic_onnx(tmp_path / "g.onnx")


def _bundle(model, out: Path):
    art = {"model": model, "kind": "forensic", "preprocessing": CONTRACT, "temperature": 1.3, "threshold": 0.5}
    return write_bundle(out, {"forensic": art}, description={"data": "test fixture"})


def _faces(count: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(count)]


def test_a_bundle_carries_the_export_and_scores_with_it(fitted, tmp_path):
    model, _ = fitted
    bundle = _bundle(model, tmp_path / "b")
    info = bundle.agent("forensic")
    assert info.file == "forensic.skops" and info.onnx_file == "forensic.onnx" and info.onnx_sha256
    served, fitted_file = AgentPredictor(bundle, "forensic"), AgentPredictor(bundle, "forensic", runtime="keras")
    assert isinstance(served.model.estimator, OnnxTrees)
    assert not isinstance(fitted_file.model.estimator, OnnxTrees)  # the skops trees, for refits
    np.testing.assert_allclose(served.predict_proba(_faces()), fitted_file.predict_proba(_faces()), atol=1e-6)


def test_add_onnx_brings_an_older_forensic_bundle_over(fitted, tmp_path):
    model, _ = fitted
    old = _bundle(model, tmp_path / "b")
    manifest = json.loads(json.dumps(old.manifest))
    with staged_bundle(old.path, manifest, copy_of=old.path) as tmp:  # as written before the export
        (tmp / manifest["agents"]["forensic"].pop("onnx")["file"]).unlink()
    before = load_bundle(old.path, trust=signing.WRITER)
    assert not before.agent("forensic").onnx_file
    assert not isinstance(AgentPredictor(before, "forensic").model.estimator, OnnxTrees)
    after = add_onnx(old.path, out_dir=tmp_path / "new")
    assert after.agent("forensic").onnx_file == "forensic.onnx"
    np.testing.assert_allclose(AgentPredictor(after, "forensic").predict_proba(_faces()),
                               AgentPredictor(before, "forensic").predict_proba(_faces()), atol=1e-6)


@pytest.mark.slow
def test_a_process_that_scores_with_the_forensic_agent_imports_no_scikit_learn(fitted, tmp_path):
    model, _ = fitted
    bundle = _bundle(model, tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "logs", ignore_errors=True)
    code = ("import sys, numpy as np\n"
            "from agents.predictor import AgentPredictor\n"
            f"p = AgentPredictor({str(bundle.path)!r}, 'forensic')\n"
            "faces = [np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)]\n"
            "p.predict_proba(faces); p.model.explain(np.stack([np.zeros((224, 224, 3), np.float32)]))\n"
            "print(sorted(m for m in ('sklearn', 'scipy', 'skops', 'skl2onnx') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"

"""The forensic agent: features, training on a generated fixture, bundle round trip, explanations.

The fixture's fakes have a colour-shifted inner face region blended into an untouched
surround (what a face swap's colour mismatch looks like); the agent must learn that.
"""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from agents.bundle import BundleError, load_bundle, write_bundle
from agents.forensic_features import CONTRACT, FEATURE_NAMES, GROUPS, N_FEATURES, batch_features, image_features
from agents.labels import FAKE_INDEX
from agents.predictor import AgentPredictor, apply_temperature
from agents.preprocessing import prepare_batch
from agents.registry import agent_names, get_agent
from bundle_damage import append_byte, damaged_copy

N_TRAIN, N_VAL = 160, 80


def synthetic_crop(rng: np.random.Generator, fake: bool) -> np.ndarray:
    """A smooth textured 160x160 RGB "crop"; a fake's inner ellipse is colour-shifted and blended."""
    size = 160
    coarse = rng.normal(0, 1, (6, 6, 3)).astype(np.float32)
    base = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) * 18 + rng.uniform(70, 180, 3)
    base += rng.normal(0, 4, (size, size, 3))
    if fake:
        mask = np.zeros((size, size), np.float32)
        cv2.ellipse(mask, (size // 2, size // 2), (40, 50), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 5)[..., None]
        base = base + mask * np.array([16.0, -4.0, -14.0])  # a warmer pasted face
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_openmp_thread():
    """scikit-learn's boosting runs on one OpenMP thread in this module.

    It starts an OpenMP thread per core; on the shared 2-core box, with another job busy beside
    the tests, the threads spin waiting for each other: a fit of the fixture's size (300 rows,
    280 features, 32 bins) took 22 s on two threads and 4 s on one. No test here is about threads.
    """
    from threadpoolctl import threadpool_limits

    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime, so the limit reaches it

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("forensic-data")
    rng = np.random.default_rng(7)
    rows = []
    for i in range(N_TRAIN + N_VAL):
        fake = i % 2 == 1
        path = folder / f"{i:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(synthetic_crop(rng, fake), cv2.COLOR_RGB2BGR))
        rows.append({"path": str(path), "label": "fake" if fake else "real", "group": f"g{i // 2}",
                     "split": "train" if i < N_TRAIN else "val"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(manifest, tmp_path_factory) -> dict:
    """`train_bundle` on the fixture with the forensic agent alone (work folder kept)."""
    from training.train import TrainConfig, train_bundle

    out = tmp_path_factory.mktemp("forensic-run") / "bundle"
    # A few hundred rows, not 23k: 32 bins per feature, not 255, since weighted binning costs a
    # percentile per bin and feature (~25 s at 255 bins on 2 cores, for no more than the fixture shows).
    small = {"max_iter": 60, "max_leaf_nodes": 8, "min_samples_leaf": 8, "max_bins": 32}
    config = TrainConfig(workers=2, agent_kwargs={"forensic": small})
    bundle = train_bundle(manifest, ["forensic"], out, config, description={"data": "synthetic fixture"},
                          keep_work=True, verbose=0)
    return {"bundle": bundle, "config": config, "out": out, "work": out.with_name(out.name + ".work")}


def val_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest["split"] == "val"].reset_index(drop=True)


def read_rgb(path: str) -> np.ndarray:
    from vision.media import read_image

    return read_image(path)


def test_feature_table_and_contract():
    assert len(FEATURE_NAMES) == N_FEATURES == len(set(FEATURE_NAMES))
    columns = sorted(i for cols in GROUPS.values() for i in cols)
    assert columns == list(range(N_FEATURES)), "groups must partition the features"
    assert {"colour", "spectrum", "noise", "sharpness"} <= set(GROUPS)
    spec = get_agent("forensic")
    assert spec.kind == "forensic" and spec.preprocessing == CONTRACT and CONTRACT.input_shape == (224, 224, 3)
    assert agent_names(kind="forensic") == ["forensic"] and "forensic" not in agent_names(kind="keras")
    rng = np.random.default_rng(0)
    crop = synthetic_crop(rng, fake=True)
    prepared = prepare_batch([crop], CONTRACT)  # float32, 0..255
    f = image_features(prepared[0])
    assert f.shape == (N_FEATURES,) and np.isfinite(f).all()
    np.testing.assert_array_equal(f, image_features(prepared[0].astype(np.uint8)))
    np.testing.assert_array_equal(batch_features(prepared)[0], f)
    flat = np.full((224, 224, 3), 128, np.uint8)  # degenerate input: still finite
    assert np.isfinite(image_features(flat)).all()
    with pytest.raises(ValueError, match="RGB"):
        image_features(np.zeros((224, 224), np.uint8))
    with pytest.raises(ValueError, match="32x32"):
        image_features(np.zeros((16, 16, 3), np.uint8))


def test_colour_features_see_the_shift():
    rng = np.random.default_rng(1)
    real = batch_features(prepare_batch([synthetic_crop(rng, False) for _ in range(20)], CONTRACT))
    fake = batch_features(prepare_batch([synthetic_crop(rng, True) for _ in range(20)], CONTRACT))
    col = FEATURE_NAMES.index("colour.diff_Cr_inner_border")
    assert np.abs(fake[:, col]).mean() > 2 * np.abs(real[:, col]).mean()


def test_trains_on_the_fixture_into_a_bundle(trained):
    bundle = trained["bundle"]
    info = bundle.agent("forensic")
    assert bundle.agent_names == ["forensic"] and info.kind == "forensic"
    assert info.file == "forensic.skops" and bundle.manifest["agents"]["forensic"]["kind"] == "forensic"
    assert info.preprocessing == CONTRACT
    assert info.val_metrics["auc"] > 0.8, info.val_metrics
    # Val holds each image clean and once degraded: calibration sees both, and reports both.
    assert info.val_metrics["n"] == 2 * N_VAL and 0.0 < info.threshold < 1.0 and info.temperature > 0
    by_copy = info.training["val_metrics_by_copy"]
    assert by_copy["clean"]["n"] == by_copy["degraded"]["n"] == N_VAL
    assert info.threshold_rule == "f0.5"
    training = info.training
    assert training["train_files"] == N_TRAIN and training["boosting_iterations"] >= 1
    assert training["train_rows"] == 2 * N_TRAIN and training["degraded_copies"] == 1
    assert set(training["val_mean_abs_group_contribution"]) == set(GROUPS)
    assert (bundle.path / "logs" / "forensic.csv").is_file() and (bundle.path / "logs" / "forensic.png").is_file()


def test_training_and_serving_give_identical_features_and_probabilities(trained, manifest):
    from training.forensic_cache import FeatureCache

    rows = val_rows(manifest)
    paths = rows["path"].tolist()[:12]
    cache = FeatureCache.for_work_dir(trained["work"], CONTRACT)
    assert len(cache) == 2 * len(manifest), "every image's features are cached once, clean and degraded"
    x_train = cache.features(paths, verbose=False)
    faces = [read_rgb(p) for p in paths]
    x_serve = batch_features(prepare_batch(faces, CONTRACT))
    np.testing.assert_array_equal(x_train, x_serve)

    bundle = trained["bundle"]
    predictor = AgentPredictor(bundle, "forensic", batch_size=5)
    info = bundle.agent("forensic")
    expected = apply_temperature(predictor.model.predict_features(x_train), info.temperature)
    got = predictor.predict_proba(faces)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    out = predictor({"face": np.stack(faces)})
    np.testing.assert_allclose(out["forensic_p_fake"], expected[:, FAKE_INDEX], atol=1e-6)
    assert predictor.predict_proba([]).shape == (0, 2)


def test_degraded_copies_take_the_serving_path(trained, manifest):
    """A degraded copy's cached features are those of serving the degraded image itself."""
    from training.forensic_cache import FeatureCache, degrade_seed
    from training.train_forensic import with_degraded_copies
    from vision.degrade import random_chain

    rows = val_rows(manifest).head(3)
    copies = with_degraded_copies(rows, 1, trained["config"].seed)
    assert len(copies) == 6 and copies["degrade_seed"].isna().sum() == 3
    assert copies["group"].tolist() == rows["group"].tolist() * 2  # a copy stays in its group
    path = rows["path"][0]
    seed = degrade_seed(path, 0, trained["config"].seed)
    assert copies["degrade_seed"].iloc[3] == seed == degrade_seed(path, 0, trained["config"].seed)
    assert degrade_seed(path, 1, 0) != seed
    # The same copies from any checkout: only the file's last path parts count.
    assert degrade_seed("/a/b/../c/dfdc/real/x.jpg", 0, 0) == degrade_seed("/data/dfdc/real/x.jpg", 0, 0)
    cache = FeatureCache.for_work_dir(trained["work"], CONTRACT)
    cached = cache.features([path], degrade_seeds=[seed], verbose=False)[0]
    degraded = random_chain(np.random.default_rng(seed))(read_rgb(path))
    np.testing.assert_array_equal(cached, batch_features(prepare_batch([degraded], CONTRACT))[0])
    assert not np.array_equal(cached, cache.features([path], verbose=False)[0])
    with pytest.raises(ValueError, match="degrade seeds"):
        cache.features([path], degrade_seeds=[None, None], verbose=False)


def test_composed_copies_enter_training_where_serving_finds_a_face(manifest, face_crop, tmp_path):
    """``detected_share``: copies composed into screens; the detector finds the face in a face's
    copy, none in a texture's, and those rows leave training as serving would answer "no face"."""
    from training.train import TrainConfig, train_agent

    faces = []
    for i, split in enumerate(("train", "train", "val", "val")):
        path = tmp_path / f"face{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.roll(face_crop, 3 * i, axis=1), cv2.COLOR_RGB2BGR))
        faces.append({"path": str(path), "label": "real", "group": f"face{i}", "split": split})
    rows = pd.concat([manifest[manifest["split"] == "train"].head(24), val_rows(manifest).head(12),
                      pd.DataFrame(faces)], ignore_index=True)
    small = {"max_iter": 20, "max_leaf_nodes": 4, "min_samples_leaf": 2, "max_bins": 16}
    config = TrainConfig(workers=2, degraded_copies=0, detected_share=1.0, agent_kwargs={"forensic": small})
    art = train_agent("forensic", rows, config, tmp_path / "work", verbose=0)
    meta = art["training"]
    counts = meta["detected_copies"]
    assert counts["no_face"]["train"] >= 24 and counts["no_face"]["val"] >= 12  # the textures
    assert counts["train"] + counts["val"] >= 1  # a face's screen: found and kept
    assert counts["train"] + counts["val"] + counts["no_face"]["train"] + counts["no_face"]["val"] == 40
    assert meta["train_rows"] == 26 + counts["train"] and meta["detected_share"] == 1.0


def test_rerun_reuses_finished_agent(trained, manifest, capsys):
    from training.train import train_agent

    art = train_agent("forensic", manifest, trained["config"], trained["work"], verbose=1)
    assert "reusing finished training" in capsys.readouterr().out
    assert art["kind"] == "forensic" and art["temperature"] == trained["bundle"].agent("forensic").temperature


def test_a_fit_takes_only_the_cores_other_processes_leave_idle(monkeypatch):
    """OpenMP threads spinning beside a busy process made a fit 30x slower (BENCHMARKS.md): the
    fit runs on the idle cores, at least one, never above the limit already in force."""
    import psutil
    from threadpoolctl import threadpool_info, threadpool_limits

    from agents import forensic

    def busy(cores: float) -> None:  # other processes keep this many cores busy
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 100.0 * cores / psutil.cpu_count())

    mine = len(os.sched_getaffinity(0))
    with threadpool_limits(limits=2, user_api="openmp"):  # lifts the module's pin of 1 for this test
        busy(0)
        assert forensic.fit_threads(sample_s=0.0) == min(2, mine)
        busy(1)
        assert forensic.fit_threads(sample_s=0.0) == min(2, max(1, mine - 1))
        busy(mine)
        assert forensic.fit_threads(sample_s=0.0) == 1
    with threadpool_limits(limits=1, user_api="openmp"):
        busy(0)
        assert forensic.fit_threads(sample_s=0.0) == 1  # never above the limit in force

    class Recorder:  # an estimator that notes the OpenMP threads it was given
        def fit(self, features, labels, **kwargs):
            self.threads = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "openmp"}
            self.classes_ = np.array([0, 1])
            return self

    monkeypatch.setattr(forensic, "fit_threads", lambda: 1)
    with threadpool_limits(limits=2, user_api="openmp"):
        model = forensic.ForensicModel(Recorder()).fit(np.zeros((4, N_FEATURES), np.float32), np.array([0, 1, 0, 1]))
    assert model.estimator.threads == {1}


def test_feature_cache_resumes_from_its_shards(tmp_path, manifest):
    from training.forensic_cache import FeatureCache

    paths = manifest["path"].tolist()[:6]
    first = FeatureCache(tmp_path / "cache", CONTRACT)
    want = first.features(paths[:3], workers=1, verbose=False)
    reopened = FeatureCache(tmp_path / "cache", CONTRACT)
    assert len(reopened) == 3  # an interrupted run finds what was done
    np.testing.assert_array_equal(reopened.features(paths[:3], verbose=False), want)
    assert reopened.features(paths, workers=1, verbose=False).shape == (6, N_FEATURES)
    assert len(FeatureCache(tmp_path / "cache", CONTRACT)) == 6


def test_tampered_or_untrusted_model_file_is_refused(trained, tmp_path):
    import skops.io as sio

    tampered = damaged_copy(trained["out"], tmp_path / "tampered", lambda b: append_byte(b / "forensic.skops"))
    with pytest.raises(BundleError, match="Checksum mismatch.*forensic.skops"):
        load_bundle(tampered)

    # A file whose checksum matches (the manifest was rewritten too) but that smuggles in a
    # callable: skops refuses it, nothing is unpickled or called.
    crafted = shutil.copytree(trained["out"], tmp_path / "crafted")
    (crafted / "forensic.skops").write_bytes(sio.dumps({"format": "fakeface-forensic", "hook": os.system}))
    manifest_path = crafted / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    from agents.bundle_files import sha256_file

    manifest["agents"]["forensic"]["sha256"] = sha256_file(crafted / "forensic.skops")
    manifest["files"]["forensic.skops"] = manifest["agents"]["forensic"]["sha256"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="signature does not match"):  # the signed manifest stops it first
        load_bundle(crafted)
    from agents.signing import TrustPolicy

    bundle = load_bundle(crafted, trust=TrustPolicy(allow_unsigned=True))  # and without a signature, skops does
    with pytest.raises(BundleError, match="not trusted"):
        bundle.load_model("forensic", runtime="keras")  # the model file (scoring reads the ONNX export)


def test_explanations_are_per_group_and_point_at_colour(trained, manifest):
    from vision.gradcam import GradCamRenderer

    bundle = trained["bundle"]
    rows = val_rows(manifest)
    faces = [read_rgb(p) for p in rows["path"]]
    renderer = GradCamRenderer(bundle)
    explained = renderer.explain(faces)
    assert len(explained) == len(faces) and all(set(e) == {"forensic"} for e in explained)
    contributions = [e["forensic"] for e in explained]
    assert all(set(c) == set(GROUPS) and all(np.isfinite(v) for v in c.values()) for c in contributions)
    mean_abs = {g: np.mean([abs(c[g]) for c in contributions]) for g in GROUPS}
    # Groups that read colour (version 2's colour mix and radial profile hold Y/Cr/Cb statistics too).
    colour_groups = ("colour", "saturation", "colourmix", "profile")
    colour_like = sum(mean_abs[g] for g in colour_groups)
    assert colour_like == max(colour_like, *(v for g, v in mean_abs.items() if g not in colour_groups))
    fake = (rows["label"] == "fake").to_numpy()
    col = np.array([sum(c[g] for g in colour_groups) for c in contributions])
    assert col[fake].mean() > col[~fake].mean(), "colour evidence must push fakes towards fake"

    # A crop that is exactly the training medians in every group has nothing to explain.
    model = bundle.load_model("forensic")
    at_median = model.explain_features(model.medians[None])[0]
    assert all(abs(v) < 1e-9 for v in at_median.values())

    pngs = renderer.render_png(faces[:2])
    tile = cv2.imdecode(np.frombuffer(pngs[0]["forensic"].png, np.uint8), cv2.IMREAD_COLOR)
    assert tile.shape == (336, 448, 3) and tile.std() > 0  # the labelled chart, readable size


def mixed_bundle(tiny_bundle, forensic_bundle, out):
    """The tiny Keras bundle's three agents plus the trained forensic agent, in one bundle."""
    tiny, forensic = load_bundle(tiny_bundle), load_bundle(forensic_bundle)
    arts = {}
    for source in (tiny, forensic):
        for name in source.agent_names:
            info = source.agent(name)
            arts[name] = {"model": source.load_model(name, runtime="keras"), "preprocessing": info.preprocessing, "kind": info.kind,
                          "temperature": info.temperature, "threshold": info.threshold,
                          "threshold_rule": info.threshold_rule, "val_metrics": info.val_metrics,
                          "training": info.training}
    return write_bundle(out, arts, description={"data": "test fixture"})


@pytest.mark.slow
def test_mixed_bundle_classifies_with_heatmaps_in_process(trained, tiny_bundle, tmp_path, face_photo, capsys):
    """The in-process classify path and Grad-CAM/explanation tiles for 3 CNNs + forensic."""
    from fakeface import classify as classify_cli
    bundle = mixed_bundle(tiny_bundle, trained["out"], tmp_path / "mixed")
    assert bundle.agent("forensic").kind == "forensic" and bundle.agent("lenet").kind == "keras"
    out_png = tmp_path / "annotated.png"
    code = classify_cli.main([str(face_photo), "--bundle", str(bundle.path), "--annotate", str(out_png),
                              "--heatmaps", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    result = json.loads(out)
    result = result[0] if isinstance(result, list) else result
    votes = result["faces"][0]["votes"]
    assert "forensic" in votes and {"custom", "lenet", "vgg16"} <= set(votes)
    annotated = sorted(tmp_path.glob("annotated*.png"))
    image = cv2.imread(str(annotated[0]))
    # The photo plus the forensic chart (336 px high) and a line per CNN saying why its map is withheld.
    assert image.shape[0] >= 512 + 336 + 3 * 15 and image.shape[1] >= 448


def test_skops_is_imported_without_walking_scikit_learn_and_trusts_only_our_types(tmp_path):
    """Loading the forensic agent must not pay for skops' walk over every scikit-learn estimator
    (it imports every sklearn package, pytest and PyTorch): a fresh process loads a saved model
    without them, sklearn's walk is put back afterwards, and only the listed types are trusted."""
    import subprocess
    import sys
    from pathlib import Path

    from agents.forensic import TRUSTED_TYPES, build_forensic, save_forensic

    rng = np.random.default_rng(0)
    model = build_forensic(input_shape=(64, 64, 3), max_iter=5, early_stopping=False)
    model.fit(rng.normal(size=(40, N_FEATURES)), np.array([0, 1] * 20))
    path = tmp_path / "f.skops"
    save_forensic(model, path)
    probe = (
        "import sys, json\n"
        "from agents.forensic import load_forensic\n"
        f"load_forensic({str(path)!r})\n"
        "import sklearn.utils, skops.io._trusted_types as t\n"
        "print(json.dumps({'imported': sorted(m for m in ('torch', 'pytest', 'sklearn.utils._testing') if m in sys.modules),"
        " 'walk': sklearn.utils.all_estimators.__module__, 'skops': sorted(t.SKLEARN_ESTIMATOR_TYPE_NAMES)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                          check=True)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["imported"] == []
    assert seen["walk"] == "sklearn.utils.discovery"  # the real walk is back for everyone else
    assert seen["skops"] and set(seen["skops"]) <= set(TRUSTED_TYPES)

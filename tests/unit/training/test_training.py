"""Training pieces: augmentation, synthetic fakes, calibration, streaming data and `fakeface train`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from agents.bundle import load_bundle
from agents.preprocessing import Preprocessing
from training.augment import AugmentConfig, augment
from training.calibrate import binary_metrics, fit_temperature
from blackboard.calibration import choose_threshold
from training.data import FaceSequence
from training.synth import self_blend, self_blend_with_mask


def test_augment_keeps_shape_and_changes_pixels(face_crop):
    rng = np.random.default_rng(0)
    outs = [augment(face_crop, rng) for _ in range(5)]
    assert all(o.shape == face_crop.shape and o.dtype == np.uint8 for o in outs)
    assert all(np.abs(o.astype(int) - face_crop).mean() > 1.0 for o in outs)
    same = augment(face_crop, np.random.default_rng(1), AugmentConfig(
        flip=0.0, max_shift=0.0, max_rotate=0.0, max_scale=0.0, brightness=0.0, contrast=0.0, blur=0.0, jpeg=0.0))
    np.testing.assert_array_equal(same, face_crop)
    with pytest.raises(ValueError, match=r"flip\n.*less than or equal to 1.*input_value=1\.5"):
        AugmentConfig(flip=1.5)
    with pytest.raises(ValueError, match=r"jpeg_quality.*low <= high, received \(90, 40\)"):
        AugmentConfig(jpeg_quality=(90, 40))


def test_screenshot_chain_keeps_the_size_and_geometric_warps_can_be_turned_off(face_crop):
    from training.augment import screenshot_like
    from training.train import TrainConfig, augment_config

    crop = face_crop[:96, :96].copy()  # small: H.264 round trips are the slow step
    outs = [screenshot_like(crop, np.random.default_rng(seed)) for seed in range(4)]
    assert all(o.shape == crop.shape and o.dtype == np.uint8 for o in outs)
    assert all(np.abs(o.astype(int) - crop).mean() > 0.2 for o in outs)
    np.testing.assert_array_equal(outs[0], screenshot_like(crop, np.random.default_rng(0)))
    always = AugmentConfig(flip=0.0, max_shift=0.0, max_rotate=0.0, max_scale=0.0, brightness=0.0, contrast=0.0,
                           blur=0.0, jpeg=0.0, screenshot=1.0)
    assert np.abs(augment(crop, np.random.default_rng(5), always).astype(int) - crop).mean() > 0.2
    config = TrainConfig(overrides={"custom": {"screenshot_augment": 0.5, "geometric_augment": False}})
    custom = augment_config(config.for_agent("custom"))
    assert (custom.max_rotate, custom.max_scale, custom.max_shift) == (0.0, 0.0, 0.0)
    assert custom.screenshot == 0.5, "a command-line override wins over the registry default"
    assert augment_config(TrainConfig().for_agent("custom")).screenshot == 0.25, "the registry's default"
    assert augment_config(TrainConfig(geometric_augment=False)).max_rotate == 0.0
    assert augment_config(config.for_agent("lenet")).max_rotate > 0
    assert augment_config(TrainConfig(augment=False)) is None
    with pytest.raises(ValueError, match=r"screenshot_augment\n.*less than or equal to 1.*input_value=2\.0"):
        TrainConfig(screenshot_augment=2.0)


def test_self_blend_changes_the_inner_face_not_the_border(face_crop):
    fake = self_blend(face_crop, np.random.default_rng(3))
    diff = np.abs(fake.astype(int) - face_crop.astype(int)).mean(axis=2)
    h, w = diff.shape
    inner = diff[h // 3: 2 * h // 3, w // 3: 2 * w // 3].mean()
    border = np.concatenate([diff[:8].ravel(), diff[-8:].ravel(), diff[:, :8].ravel(), diff[:, -8:].ravel()]).mean()
    assert inner > 2.0, "the blended region must differ from the original"
    assert border < 0.5, "pixels outside the face mask must stay as they were"
    with pytest.raises(ValueError, match="RGB"):
        self_blend(face_crop[..., 0], np.random.default_rng(0))


def test_the_blend_mask_is_where_the_fake_differs(face_crop):
    fake, mask = self_blend_with_mask(face_crop, np.random.default_rng(3))
    assert np.array_equal(fake, self_blend(face_crop, np.random.default_rng(3)))  # the same fake
    assert mask.shape == face_crop.shape[:2] and mask.dtype == np.float32 and 0 <= mask.min() <= mask.max() <= 1
    diff = np.abs(fake.astype(int) - face_crop.astype(int)).mean(axis=2)
    assert diff[mask >= 0.5].mean() > 4 * diff[mask < 0.01].mean() + 1.0


def test_temperature_fixes_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    # Right 70 % of the time but always 99 % sure: overconfident.
    correct = rng.random(2000) < 0.7
    pred = np.where(correct, labels, 1 - labels)
    probs = np.where(pred[:, None] == np.arange(2), 0.99, 0.01)
    t = fit_temperature(probs, labels)
    assert t > 2.0
    from agents.predictor import apply_temperature

    calibrated = apply_temperature(probs, t)
    np.testing.assert_allclose(calibrated.max(axis=1).mean(), 0.7, atol=0.03)


def test_threshold_rules_favour_precision_with_f05():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(500, int), np.ones(500, int)]
    p = np.clip(np.r_[rng.normal(0.35, 0.15, 500), rng.normal(0.65, 0.15, 500)], 0, 1)
    t05 = choose_threshold(p, labels, "f0.5")
    t1 = choose_threshold(p, labels, "f1")
    assert t05 > t1, "F0.5 must pick a stricter threshold than F1"
    m05, m1 = binary_metrics(p, labels, t05), binary_metrics(p, labels, t1)
    assert m05["precision"] > m1["precision"]
    assert choose_threshold(p, labels, "fixed:0.3") == 0.3
    assert 0.3 < choose_threshold(p, labels, "youden") < 0.7
    with pytest.raises(ValueError, match="Unknown threshold rule"):
        choose_threshold(p, labels, "best")


def _write_crops(root: Path, n_per_class: int) -> pd.DataFrame:
    """Tiny learnable data: 'fake' crops carry a bright blob, 'real' ones do not."""
    rng = np.random.default_rng(0)
    rows = []
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(60, 120, size=(64, 64, 3), dtype=np.uint8)
            if label == "fake":
                cv2.circle(img, (32, 32), 12, (250, 250, 250), -1)
            path = root / label / f"{i}.png"
            cv2.imwrite(str(path), img)
            split = "train" if i < n_per_class - 4 else "val"
            rows.append({"path": str(path), "label": label, "group": f"{label}{i}", "split": split})
    return pd.DataFrame(rows)


def test_face_sequence_streams_batches_with_synthetic_fakes(tmp_path):
    df = _write_crops(tmp_path, 6)
    labels = (df["label"] == "fake").astype(int).to_numpy()
    contract = Preprocessing(height=32, width=32, channels=1)
    seq = FaceSequence(df["path"], labels, contract, batch_size=5, synth_ratio=0.5, shuffle=True, seed=3,
                       augment_config=AugmentConfig())
    assert len(seq.items) == 12 + 3  # half as many synthetic fakes as reals
    assert seq.labels.sum() == 6 + 3
    x, y = seq[0]
    assert x.shape == (5, 32, 32, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    x_again, _ = seq[0]
    np.testing.assert_array_equal(x, x_again)  # reproducible for a given epoch
    seq.on_epoch_end()
    assert not np.array_equal(seq.order, np.sort(seq.order)) or len(seq.order) < 3


@pytest.mark.slow
def test_train_cli_writes_a_calibrated_bundle(tmp_path):
    """`fakeface train` end to end on a tiny learnable data set."""
    from fakeface.cli import main

    df = _write_crops(tmp_path / "data", 16)
    manifest = tmp_path / "manifest.csv"
    df.assign(source=df["path"], frame=-1, confidence=1.0, hash="").to_csv(manifest, index=False)
    out = tmp_path / "bundle"
    rc = main(["train", "--manifest", str(manifest), "--agents", "lenet,custom", "--out", str(out),
               "--epochs", "3", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-3",
               "--no-augment", "--workers", "1", "--description", json.dumps({"data": "unit test"}),
               # The crops' own 64 px: the registry's 224/128 px would only upscale them, ~5x the CPU.
               "--input-size", "custom=64", "--input-size", "lenet=64",
               # Half of LeNet's samples cut as serving cuts a detected face (`make bundle`'s recipe).
               "--agent-option", "lenet:cut_share=0.5", "--precision", "auto"])
    assert rc == 0
    bundle = load_bundle(out)
    from training.precision import resolve_precision

    assert bundle.agent("custom").training["precision_policy"] == resolve_precision("auto")[0]
    assert bundle.agent("lenet").training["config"]["cut_share"] == 0.5
    assert bundle.agent_names == ["lenet", "custom"]
    for name in bundle.agent_names:
        info = bundle.agent(name)
        assert info.temperature > 0 and 0.0 < info.threshold <= 1.0
        assert info.threshold_rule == "f0.5"
        assert info.val_metrics["n"] == 8
        assert info.training["epochs_run"] >= 1
        assert (out / f"logs/{name}.png").is_file() and (out / f"logs/{name}.csv").is_file()
    assert bundle.agent("lenet").val_metrics["auc"] >= 0.75, "a bright blob is easy to learn"
    assert bundle.manifest["description"]["data"] == "unit test"
    assert not (tmp_path / "bundle.work").exists()


def test_train_cli_reports_bad_input(tmp_path, capsys):
    from fakeface.cli import main

    assert main(["train", "--manifest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group,split\n")
    assert main(["train", "--manifest", str(manifest), "--agents", "resnet", "--out", str(tmp_path / "b")]) == 2
    assert "unknown agent" in capsys.readouterr().err
    assert main(["train", "--manifest", str(manifest), "--agents", "vgg16", "--vgg16-width", "0.5",
                 "--out", str(tmp_path / "b")]) == 2
    assert "--vgg16-width applies to --vgg16-batch-norm only" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    """A run killed after epoch 2 continues at epoch 3 with the saved weights and optimizer state."""
    import keras

    from training.train import TrainConfig, train_agent

    df = _write_crops(tmp_path / "data", 12)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt  # what Ctrl-C or a stopped session does mid-run

    config = TrainConfig(epochs=4, batch_size=8, optimizer="adam", learning_rate=1e-3, augment=False,
                         patience=10, workers=1, input_sizes={"lenet": 32})
    work = tmp_path / "work"
    import training.train as train_module

    real_backup = keras.callbacks.BackupAndRestore
    saved = {}

    class InterruptingBackup(real_backup):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            saved["iterations"] = int(self.model.optimizer.iterations.numpy())
            saved["kernel"] = np.array(self.model.get_layer("fc1").kernel.numpy())
            Interrupt.on_epoch_end(self, epoch, logs)

    train_module.keras.callbacks.BackupAndRestore = InterruptingBackup
    try:
        with pytest.raises(KeyboardInterrupt):
            train_agent("lenet", df, config, work, verbose=0)
    finally:
        train_module.keras.callbacks.BackupAndRestore = real_backup
    assert (work / "lenet/backup/training_metadata.json").is_file()
    assert json.loads((work / "lenet/state.json").read_text())["best_epoch"] in (1, 2)

    resumed = {}

    class Probe(real_backup):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            resumed["initial_epoch"] = self.model._initial_epoch
            resumed["iterations"] = int(self.model.optimizer.iterations.numpy())
            resumed["kernel"] = np.array(self.model.get_layer("fc1").kernel.numpy())

    train_module.keras.callbacks.BackupAndRestore = Probe
    try:
        meta = train_agent("lenet", df, config, work, verbose=0)
    finally:
        train_module.keras.callbacks.BackupAndRestore = real_backup
    assert resumed["initial_epoch"] == 2, "continues at epoch 3, not from scratch"
    assert resumed["iterations"] == saved["iterations"] > 0, "optimizer state restored"
    np.testing.assert_array_equal(resumed["kernel"], saved["kernel"])
    assert meta["training"]["resumed_from_epoch"] == 2
    assert meta["training"]["epochs_run"] == 4  # two before the interruption, two after
    assert 0.0 < meta["threshold"] <= 1.0


def test_training_and_serving_prepare_identical_inputs(tmp_path):
    """The cached training path and the serving path give the same model input, for every contract."""
    from agents.predictor import prepare_batch
    from agents.registry import agent_names, get_agent
    from training.data import resized_cache

    df = _write_crops(tmp_path / "data", 3)
    paths = df["path"].tolist()
    labels = (df["label"] == "fake").astype(int).to_numpy()
    from vision.media import read_image

    contracts = {name: get_agent(name).preprocessing for name in agent_names(kind="keras")}
    assert "image" in {c.normalize for c in contracts.values()}, "per-image standardisation must be covered"
    contracts["npr"] = Preprocessing(height=48, width=48, channels=3, color="rgb", residual="npr")
    for name, contract in contracts.items():  # forensic's own test covers its features
        cache = resized_cache(paths, contract, tmp_path / f"{name}.npy", workers=1, verbose=False)
        seq = FaceSequence(paths, labels, contract, batch_size=len(paths), cache=cache)
        x_train, _ = seq[0]
        x_serve = prepare_batch([read_image(p) for p in paths], contract)
        np.testing.assert_array_equal(x_train, x_serve, err_msg=name)
        uncached, _ = FaceSequence(paths, labels, contract, batch_size=len(paths))[0]
        np.testing.assert_array_equal(uncached, x_serve, err_msg=name)


def test_curves_of_a_log_without_accuracy_plot_without_warnings(tmp_path):
    """A loss-only log (the forensic agent's boosting) gives a labelled loss panel and a marked
    empty accuracy panel, with no matplotlib warning (an empty legend used to warn)."""
    import warnings

    from training.curves import plot_curves

    log = tmp_path / "log.csv"
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.7, 0.6, 0.5], "val_loss": [0.7, 0.65, 0.6]}).to_csv(log, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = plot_curves(log, tmp_path / "curves.png")
    image = cv2.imread(str(png))
    assert image is not None and image.shape[1] > image.shape[0]

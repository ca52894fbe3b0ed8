"""`fakeface fit-ood` (`training.fit_ood`): the "can't tell" gate fitted on a manifest's train
crops, its threshold set on val, stored in the bundle (or not, on a dry run); the test split,
a bad bundle and unreadable crops handled with a clear word."""

from __future__ import annotations

import hashlib
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from crops import face_like_crops

from agents.bundle import load_bundle
from blackboard.ood import BUNDLE_KEY, load_ood
from fakeface.cli import main


@pytest.fixture(scope="module")
def manifest(face_crop, tmp_path_factory):
    """60 train and 30 val variations of the face crop as files (one train file unreadable)."""
    folder = tmp_path_factory.mktemp("ood-crops")
    rows = []
    for split, seed, n in (("train", 0, 60), ("val", 1, 30)):
        for i, crop in enumerate(face_like_crops(face_crop, n, seed=seed)):
            name = f"{split}-{i}.png"
            cv2.imwrite(str(folder / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            rows.append({"path": name, "label": "fake" if i % 2 else "real", "group": f"{split}{i // 3}", "split": split})
    (folder / "train-0.png").write_bytes(b"not a picture")
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def _digest(bundle) -> str:
    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


def test_the_gate_is_fitted_on_train_set_on_val_and_stored_in_the_bundle(bundle, manifest, face_crop, capsys):
    rc = main(["fit-ood", "--bundle", str(bundle), "--manifest", str(manifest), "--false-abstain", "0.1", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["train_crops"], report["val_crops"], report["unreadable"], report["written"]) == (59, 30, 1, True)
    assert report["val_abstain"] == pytest.approx(0.1, abs=0.04)
    ood = load_ood(load_bundle(bundle))
    assert ood is not None and ood.threshold == pytest.approx(report["threshold"])
    assert BUNDLE_KEY in load_bundle(bundle).manifest.get("extras", {})
    odd = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)  # noise is no face crop
    assert ood.score([odd])[0] > ood.threshold
    assert np.mean(ood.score(face_like_crops(face_crop, 30, seed=5)) > ood.threshold) < 0.3  # unseen variations


def test_a_dry_run_reports_and_leaves_the_bundle_as_it_was(bundle, manifest, capsys):
    before = _digest(bundle)
    assert main(["fit-ood", "--bundle", str(bundle), "--manifest", str(manifest), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "OOD threshold" in out and "dry run: bundle unchanged" in out
    assert _digest(bundle) == before and load_ood(load_bundle(bundle)) is None


def test_a_bad_bundle_or_manifest_is_exit_2_naming_it(bundle, manifest, tmp_path, capsys):
    assert main(["fit-ood", "--bundle", str(tmp_path / "nowhere"), "--manifest", str(manifest)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["fit-ood", "--bundle", str(bundle), "--manifest", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    only_train = tmp_path / "only-train.csv"
    pd.read_csv(manifest).query("split == 'train'").assign(path=lambda d: str(manifest.parent) + "/" + d["path"]) \
        .to_csv(only_train, index=False)
    assert main(["fit-ood", "--bundle", str(bundle), "--manifest", str(only_train)]) == 2
    assert "val" in capsys.readouterr().err


def test_the_test_split_is_never_read():
    from training.fit_ood import split_features

    with pytest.raises(ValueError, match="test split is for `fakeface evaluate` only"):
        split_features("any.csv", "test", 10, 0)

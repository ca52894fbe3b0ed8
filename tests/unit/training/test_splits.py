"""What the trainers share (`training.splits`): a split cut to a limit by whole groups only,
labels as class indices, and a run that reuses its finished training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from agents.labels import label_to_index
from training.splits import AgentRun, load_split, split_labels, train_val
from training.train import TrainConfig


@pytest.fixture
def manifest() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for g in range(30):
        split = "train" if g < 20 else "val"
        rows += [{"path": f"{g}-{i}.png", "group": f"video{g}", "split": split, "label": "fake" if g % 2 else "real"}
                 for i in range(int(rng.integers(1, 9)))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("limit", [1, 7, 25, 60])
def test_a_limit_keeps_whole_groups_up_to_that_many_rows(manifest, limit):
    rows = load_split(manifest, "train", limit=limit, seed=3)
    assert len(rows) <= limit and set(rows["split"]) <= {"train"}
    sizes = manifest.groupby("group").size()
    kept = rows.groupby("group").size()
    assert kept.equals(sizes.loc[kept.index])  # no group cut in part
    assert rows.equals(load_split(manifest, "train", limit=limit, seed=3))  # the seed reproduces the cut


def test_no_limit_or_a_large_one_keeps_every_row(manifest):
    everything = manifest[manifest["split"] == "val"].reset_index(drop=True)
    assert load_split(manifest, "val", limit=None, seed=0).equals(everything)
    assert load_split(manifest, "val", limit=10_000, seed=0).equals(everything)


def test_a_missing_split_names_it_and_the_fix(manifest):
    with pytest.raises(ValueError, match="no 'test' rows.*fakeface dataset build"):
        load_split(manifest, "test", limit=None, seed=0)


def test_train_val_cuts_each_split_by_the_configs_limits(manifest):
    train, val = train_val(manifest, TrainConfig(max_train_images=20, max_val_images=8, seed=1))
    assert len(train) <= 20 and len(val) <= 8 and set(train["split"]) == {"train"} and set(val["split"]) == {"val"}
    assert not set(train["group"]) & set(val["group"])


def test_labels_are_class_indices_in_row_order(manifest):
    labels = split_labels(manifest)
    assert labels.dtype == np.int64 and list(labels) == [label_to_index(v) for v in manifest["label"]]


def test_a_run_reuses_only_a_training_that_wrote_its_meta_beside_its_model(tmp_path, capsys):
    run = AgentRun.of("lenet", TrainConfig(), tmp_path)
    assert run.kind == "keras" and run.agent_dir == tmp_path / "lenet"
    model = run.agent_dir / "lenet.keras"
    run.agent_dir.mkdir()
    run.write_meta({"epochs": 3})
    assert run.finished_meta(model, verbose=1) is None  # the model file is missing: not finished
    model.write_bytes(b"weights")
    assert run.finished_meta(model, verbose=1) == {"epochs": 3} and "reusing" in capsys.readouterr().out
    assert json.loads(run.meta_path.read_text()) == {"epochs": 3}
    files = run.artefact({"epochs": 3}, model="M")["files"]
    assert files == {"logs/lenet.csv": str(run.log_path), "logs/lenet.png": str(run.curves_path)}


def test_a_vgg16_bn_run_reads_the_standardised_face_and_the_imagenet_one_raw_pixels(tmp_path):
    bn = AgentRun.of("vgg16", TrainConfig(input_sizes={"vgg16": 64}, agent_kwargs={"vgg16": {"batch_norm": True}}),
                     tmp_path)
    assert (bn.contract.height, bn.contract.normalize, bn.contract.scale) == (64, "image", "raw")
    plain = AgentRun.of("vgg16", TrainConfig(agent_kwargs={"vgg16": {"backbone_weights": "imagenet"}}), tmp_path)
    assert (plain.contract.height, plain.contract.normalize) == (224, "none")

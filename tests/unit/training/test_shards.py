"""Shard caches that two runs share: finished shards only, an unreadable one skipped, not fatal."""

from __future__ import annotations

import numpy as np
import pytest

from training.forensic_cache import FeatureCache
from training.pipeline_crops import LandmarkCache
from training.shards import read_shards, shard_key, write_shard
from agents.forensic_features import CONTRACT, N_FEATURES


def test_a_shard_round_trips_and_the_same_paths_replace_it(tmp_path):
    folder = tmp_path / "cache"
    write_shard(folder, ["a.jpg", "b.jpg"], values=np.array([1.0, 2.0]))
    write_shard(folder, ["a.jpg", "b.jpg"], values=np.array([3.0, 4.0]))
    (shard,) = read_shards(folder)
    assert shard[0] == ["a.jpg", "b.jpg"] and shard[1]["values"].tolist() == [3.0, 4.0]
    assert [p.name for p in folder.iterdir()] == [f"{shard_key(['a.jpg', 'b.jpg'])}.npz"]  # no temporary left
    with pytest.raises(ValueError, match="values has 1 rows for 2 paths"):
        write_shard(folder, ["a.jpg", "b.jpg"], values=np.array([1.0]))


def test_another_writers_temporary_and_a_truncated_shard_are_skipped(tmp_path):
    folder = tmp_path / "cache"
    write_shard(folder, ["a.jpg"], values=np.array([1.0]))
    good = next(folder.glob("*.npz")).read_bytes()
    (folder / ".c0ffee.tmp-x1.npz").write_bytes(good[: len(good) // 2])  # another run, mid-write
    (folder / "deadbeef.npz").write_bytes(good[: len(good) // 2])  # a run killed by an older writer
    with pytest.warns(RuntimeWarning, match="deadbeef.npz"):
        shards = list(read_shards(folder))
    assert [paths for paths, _ in shards] == [["a.jpg"]]
    assert list(read_shards(tmp_path / "missing")) == []


def test_both_caches_load_past_a_broken_shard(tmp_path):
    features = tmp_path / "features"
    write_shard(features, ["a.jpg"], features=np.ones((1, N_FEATURES), dtype=np.float32))
    (features / "0000.npz").write_bytes(b"not a zip")
    landmarks = tmp_path / "landmarks"
    write_shard(landmarks, ["a.jpg"], landmarks=np.zeros((1, 5, 2), np.float32), shapes=np.array([[64, 48]]))
    (landmarks / "0000.npz").write_bytes(b"")
    with pytest.warns(RuntimeWarning):
        assert len(FeatureCache(features, CONTRACT)) == 1
    with pytest.warns(RuntimeWarning):
        cache = LandmarkCache(landmarks)
    assert len(cache) == 1 and cache.landmarks(["a.jpg"], verbose=False)["a.jpg"][1] == (64, 48)

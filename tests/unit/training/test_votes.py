"""Fit-controller's votes: the shared face and agent stages give each agent's own predictions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agents.bundle import load_bundle
from agents.predictor import AgentPredictor
from training import votes as votes_module
from training.vote_cache import load_scored
from training.votes import collect_votes
from vision.faces import whole_image_crop
from vision.media import ImageError, read_image

# Blocks of 3, 3 and 1 images (near-equal blocks would be 3, 2, 2: other forward passes, other bits).
BATCH = 3
SIZES = [(224, 224), (150, 180), None, (300, 300), (224, 224), (260, 200), (200, 240)]  # None: a broken file


@pytest.fixture(scope="module")
def crop_files(tmp_path_factory) -> list[Path]:
    """Seven face-crop files of several sizes (upscaled, shrunk, used as they are), one of them broken."""
    folder = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(7)
    paths = []
    for i, size in enumerate(SIZES):
        path = folder / f"crop{i}.png"
        if size is None:
            path.write_bytes(b"not a png")
        else:
            # Smooth noise, so the agents' votes differ from image to image.
            small = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
            image = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def direct_votes(bundle_dir: Path, paths: list[Path], batch_size: int) -> np.ndarray:
    """Each agent's own predictions, as fit-controller made them before the stages: chunks of
    ``batch_size`` files, each readable image used whole at 224 px, one forward pass per chunk."""
    bundle = load_bundle(bundle_dir)
    predictors = [AgentPredictor(bundle, name, batch_size=batch_size) for name in bundle.agent_names]
    out = np.full((len(paths), len(predictors)), np.nan)
    for start in range(0, len(paths), batch_size):
        rows, crops = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                crops.append(whole_image_crop(read_image(paths[i]), size=224).crop)
            except ImageError:
                continue
            rows.append(i)
        for j, predictor in enumerate(predictors):
            out[rows, j] = predictor.predict_p_fake(crops)
    return out


@pytest.mark.slow  # three agents loaded twice: several seconds of CPU
def test_votes_from_the_stages_equal_each_agents_own_predictions_and_are_cached(tiny_bundle, crop_files, tmp_path,
                                                                                 monkeypatch):
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match=r"1 image\(s\) could not be read and got no votes: .*crop2.png"):
        votes = collect_votes(tiny_bundle, crop_files, batch_size=BATCH, progress=False, cache_dir=cache)
    expected = direct_votes(tiny_bundle, crop_files, BATCH)
    assert votes.shape == (len(SIZES), 3) and np.isnan(votes[2]).all() and np.isfinite(np.delete(votes, 2, 0)).all()
    np.testing.assert_array_equal(votes, expected)  # bit for bit, not merely close
    assert len(np.unique(votes[np.isfinite(votes[:, 0]), 0])) == len(SIZES) - 1  # the images did differ
    # The one vote cache, in the format `fakeface evaluate` reads: status per image, votes, context.
    (file,) = cache.glob("eval-*.npz")
    cached = load_scored(file, agents=load_bundle(tiny_bundle).agent_names, n=len(SIZES))
    assert list(cached["status"]) == ["ok", "ok", "rejected", "ok", "ok", "ok", "ok"]
    assert cached["context"].shape[0] == len(SIZES) and "ImageError" in cached["reason"][2]

    def no_stages(*args, **kwargs):
        raise AssertionError("the cached votes were computed again")

    monkeypatch.setattr(votes_module, "stage_votes", no_stages)
    again = collect_votes(tiny_bundle, crop_files, batch_size=BATCH, progress=False, cache_dir=cache)
    np.testing.assert_array_equal(again, votes)


def test_bad_batch_size_and_unknown_agents_are_refused_before_any_work(tiny_bundle, crop_files):
    with pytest.raises(ValueError, match="batch_size must be >= 1, received 0"):
        collect_votes(tiny_bundle, crop_files, batch_size=0, use_cache=False)
    with pytest.raises(ValueError, match="no agent 'nope'"):
        collect_votes(tiny_bundle, crop_files, agents=["nope"], use_cache=False)

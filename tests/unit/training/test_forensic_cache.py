"""The forensic feature cache's composed-screen copies: a face found as serving finds it, or none."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from agents.forensic_features import CONTRACT, batch_features
from agents.preprocessing import prepare_batch
from training.degraded_votes import served_face
from training.forensic_cache import DETECTED_COPY, FeatureCache, degrade_seed
from training.train_forensic import with_degraded_copies, with_detected_copies
from vision.degrade import random_chain
from vision.face_detector import FaceDetector


def _write(path, rgb: np.ndarray) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def test_detected_copies_are_one_per_chosen_image_and_stable(tmp_path):
    rows = pd.DataFrame({"path": [str(tmp_path / f"img{i}.png") for i in range(200)],
                         "label": ["real", "fake"] * 100, "group": [f"g{i // 4}" for i in range(200)]})
    every = with_detected_copies(with_degraded_copies(rows, 1, 0), 1.0, 0)
    assert len(every) == 3 * len(rows) and every["detected"].sum() == len(rows)  # never a copy of a copy
    assert not every["detected"].iloc[:2 * len(rows)].any()
    assert every[every["detected"]]["degrade_copy"].isna().all()  # not counted as a plain copy
    assert with_detected_copies(rows, 0.0, 0)["detected"].sum() == 0
    some = with_detected_copies(rows, 0.3, 0)
    assert 40 <= some["detected"].sum() <= 80  # about 60 of 200
    assert some.equals(with_detected_copies(rows, 0.3, 0))  # the same images every run
    copies = some[some["detected"]]
    assert (copies["group"].to_numpy() == rows.set_index("path").loc[copies["path"], "group"].to_numpy()).all()
    assert copies["degrade_seed"].tolist() == [degrade_seed(p, DETECTED_COPY, 0) for p in copies["path"]]


def test_composed_copies_reach_the_features_as_serving_finds_the_face(face_crop, tmp_path):
    """A screen composed around the image, its face found and cut by serving's detector, then the
    serving path's features; NaN where serving would answer "no face"."""
    face = _write(tmp_path / "face.png", face_crop)
    rng = np.random.default_rng(0)
    texture = _write(tmp_path / "texture.png", cv2.GaussianBlur(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8),
                                                                (0, 0), 3))
    seeds = [degrade_seed(face, DETECTED_COPY, 0), degrade_seed(texture, DETECTED_COPY, 0)]
    cache = FeatureCache(tmp_path / "cache", CONTRACT)
    got = cache.features([face, texture], degrade_seeds=seeds, detected=[True, True], verbose=False)

    screen = random_chain(np.random.default_rng(seeds[0]), compositions=True, composed_share=1.0)(face_crop)
    assert screen.shape[0] * screen.shape[1] > 2 * face_crop.shape[0] * face_crop.shape[1]  # a whole screen
    found = served_face(screen, FaceDetector())
    assert found is not None
    np.testing.assert_array_equal(got[0], batch_features(prepare_batch([found[0]], CONTRACT))[0])
    assert np.isnan(got[1]).all()  # no face in a texture: left out of training
    # Cached under their own keys: the clean image's features are another entry.
    clean = cache.features([face], verbose=False)[0]
    assert not np.array_equal(clean, got[0]) and len(cache) == 3
    reopened = FeatureCache(tmp_path / "cache", CONTRACT)
    np.testing.assert_array_equal(reopened.features([face], degrade_seeds=seeds[:1], detected=[True],
                                                    verbose=False)[0], got[0])


def test_flags_must_match_the_paths(tmp_path):
    with pytest.raises(ValueError, match="2 detected flags for 1 paths"):
        FeatureCache(tmp_path / "cache", CONTRACT).features(["a.png"], detected=[True, False], verbose=False)


def test_a_composed_copy_without_its_seed_is_refused(tmp_path):
    cache = FeatureCache(tmp_path / "cache", CONTRACT)
    with pytest.raises(ValueError, match="without a degrade seed.*img.png"):
        cache.features([str(tmp_path / "img.png")], degrade_seeds=[None], detected=[True], verbose=False)
    assert not (tmp_path / "cache").exists()  # refused before anything was computed or written


def test_a_change_to_the_chains_code_computes_the_copies_again(face_crop, tmp_path, monkeypatch):
    """A degraded copy's features depend on the transforms' code as well as the seed: after a
    change to `vision.degrade` the cache computes the copy again; the clean image's stay."""
    import training.forensic_cache as module

    face = _write(tmp_path / "face.png", face_crop)
    seed = degrade_seed(face, 0, 0)
    computed = []
    real = module.crop_features
    monkeypatch.setattr(module, "crop_features", lambda path, *a, **k: computed.append(a[1]) or real(path, *a, **k))
    FeatureCache(tmp_path / "cache", CONTRACT).features([face, face], degrade_seeds=[None, seed], verbose=False)
    assert sorted(computed, key=str) == sorted([None, seed], key=str)
    computed.clear()
    FeatureCache(tmp_path / "cache", CONTRACT).features([face, face], degrade_seeds=[None, seed], verbose=False)
    assert computed == []  # both read back
    monkeypatch.setattr(module, "registry_fingerprint", lambda registry: "a changed h264 step")
    FeatureCache(tmp_path / "cache", CONTRACT).features([face, face], degrade_seeds=[None, seed], verbose=False)
    assert computed == [seed]  # only the copy is computed again

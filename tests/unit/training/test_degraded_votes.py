"""Votes on degraded copies of val faces: the same numbers whatever the batching, NaN where a file does not read."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from agents.bundle import load_bundle
from blackboard.fragile import COPIES
from training.degraded_votes import collect_copy_votes, collect_degraded
from vision.context import CONTEXT_NAMES


@pytest.fixture(scope="module")
def images(tmp_path_factory, face_crop):
    """Three face files and, second, one that is not an image."""
    folder = tmp_path_factory.mktemp("degraded-votes")
    paths = []
    for i, flip in enumerate((None, "broken", 1, 0)):
        path = folder / f"{i}.png"
        if flip == "broken":
            path.write_bytes(b"not an image")
        else:
            face = face_crop if flip is None else cv2.flip(face_crop, flip)
            cv2.imwrite(str(path), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def test_degraded_copies_vote_alike_in_any_batch_size(tiny_bundle, images):
    bundle = load_bundle(tiny_bundle)
    one_by_one = collect_degraded(bundle, images, copies=2, seed=3, batch_size=2, progress=False, use_cache=False)
    together = collect_degraded(bundle, images, copies=2, seed=3, batch_size=64, progress=False, use_cache=False)
    votes, context, source = one_by_one
    assert votes.shape == (8, len(bundle.agent_names)) and context.shape == (8, len(CONTEXT_NAMES))
    assert source.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert np.isnan(votes[2:4]).all() and np.isnan(context[2:4]).all()  # the file that is no image
    assert np.isfinite(np.delete(votes, [2, 3], axis=0)).all()
    # What this guards is each row's place whatever the batching (a row of another face or copy
    # differs by > 0.01). One H.264 copy's votes differed by 5e-5 to 8e-4 between the two calls in
    # 3 of ~9 fresh-clone CI runs, never locally (BENCHMARKS.md, 2026-12-05 midday): such a
    # difference is reported as a warning that says where it lies, for the day it can be found.
    same_votes = np.isclose(votes, together[0], rtol=0, atol=1e-5, equal_nan=True).all(axis=1)
    same_context = np.isclose(context, together[1], equal_nan=True).all(axis=1)
    if not (same_votes.all() and same_context.all()):
        rows = np.flatnonzero(~(same_votes & same_context)).tolist()
        warnings.warn(f"degraded copies {rows} voted apart between batchings: votes {votes[rows].tolist()} vs "
                      f"{together[0][rows].tolist()}; context the same: {same_context[rows].tolist()}")
    np.testing.assert_allclose(votes, together[0], rtol=0, atol=2e-3, equal_nan=True)
    np.testing.assert_allclose(context, together[1], rtol=1e-3, atol=1e-3, equal_nan=True)


def test_cached_votes_are_kept_until_the_way_copies_are_made_changes(tiny_bundle, images, tmp_path, monkeypatch):
    import training.degraded_votes as module

    bundle = load_bundle(tiny_bundle)
    first = collect_degraded(bundle, images, seed=5, progress=False, cache_dir=tmp_path)[0]
    assert len(list(tmp_path.glob("degraded-*.npz"))) == 1
    again = collect_degraded(bundle, images, seed=5, progress=False, cache_dir=tmp_path)[0]
    np.testing.assert_array_equal(again, first)
    assert len(list(tmp_path.glob("degraded-*.npz"))) == 1  # read back, not computed again
    monkeypatch.setattr(module, "registry_fingerprint", lambda registry: "another-h264")
    collect_degraded(bundle, images, seed=5, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("degraded-*.npz"))) == 2


def test_copy_votes_vote_alike_in_any_batch_size(tiny_bundle, images):
    names = list(COPIES)
    small = collect_copy_votes(tiny_bundle, images, names, batch_size=len(names))
    large = collect_copy_votes(tiny_bundle, images, names, batch_size=64)
    assert small.shape == (len(names), len(images), len(load_bundle(tiny_bundle).agent_names))
    assert np.isnan(small[:, 1]).all() and np.isfinite(np.delete(small, 1, axis=1)).all()
    np.testing.assert_allclose(small, large, atol=1e-5, equal_nan=True)


@pytest.mark.slow
def test_detected_copies_reach_the_agents_as_serving_cuts_them(tiny_bundle, images):
    from training.degraded_votes import degraded_copy, served_face
    from vision.face_detector import FaceDetector

    bundle = load_bundle(tiny_bundle)
    face = [images[0]]
    votes, context, source = collect_degraded(bundle, face, copies=6, seed=1, progress=False, use_cache=False,
                                              detected=True)
    assert source.tolist() == [0] * 6
    found = np.isfinite(votes).all(axis=1)
    assert found.sum() >= 4  # a face in a screen is found again (the chain may also lose it)
    size, detected = context[:, CONTEXT_NAMES.index("face_size")], context[:, CONTEXT_NAMES.index("detected")]
    image = cv2.cvtColor(cv2.imread(str(images[0])), cv2.COLOR_BGR2RGB)
    detector, screens = FaceDetector(), 0
    for c in range(6):
        copy = degraded_copy(image, seed=1, index=0, copy=c, compositions=True)
        served = served_face(copy, detector)
        assert (served is None) == (not found[c])
        if served is None:
            continue
        crop, box, aligned = served
        assert detected[c] == float(aligned)
        # The face's own size in the picture it was found in, not the picture's size.
        np.testing.assert_allclose(size[c], np.log2(np.sqrt(box[2] * box[3])), atol=1e-5)
        if max(copy.shape[:2]) > 2 * max(image.shape[:2]):  # a whole screen around the face
            screens += 1
            assert aligned and 2 ** size[c] < 0.5 * max(copy.shape[:2])
    assert screens >= 1 and (detected == 1).sum() >= 1
    plain = collect_degraded(bundle, face, copies=6, seed=1, progress=False, use_cache=False)[1]
    assert (plain[:, CONTEXT_NAMES.index("detected")] == 0).all()  # crops sent as given

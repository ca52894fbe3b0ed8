"""Training copies cut as serving cuts a detected face (training/pipeline_crops.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from training.pipeline_crops import LandmarkCache, detector_settings_tag, pipeline_crop
from training.forensic_cache import FeatureCache, cache_key, chain_tag
from vision.alignment import align_face
from vision.face_detector import FaceDetector
from vision.faces import extract_faces


def test_pipeline_crop_without_landmarks_keeps_the_image_whole(face_crop):
    nan = np.full((5, 2), np.nan)
    assert pipeline_crop(face_crop, None, face_crop.shape) is face_crop
    assert pipeline_crop(face_crop, nan, face_crop.shape) is face_crop


def test_pipeline_crop_refuses_an_empty_source_shape(face_rgb):
    with pytest.raises(ValueError, match="source_shape"):
        pipeline_crop(face_rgb, np.ones((5, 2)) * [[1, 2]], (0, 512))


@pytest.mark.slow
def test_landmarks_found_once_give_the_crop_serving_makes(tmp_path, face_rgb):
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((64, 64, 3), 127, np.uint8))

    cache = LandmarkCache(tmp_path / "marks")
    found = cache.landmarks([str(path), str(blank), str(path)], verbose=False)
    assert set(found) == {str(path), str(blank)}
    points, shape = found[str(path)]
    assert shape == (512, 512) and np.all(np.isfinite(points))
    assert np.all(np.isnan(found[str(blank)][0]))  # no face: the copy stays whole

    # The same crop as serving's detect-and-align path on the clean image.
    served = extract_faces(face_rgb, FaceDetector(), mode="on", all_faces=False)[0].crop
    np.testing.assert_array_equal(pipeline_crop(face_rgb, points, shape), served)

    # A copy resized as a screenshot would be is aligned from the scaled landmarks: the face
    # lands on the same template, so the crop is close to the full-size one.
    half = cv2.resize(face_rgb, (256, 256), interpolation=cv2.INTER_AREA)
    small = pipeline_crop(half, points, shape)
    assert small.shape == served.shape
    assert np.abs(small.astype(float) - served).mean() < 12
    assert np.abs(align_face(half, points).astype(float) - served).mean() > 40  # unscaled points miss

    # A second cache on the same folder reads the shard instead of detecting again.
    again = LandmarkCache(tmp_path / "marks")
    assert len(again) == 2
    np.testing.assert_array_equal(again.landmarks([str(path)], verbose=False)[str(path)][0], points)


def test_aligned_copies_have_their_own_cache_keys():
    chain = chain_tag()  # the transforms' code: a degraded copy's pixels depend on it
    assert cache_key("a.jpg", None) == "a.jpg"
    assert cache_key("a.jpg", 7) == f"a.jpg::degraded-7-{chain}"
    assert cache_key("a.jpg", 7, aligned=True) == f"a.jpg::degraded-7-{chain}::aligned"
    assert len({cache_key("a.jpg", 7), cache_key("a.jpg", 7, True), cache_key("a.jpg", None, True)}) == 3


def test_what_the_detector_found_is_cached_under_its_settings(tmp_path, monkeypatch):
    import vision.face_detector as fd

    tag = detector_settings_tag()
    assert tag == detector_settings_tag() and len(tag) == 8  # stable from run to run
    before = (LandmarkCache.for_work_dir(tmp_path).directory, cache_key("a.jpg", 7, detected=True))
    chain = chain_tag()
    assert before[0].name == f"landmarks-{tag}" and before[1] == f"a.jpg::degraded-7-{chain}::detected-{tag}"
    assert cache_key("a.jpg", 7) == f"a.jpg::degraded-7-{chain}"  # what no detector touched keeps its key
    monkeypatch.setattr(fd, "FIRST_PASS", "blazeface")  # another default first pass ...
    assert detector_settings_tag() != tag  # ... finds faces again, into other names
    assert (LandmarkCache.for_work_dir(tmp_path).directory, cache_key("a.jpg", 7, detected=True)) != before[:2]
    monkeypatch.setattr(fd, "BOX_SHARE", 0.5)
    assert len({tag, detector_settings_tag()}) == 2


def test_feature_cache_refuses_landmarks_of_another_length(tmp_path):
    from agents.registry import get_agent

    cache = FeatureCache(tmp_path / "feats", get_agent("forensic").contract())
    with pytest.raises(ValueError, match="landmarks"):
        cache.features(["a.jpg", "b.jpg"], landmarks=[None], verbose=False)


def test_only_the_first_aligned_copies_are_cut_the_serving_way(tmp_path):
    from training.train_forensic import _copy_landmarks, with_degraded_copies

    rows = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "label": ["real", "fake"], "group": ["g1", "g2"]})
    points = np.arange(20, dtype=np.float32).reshape(2, 5, 2)
    marks_dir = LandmarkCache.for_work_dir(tmp_path).directory
    marks_dir.mkdir(parents=True)
    np.savez(marks_dir / "shard.npz", paths=np.array(["a.jpg", "b.jpg"]), landmarks=points,
             shapes=np.array([[64, 48], [32, 32]], dtype=np.int32))

    copies = with_degraded_copies(rows, 2, seed=0)
    assert copies["degrade_copy"].tolist() == [None, None, 0, 0, 1, 1]
    per_row = _copy_landmarks(copies.iloc[:0], copies, tmp_path, 1, verbose=False)(copies)
    assert [m is None for m in per_row] == [True, True, False, False, True, True]
    np.testing.assert_array_equal(per_row[3][0], points[1])
    assert per_row[2][1] == (64, 48)


def test_aligned_copies_cannot_exceed_the_degraded_copies():
    from training.train import TrainConfig

    assert TrainConfig(degraded_copies=2, aligned_copies=2).aligned_copies == 2
    with pytest.raises(ValueError, match="aligned_copies must be at most degraded_copies \\(1\\), received 2"):
        TrainConfig(degraded_copies=1, aligned_copies=2)


@pytest.mark.slow
def test_cut_cache_holds_serving_cuts_that_a_sequence_reads_by_share(tmp_path, face_rgb):
    from agents.preprocessing import Preprocessing, resize_rgb
    from training.data import FaceSequence, resized_cache
    from training.pipeline_crops import cut_cache

    face, blank = tmp_path / "astronaut.png", tmp_path / "blank.png"
    cv2.imwrite(str(face), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR))
    flat = np.full((64, 64, 3), 127, np.uint8)
    flat[:, :32] = 30  # not uniform, so a wrong resize would show
    cv2.imwrite(str(blank), flat)
    paths, contract = [str(face), str(blank)], Preprocessing(height=32, width=32, channels=3)
    marks = LandmarkCache(tmp_path / "marks")

    cuts = cut_cache(paths, contract, tmp_path / "cut.npy", marks, verbose=False)
    served = extract_faces(face_rgb, FaceDetector(), mode="on", all_faces=False)[0].crop
    np.testing.assert_array_equal(cuts[0], resize_rgb(served, contract))  # the serving framing
    np.testing.assert_array_equal(cuts[1], resize_rgb(flat, contract))  # no face: whole
    whole = resized_cache(paths, contract, tmp_path / "whole.npy", workers=1, verbose=False)
    assert np.abs(cuts[0].astype(float) - whole[0]).mean() > 10  # a different framing of the same file
    again = cut_cache(paths, contract, tmp_path / "cut.npy", LandmarkCache(tmp_path / "elsewhere"), verbose=False)
    assert isinstance(again, np.memmap)  # read back, not made again
    # ... and a complete cache needs no landmarks: another work folder's cache finds none again.
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())

    def batch(share):
        seq = FaceSequence(paths, [0, 1], contract, batch_size=2, cache=whole, cut_cache=cuts, cut_share=share)
        return seq[0][0]

    only_cut = FaceSequence(paths, [0, 1], contract, batch_size=2, cache=cuts)[0][0]
    only_whole = FaceSequence(paths, [0, 1], contract, batch_size=2, cache=whole)[0][0]
    np.testing.assert_array_equal(batch(1.0), only_cut)
    np.testing.assert_array_equal(batch(0.0), only_whole)
    with pytest.raises(ValueError, match="cut_share 0.5 needs a cut_cache of 2 images, received None"):
        FaceSequence(paths, [0, 1], contract, cache=whole, cut_share=0.5)
    with pytest.raises(ValueError, match=r"cut_share must be in \[0, 1\], received 1.5"):
        FaceSequence(paths, [0, 1], contract, cache=whole, cut_cache=cuts, cut_share=1.5)


def test_cut_share_needs_the_cache():
    from training.train import TrainConfig

    with pytest.raises(ValueError, match="cut_share 0.3 needs cache=True"):
        TrainConfig(cut_share=0.3, cache=False)
    assert TrainConfig(cut_share=0.3).cut_share == 0.3

"""The "can't tell" gate: too-small faces, the out-of-distribution model, its bundle storage and
the ``uncertain`` answer through the case, the proto, the CLI view and batch rows."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from crops import face_like_crops

from agents.bundle import BundleError, load_bundle, update_bundle
from blackboard.case import UNCERTAIN, Case, Decision, FaceRecord
from blackboard.ood import (
    BUNDLE_FILE,
    BUNDLE_KEY,
    FEATURES,
    MIN_FACE_PX,
    OODModel,
    UncertaintyGate,
    crop_features,
    fit_ood_model,
    load_ood,
)


@pytest.fixture(scope="module")
def model(face_crop) -> OODModel:
    train = crop_features(face_like_crops(face_crop, 120, seed=0))
    val = crop_features(face_like_crops(face_crop, 60, seed=1))
    return fit_ood_model(train, val, false_abstain_rate=0.05, info={"data": "test fixture"})


def test_features_are_finite_per_crop(face_crop):
    feats = crop_features([face_crop, np.zeros((224, 224, 3), np.uint8), np.full((50, 80, 3), 255, np.uint8)])
    assert feats.shape == (3, len(FEATURES)) and np.all(np.isfinite(feats))
    with pytest.raises(ValueError, match="RGB crop"):
        crop_features([np.zeros((10, 10), np.uint8)])


def test_threshold_is_set_at_the_false_abstain_rate(model, face_crop):
    val = crop_features(face_like_crops(face_crop, 60, seed=1))
    assert np.mean(model.score_features(val) > model.threshold) == pytest.approx(0.05, abs=0.02)
    held_out = model.score(face_like_crops(face_crop, 60, seed=2))
    assert np.mean(held_out > model.threshold) < 0.2


def test_noise_flat_and_scenery_are_out_of_distribution(model):
    from skimage import data

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    flat = np.full((224, 224, 3), 128, np.uint8)
    scenes = [cv2.resize(np.ascontiguousarray(img), (224, 224), interpolation=cv2.INTER_AREA)
              for img in (data.coffee(), data.rocket(), data.chelsea())]
    scores = model.score([noise, flat, *scenes])
    assert np.all(scores > model.threshold), scores


def test_json_round_trip_and_refusal_of_other_formats(model):
    again = OODModel.from_json(model.to_json())
    np.testing.assert_allclose(again.precision, model.precision)
    assert again.threshold == model.threshold and again.info == {"data": "test fixture"}
    raw = json.loads(model.to_json())
    raw["features"] = raw["features"][:-1]
    with pytest.raises(ValueError, match="fit-ood"):
        OODModel.from_json(json.dumps(raw))
    with pytest.raises(ValueError, match="Too few"):
        fit_ood_model(np.zeros((3, len(FEATURES))), np.zeros((30, len(FEATURES))))


def test_stored_in_the_bundle_with_a_checksum(model, tiny_bundle, tmp_path):
    bundle_dir = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle_dir)
    assert load_ood(load_bundle(bundle_dir)) is None
    update_bundle(bundle_dir, extras={BUNDLE_KEY: (BUNDLE_FILE, model.to_json(), {"threshold": model.threshold})})
    loaded = load_ood(load_bundle(bundle_dir))
    assert loaded is not None and loaded.threshold == pytest.approx(model.threshold)
    (bundle_dir / BUNDLE_FILE).write_bytes(model.to_json().replace(b'"threshold"', b'"threshold" ', 1))
    with pytest.raises(BundleError, match="Checksum mismatch"):
        load_bundle(bundle_dir)


def _case(crops_and_boxes) -> Case:
    case = Case(source="t")
    for i, (crop, box) in enumerate(crops_and_boxes):
        rec = FaceRecord(index=i, box=box, landmarks=[], confidence=1.0, crop=crop)
        rec.decision = Decision(label="fake", p_fake=0.79, threshold=0.5, combiner="mean")
        case.faces.append(rec)
    return case


def test_uncertain_end_to_end_through_the_proto_and_the_cli_view(model, face_crop):
    from fakeface.classify import face_to_dict
    from vision.faces import whole_image_crop
    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc_convert import case_to_proto

    tiny = whole_image_crop(np.full((16, 16, 3), 120, np.uint8))  # a 16x16 input, used whole
    noise = whole_image_crop(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    case = _case([(tiny.crop, tiny.box), (noise.crop, noise.box), (face_crop, (0.0, 0.0, 224.0, 224.0))])
    UncertaintyGate(model).apply(case)
    labels = [f.decision.label for f in case.faces]
    assert labels == [UNCERTAIN, UNCERTAIN, "fake"]
    assert case.faces[0].decision.reason.startswith("too small") and case.faces[0].decision.p_fake == 0.79
    assert "outside what the agents were trained on" in case.faces[1].decision.reason

    resp = pb.ClassifyResponse.FromString(case_to_proto(case).SerializeToString())
    assert [f.label for f in resp.faces] == [pb.LABEL_UNCERTAIN, pb.LABEL_UNCERTAIN, pb.LABEL_FAKE]
    assert resp.faces[0].uncertain_reason.startswith("too small") and resp.faces[2].uncertain_reason == ""
    assert resp.faces[1].HasField("ood_score") and resp.faces[1].ood_score > model.threshold
    view = face_to_dict(resp.faces[0])
    assert view["verdict"] == "uncertain" and view["reason"].startswith("too small")
    assert view["p_fake"] == pytest.approx(0.79)


def test_size_and_shape_checks_work_without_an_ood_model(face_crop):
    boxes = [(0.0, 0.0, 20.0, 40.0), (0.0, 0.0, 64.0, 64.0), (0.0, 0.0, 1920.0, 1080.0), (5.0, 9.0, 161.0, 208.0)]
    case = _case([(face_crop, box) for box in boxes])
    UncertaintyGate(None).apply(case)
    assert [f.decision.label for f in case.faces] == [UNCERTAIN, "fake", UNCERTAIN, "fake"]
    assert f"{MIN_FACE_PX} px" in case.faces[0].decision.reason and case.faces[1].ood_score is None
    assert case.faces[2].decision.reason.startswith("not a face crop: the 1920x1080 px input would be squashed")


@pytest.mark.parametrize("with_model", [False, True])
def test_faces_without_their_crops_still_get_the_size_and_shape_check(model, face_crop, with_model):
    # The server keeps no crops unless heat maps are asked for: the box alone must still decide.
    boxes = [(0.0, 0.0, 20.0, 40.0), (0.0, 0.0, 1920.0, 1080.0), (5.0, 9.0, 161.0, 208.0)]
    case = _case([(face_crop, box) for box in boxes])
    for face in case.faces:
        face.crop = None
    UncertaintyGate(model if with_model else None).apply(case)
    assert [f.decision.label for f in case.faces] == [UNCERTAIN, UNCERTAIN, "fake"]
    assert f"{MIN_FACE_PX} px" in case.faces[0].decision.reason
    assert all(f.ood_score is None for f in case.faces)  # nothing to score without a crop


def test_batch_rows_say_uncertain_with_the_reason(model, tiny_bundle, tmp_path, face_crop):
    from blackboard.decision_stage import DecisionStage

    bundle_dir = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle_dir)
    update_bundle(bundle_dir, extras={BUNDLE_KEY: (BUNDLE_FILE, model.to_json(), {})})
    stage = DecisionStage(bundle=str(bundle_dir))
    noise = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    batch = {
        "has_face": np.array([True, True, True, False]),
        "face": np.stack([face_crop, cv2.resize(face_crop[:16, :16], (224, 224)), noise, np.zeros_like(noise)]),
        "box_w": np.array([224.0, 16.0, 224.0, np.nan], np.float32),
        "box_h": np.array([224.0, 16.0, 224.0, np.nan], np.float32),
        "reason": np.array(["", "", "", "no face found"], dtype=object),
        **{f"{a}_p_fake": np.array([0.9, 0.9, 0.9, np.nan], np.float32) for a in stage.agents},
    }
    out = stage(batch)
    assert list(out["label"]) == ["fake", UNCERTAIN, UNCERTAIN, ""]
    assert out["reason"][1].startswith("too small") and "outside" in out["reason"][2]
    assert out["reason"][3] == "no face found" and np.isfinite(out["p_fake"][1])


def test_statistics_computed_where_the_crops_stayed_give_the_same_verdicts(model, face_crop):
    """The serving ingress sends the crops' statistics instead of the crops: same scores, same labels."""
    noise = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    items = [(face_crop, (0.0, 0.0, 224.0, 224.0)), (noise, (0.0, 0.0, 224.0, 224.0)),
             (face_crop, (0.0, 0.0, 20.0, 20.0))]
    from_crops = UncertaintyGate(model).apply(_case(items))
    without_crops = _case([(None, box) for _, box in items])
    UncertaintyGate(model).apply(without_crops, features=crop_features([crop for crop, _ in items]))
    assert [f.decision.label for f in without_crops.faces] == [f.decision.label for f in from_crops.faces]
    assert [f.decision.label for f in from_crops.faces] == ["fake", UNCERTAIN, UNCERTAIN]
    assert [f.ood_score for f in without_crops.faces] == pytest.approx([f.ood_score for f in from_crops.faces])

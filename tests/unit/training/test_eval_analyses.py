"""Diversity, selective risk, F0.5, the source-level bootstrap and the degrade bookkeeping on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import fbeta_score, roc_auc_score

from training import degrade_eval as de
from training.degrade_report import POOLED, TransformSet, auc_markdown, score_transforms
from training.diversity import diversity, error_table, summary_markdown
from training.grouped_bootstrap import source_counts, weighted_aucs, weighted_means
from training.metrics import BootstrapConfig, System, point_metrics
from training.selective import accuracy_at_coverage, selective_curve


# ----------------------------------------------------------------------------- diversity
def _vote_table():
    """Eight faces, three agents at thresholds 0.5 / 0.5 / 0.7. Wrong answers (x):

    face:   0 1 2 3 4 5 6 7      (labels 0 0 0 0 1 1 1 1)
    a:      x x . . . . . .
    b:      x . x . . . . .
    c:      x . . . x . . .      (0.6 on face 4 is "real" at c's 0.7)
    """
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = [0.9, 0.8, 0.1, 0.2, 0.9, 0.8, 0.7, 0.6]
    b = [0.9, 0.2, 0.6, 0.1, 0.9, 0.8, 0.7, 0.6]
    c = [0.8, 0.2, 0.3, 0.1, 0.6, 0.8, 0.9, 0.75]
    return y, np.array([a, b, c]).T, [0.5, 0.5, 0.7]


def test_diversity_counts_double_faults_and_the_oracle():
    y, votes, thresholds = _vote_table()
    errors = error_table(y, votes, thresholds)
    assert errors.sum(axis=0).tolist() == [2, 2, 2]
    d = diversity(y, votes, thresholds, ["a", "b", "c"])
    pairs = {tuple(p["agents"]): p for p in d["pairs"]}
    assert pairs[("a", "b")]["double_fault"] == pytest.approx(1 / 8)  # face 0 only
    assert pairs[("a", "b")]["disagreement"] == pytest.approx(2 / 8)  # faces 1 and 2
    # Phi of two 0/1 vectors with one shared error of two each in 8: (1*5 - 1*1) / (2*6) = 1/3.
    assert pairs[("a", "b")]["error_correlation"] == pytest.approx(1 / 3)
    assert d["all_wrong"] == pytest.approx(1 / 8) and d["oracle_accuracy"] == pytest.approx(7 / 8)
    assert d["agent_error_rate"] == {"a": 0.25, "b": 0.25, "c": 0.25}
    assert "| clean | 8 | 0.875 |" in summary_markdown({"clean": d}, {"clean": 0.75})


def test_error_correlation_is_none_for_an_agent_without_errors():
    y = np.array([0, 1, 0, 1])
    votes = np.array([[0.1, 0.9], [0.9, 0.2], [0.2, 0.8], [0.8, 0.9]])  # agent 0 always right
    d = diversity(y, votes, [0.5, 0.5], ["p", "q"])
    assert d["pairs"][0]["error_correlation"] is None and d["mean_error_correlation"] is None
    assert d["oracle_accuracy"] == 1.0


def test_f_half_is_sklearns_and_weighs_precision():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 200), 0, 1)
    for threshold in (0.3, 0.5, 0.7):
        m = point_metrics(y, p, threshold=threshold)
        assert m["f0_5"] == pytest.approx(fbeta_score(y, p >= threshold, beta=0.5))
    # A cautious decider (high precision, low recall) scores higher on F0.5 than on F1.
    cautious = point_metrics(y, p, threshold=0.75)
    assert cautious["precision"] > cautious["recall"] and cautious["f0_5"] > cautious["f1"]


# ----------------------------------------------------------------------------- selective risk
def test_selective_curve_answers_the_most_confident_first():
    # 10 faces at threshold 0.5; the two least confident (p = 0.45, 0.55) are the only mistakes.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    p = np.array([0.0, 0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 1.0, 0.45, 0.55])
    curve = selective_curve(y, p, 0.5)
    assert curve["full_accuracy"] == pytest.approx(0.8)
    assert curve["accuracy_at_10pct_abstention"] == pytest.approx(8 / 9)  # 9 answered, one mistake left
    assert accuracy_at_coverage(y, p, 0.5, 0.8) == 1.0
    assert dict(zip(curve["coverage"], curve["accuracy"]))[0.5] == 1.0
    own = selective_curve(y, p, 0.5, abstained=np.arange(10) >= 8)["own_abstention"]
    assert own == {"answered_share": 0.8, "accuracy": 1.0}


def test_a_confidence_that_ranks_mistakes_first_makes_the_curve_rise():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.0, 0.45, 0.4, 0.2])  # most confident answer is wrong
    curve = selective_curve(y, p, 0.5)
    assert curve["accuracy"][0] == 0.0 and curve["full_accuracy"] == 0.5


# ----------------------------------------------------------------------------- source bootstrap
def test_weighted_aucs_equal_sklearn_with_sample_weights():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 50)
    p = np.round(rng.uniform(size=50), 1)  # ties
    w = rng.integers(0, 4, size=(30, 50))
    w[0] = np.where(y == 1, 1, 0)  # one class only: no AUC
    got = weighted_aucs(y, p, w)
    assert np.isnan(got[0])
    for r in range(1, 30):
        assert got[r] == pytest.approx(roc_auc_score(y, p, sample_weight=w[r]), abs=1e-12)
    assert weighted_means(np.ones(50), w)[3] == 1.0


def test_source_resamples_keep_copies_together():
    counts = source_counts(7, BootstrapConfig(n_resamples=40, seed=1))
    assert counts.shape == (40, 7) and (counts.sum(axis=1) == 7).all()
    sources = np.array([0, 1, 2, 0, 1, 2])  # two copies of each of three faces
    weights = counts[:, sources]
    assert (weights[:, :3] == weights[:, 3:]).all()


def _set(name, y, p_by_system, sources, composition=False, no_face=0):
    systems = [System(n, "agent" if n != "ensemble" else "ensemble", np.asarray(p, float), 0.5, "")
               for n, p in p_by_system.items()]
    return TransformSet(name, composition, np.asarray(sources), np.asarray(y), systems, len(y) + no_face, no_face, 0)


def test_score_transforms_reports_deltas_from_clean_and_a_pooled_row():
    y = np.array([0, 0, 0, 1, 1, 1])
    clean = _set("clean", y, {"a": [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], "ensemble": [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]},
                 np.arange(6))
    # The screenshot lost face 5 and scrambled the agent's ranking.
    shot = _set("player", y[:5], {"a": [0.9, 0.2, 0.3, 0.1, 0.8], "ensemble": [0.1, 0.2, 0.6, 0.7, 0.8]},
                np.arange(5), composition=True, no_face=1)
    section = score_transforms([clean, shot], 6, BootstrapConfig(n_resamples=200, seed=0))
    per = section["per_transform"]
    assert list(per) == ["clean", "player", POOLED]
    assert per["clean"]["systems"]["a"]["auc"] == 1.0 and "delta_auc" not in per["clean"]["systems"]["a"]
    want = roc_auc_score(y[:5], [0.9, 0.2, 0.3, 0.1, 0.8])
    assert per["player"]["systems"]["a"]["delta_auc"] == pytest.approx(want - 1.0)
    lo, hi = per["player"]["systems"]["a"]["delta_auc_ci"]
    assert lo <= want - 1.0 <= hi <= 0.0
    assert per["player"]["n_no_face"] == 1 and per["player"]["composition"]
    assert per[POOLED]["n_scored"] == 5
    assert "| player (screenshot) | 5 | 1 |" in auc_markdown(section)


# ----------------------------------------------------------------------------- degrade bookkeeping
class _Registry:
    """A fake transform registry: names, a half-size scale and a screenshot composition."""

    @staticmethod
    def names():
        return ["half", "shot"]

    @staticmethod
    def is_composition(name):
        return name == "shot"

    @staticmethod
    def apply(name, image, *, seed):
        if name == "half":
            return image[::2, ::2]
        return np.zeros((300, 500, 3), np.uint8)


def test_resolve_transforms_checks_names():
    assert de.resolve_transforms("all", _Registry) == ("half", "shot")
    assert de.resolve_transforms("shot, half", _Registry) == ("half", "shot")  # registry order
    with pytest.raises(de.DegradeError, match="unknown transform.*'blurry'.*known: half, shot"):
        de.resolve_transforms("half,blurry", _Registry)
    with pytest.raises(de.DegradeError, match="needs 'all'"):
        de.resolve_transforms(" , ", _Registry)


def test_seeds_depend_on_relative_path_and_name_only(tmp_path):
    a = de.seeds([str(tmp_path / "fake" / "x.png")], "half", tmp_path)
    b = de.seeds([str(tmp_path / "elsewhere" / "fake" / "x.png")], "half", tmp_path / "elsewhere")
    assert a == b == [de.seed_for("fake/x.png", "half")]
    assert de.seed_for("fake/x.png", "shot") != a[0]
    assert de.seeds(["/any"], de.CLEAN, tmp_path) == [0]
    # A manifest's "../data/x.png" keeps its key when the data folder is reached through a link.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    root = tmp_path / "splits"
    assert de.relative_key(str(root / "../link/x.png"), root) == "../link/x.png"


def test_copies_of_crops_stay_crops_and_screenshots_are_detected():
    crop, photo = np.zeros((224, 224, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)
    assert de.copy_mode("half", crop, "auto", _Registry) == "off"  # whatever size the copy has
    assert de.copy_mode("half", photo, "auto", _Registry) == "auto"
    assert de.copy_mode("half", crop, "on", _Registry) == "on"
    assert de.copy_mode("shot", crop, "off", _Registry) == "on"


def test_degrade_stage_hands_pixels_and_modes_to_the_face_stage(tmp_path):
    import cv2

    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), np.full((224, 224, 3), 99, np.uint8))
    stage = de.DegradeStage(detect="auto", registry=_Registry())
    out = stage({"source": np.array([str(path), str(path), str(path), str(tmp_path / "gone.png")], dtype=object),
                 "transform": np.array(["", "half", "shot", "half"], dtype=object),
                 "seed": np.array([0, 1, 2, 3])})
    assert [np.shape(i) for i in out["image"]] == [(0, 0, 3), (112, 112, 3), (300, 500, 3), (0, 0, 3)]
    assert list(out["detect"]) == ["", "off", "on", ""]  # unreadable: the face stage rejects it itself


# ----------------------------------------------------------------------------- the ensemble's own "uncertain"
def test_gate_stage_marks_small_faces_and_drops_the_crops(tiny_bundle):
    from training.evaluate_gate import GateStage, uncertain

    stage = GateStage(bundle=str(tiny_bundle), keep=("input_index", "status", "reason", "custom_p_fake"))
    crops = np.full((3, 224, 224, 3), 120, np.uint8)
    out = stage({"input_index": np.arange(3), "status": np.array(["ok", "ok", "no_face"], dtype=object),
                 "reason": np.array(["", "", "no face found"], dtype=object), "custom_p_fake": np.array([0.2, 0.9, np.nan]),
                 "face": crops, "has_face": np.array([True, True, False]),
                 "box_w": np.array([200.0, 20.0, np.nan]), "box_h": np.array([210.0, 24.0, np.nan])})
    assert set(out) == {"input_index", "status", "reason", "custom_p_fake"}  # no crops for the driver
    assert out["reason"][0] == "" and out["reason"][1].startswith("too small") and out["reason"][2] == "no face found"
    assert uncertain(out["status"], out["reason"]).tolist() == [False, True, False]


def test_transform_rows_report_the_gates_share_and_the_answered_accuracy():
    y = np.array([0, 0, 1, 1])
    clean = _set("clean", y, {"a": [0.1, 0.2, 0.8, 0.9], "ensemble": [0.1, 0.6, 0.8, 0.9]}, np.arange(4))
    clean = TransformSet(**{**clean.__dict__, "abstained": np.array([False, True, False, False])})
    per = score_transforms([clean], 4, BootstrapConfig(n_resamples=50))["per_transform"]["clean"]
    assert per["uncertain_share"] == 0.25
    assert per["systems"]["ensemble"]["accuracy"] == 0.75 and per["systems"]["ensemble"]["accuracy_answered"] == 1.0
    assert "accuracy_answered" not in per["systems"]["a"]


def test_own_abstention_adds_the_borderline_band_to_the_gate():
    from blackboard.borderline import Borderline
    from training.evaluate_analyses import own_abstention

    systems = [System("a", "agent", np.array([0.5, 0.5, 0.5]), 0.5, ""),
               System("ensemble", "ensemble", np.array([0.52, 0.9, 0.1]), 0.5, "")]
    gate = np.array([False, False, True])
    assert own_abstention(gate, systems, Borderline(0.05)).tolist() == [True, False, True]
    assert own_abstention(gate, systems, None).tolist() == [False, False, True]

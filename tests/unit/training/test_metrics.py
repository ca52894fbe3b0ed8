"""`training.metrics`: calibration error, equal error rate and the bootstrap, against hand
computations and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics as fm


def test_ece_matches_a_hand_computation():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.10, 0.95, 1.0, 0.55, 0.52])
    # bins of width 1/15: {0.05}, {0.10} -> bin 0 and 1; {0.52, 0.55} -> bin 7 and 8; {0.95, 1.0} -> bin 14
    expected = (0.05 + 0.10 + 0.52 + 0.45 + abs(2 - 1.95)) / 6
    assert fm.expected_calibration_error(y, p) == pytest.approx(expected)


def test_eer_is_zero_when_separable_and_half_when_random():
    y = np.array([0] * 50 + [1] * 50)
    assert fm.equal_error_rate(y, np.linspace(0, 1, 100)) == pytest.approx(0.0, abs=1e-12)
    p = np.random.default_rng(1).uniform(size=20000)
    y = np.random.default_rng(2).integers(0, 2, size=20000)
    assert fm.equal_error_rate(y, p) == pytest.approx(0.5, abs=0.02)


def test_paired_bootstrap_detects_a_real_difference():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=200)
    good = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.2, 200), 0, 1)
    bad = rng.uniform(size=200)
    config = fm.BootstrapConfig(n_resamples=100, seed=0)
    strong = fm.paired_bootstrap_auc(y, good, bad, config=config)
    same = fm.paired_bootstrap_auc(y, good, good, config=config)
    assert strong["delta_auc"] > 0.3 and strong["p_value"] < 0.01
    assert same["delta_auc"] == 0.0 and same["p_value"] == 1.0


def test_bootstrap_aucs_equal_sklearn_on_every_resample(monkeypatch):
    """The rank-based resampled AUCs are roc_auc_score's, ties included, chunked or not; a
    resample with one class has none."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=40)
    p = np.round(rng.uniform(size=40), 1)  # many ties
    idx = rng.integers(0, 40, size=(60, 40))
    idx[0] = np.flatnonzero(y == 1)[0]  # one class only
    want = [roc_auc_score(y[r], p[r]) if len(set(y[r])) == 2 else np.nan for r in idx]
    np.testing.assert_allclose(fm._resampled_aucs(y, p, idx), want, rtol=0, atol=1e-12)
    monkeypatch.setattr(fm, "_RANK_CHUNK", 7 * 40)  # several chunks, the last one partial
    np.testing.assert_allclose(fm._resampled_aucs(y, p, idx), want, rtol=0, atol=1e-12)
    assert np.isnan(want[0])
    config = fm.BootstrapConfig(n_resamples=200, seed=0)
    lo, hi = fm.bootstrap_intervals(y, p, threshold=0.5, config=config)["auc_ci"]
    assert lo <= roc_auc_score(y, p) <= hi


def test_intervals_drawn_by_group_count_a_groups_rows_once():
    from training.grouped_bootstrap import group_weights
    from training.metrics import BootstrapConfig, bootstrap_intervals, paired_bootstrap_auc

    rng = np.random.default_rng(3)
    y = np.array([0, 1] * 100)
    p = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.25, len(y)), 0, 1)
    # Each face three times (as a video's crops): rows drawn alone pretend to 600 independent faces.
    y3, p3, groups = np.repeat(y, 3), np.repeat(p, 3), np.repeat(np.arange(len(y)), 3)
    config = BootstrapConfig(n_resamples=400, seed=0)

    def width(ci):
        return ci[1] - ci[0]

    rows = bootstrap_intervals(y3, p3, threshold=0.5, config=config)
    whole = bootstrap_intervals(y3, p3, threshold=0.5, config=config, groups=groups)
    alone = bootstrap_intervals(y, p, threshold=0.5, config=config)
    assert width(whole["auc_ci"]) > 1.4 * width(rows["auc_ci"])  # about sqrt(3) wider
    assert width(whole["auc_ci"]) == pytest.approx(width(alone["auc_ci"]), rel=0.3)
    assert width(whole["accuracy_ci"]) > 1.4 * width(rows["accuracy_ci"])
    paired = paired_bootstrap_auc(y3, p3, np.repeat(rng.uniform(size=len(y)), 3), config=config, groups=groups)
    assert paired["delta_auc"] > 0.2 and paired["p_value"] < 0.05 and paired["n_resamples"] == 400
    assert group_weights(np.arange(5), config) is None  # every row its own group: plain row draws

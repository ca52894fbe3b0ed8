"""Metric computations for evaluation runs: one system's scores, intervals and paired tests.

Fake is the positive class throughout (``agents.labels.FAKE_INDEX`` = 1): ``y`` holds 1 for
fake and 0 for real, ``p`` holds each image's p_fake. Point metrics come from
``sklearn.metrics``; only what scikit-learn lacks is written here (equal error rate read off
``roc_curve``, expected calibration error, bootstrap intervals and the paired test). The
bootstrap's AUCs come from ranks (Mann-Whitney: AUC = U / (n_fake * n_real), ties at half),
all resamples at once, because ``roc_auc_score`` per resample took ~1.3 s per system per 1 000
resamples of 2 000 images; they equal ``roc_auc_score`` to rounding (a test compares them).

Undefined values (AUC on a one-class sample, say) are returned as ``None`` so they survive a
strict JSON round trip instead of becoming ``NaN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pydantic
from pydantic import ConfigDict, Field
from scipy.stats import binomtest, rankdata
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    fbeta_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from training.grouped_bootstrap import group_weights, weighted_aucs, weighted_means

# Probabilities are clipped this far from 0 and 1 before log-loss, so one confident mistake
# gives a large but finite penalty (sklearn's own default eps is dtype-dependent).
_EPS = 1e-7


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class BootstrapConfig:
    """How confidence intervals and the paired test resample the evaluated images."""

    n_resamples: int = Field(1000, ge=10)  # bootstrap resamples per interval / test
    confidence: float = Field(0.95, gt=0.5, lt=1)  # two-sided coverage of the percentile intervals
    seed: int = 0  # numpy Generator seed, so a rerun reproduces every interval


def _check_inputs(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"labels and scores must be 1-D of equal length, received {y.shape} and {p.shape}.")
    if len(y) == 0:
        raise ValueError("Cannot score an empty set of predictions.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) or 1 (fake), received values {np.unique(y)[:5]}.")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("scores must be finite probabilities in [0, 1].")
    return y.astype(int), p


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.min() != y.max())


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _bin_sums(y: np.ndarray, p: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, sum of p, sum of y) per equal-width bin of p on [0, 1] (p = 1 in the last bin)."""
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return (np.bincount(idx, minlength=n_bins), np.bincount(idx, weights=p, minlength=n_bins),
            np.bincount(idx, weights=y, minlength=n_bins))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, n_bins: int = 15) -> float:
    """Expected calibration error of p_fake over equal-width bins.

    Each bin contributes |observed fake fraction - mean p_fake| weighted by its share of the
    images. p = 1.0 falls into the last bin.

    Args:
        y: 0/1 labels (1 = fake).
        p: predicted p_fake.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        The ECE in [0, 1].
    """
    y, p = _check_inputs(y, p)
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, received {n_bins}.")
    count, sum_p, sum_y = _bin_sums(y, p, n_bins)
    used = count > 0
    gaps = np.abs(sum_y[used] - sum_p[used])  # = count * |mean_y - mean_p|
    return float(gaps.sum() / len(p))


def reliability_bins(y: np.ndarray, p: np.ndarray, *, n_bins: int = 15) -> dict[str, list[float | None]]:
    """Per-bin mean p_fake, observed fake fraction and count (for the reliability diagram)."""
    y, p = _check_inputs(y, p)
    count, sum_p, sum_y = _bin_sums(y, p, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = sum_p / count
        frac = sum_y / count
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "mean_p": [_none_if_nan(v) for v in mean_p],
        "fraction_fake": [_none_if_nan(v) for v in frac],
        "count": count.astype(int).tolist(),
    }


def equal_error_rate(y: np.ndarray, p: np.ndarray) -> float | None:
    """Equal error rate: where the false-positive and false-negative rates meet on the ROC curve.

    The crossing is interpolated linearly between the two ROC points that bracket it.
    Returns None when only one class is present.
    """
    y, p = _check_inputs(y, p)
    if not _both_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, p)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from -1 (threshold above every score) to +1
    k = int(np.argmax(diff >= 0))
    if k == 0 or diff[k] == 0:
        return float((fpr[k] + fnr[k]) / 2)
    # Linear interpolation between point k-1 (diff < 0) and point k (diff >= 0).
    t = -diff[k - 1] / (diff[k] - diff[k - 1])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def point_metrics(y: np.ndarray, p: np.ndarray, *, threshold: float) -> dict[str, Any]:
    """All point metrics of one system; fake (1) is positive, decisions are ``p >= threshold``.

    Returns:
        dict with auc, accuracy, balanced_accuracy, precision, recall, f1, f0_5, ap, eer, log_loss,
        ece, threshold and confusion [[tn, fp], [fn, tp]]. Ranking metrics are None when only
        one class is present.
    """
    y, p = _check_inputs(y, p)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], received {threshold}.")
    pred = (p >= threshold).astype(int)
    both = _both_classes(y)
    return {
        "auc": float(roc_auc_score(y, p)) if both else None,
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else None,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        # Precision first: F0.5 weighs precision twice as much as recall (a false "fake" accuses).
        "f0_5": float(fbeta_score(y, pred, beta=0.5, zero_division=0)),
        "ap": float(average_precision_score(y, p)) if both else None,
        "eer": equal_error_rate(y, p),
        "log_loss": float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "threshold": float(threshold),
        "confusion": confusion_matrix(y, pred, labels=[0, 1]).astype(int).tolist(),
    }


def _resample_indices(n: int, config: BootstrapConfig) -> np.ndarray:
    rng = np.random.default_rng(config.seed)
    return rng.integers(0, n, size=(config.n_resamples, n))


# Resampled scores ranked per chunk of resamples: at most this many values at once (~16 MB each
# for the scores, ranks and labels), whatever the number of images.
_RANK_CHUNK = 2_000_000


def _resampled_aucs(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC AUC of ``p`` on each resample ``idx[r]`` (NaN where it holds one class only)."""
    out = np.full(len(idx), np.nan)
    step = max(1, _RANK_CHUNK // max(idx.shape[1], 1))
    for start in range(0, len(idx), step):
        rows = idx[start:start + step]
        ys = y[rows].astype(bool)
        ranks = rankdata(p[rows], axis=1)  # average ranks: tied scores count half, as in roc_auc_score
        n_pos = ys.sum(axis=1)
        n_neg = ys.shape[1] - n_pos
        u = np.where(ys, ranks, 0.0).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + step] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return out


def _percentile_interval(values: list[float], config: BootstrapConfig) -> list[float] | None:
    if len(values) < max(10, config.n_resamples // 2):
        return None  # too many degenerate (one-class) resamples to trust an interval
    alpha = (1.0 - config.confidence) / 2.0
    lo, hi = np.quantile(np.asarray(values), [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


def _resampled(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None,
               config: BootstrapConfig) -> tuple[np.ndarray, Any]:
    """Each resample's AUC of ``p`` and a function of (N,) values -> each resample's mean of them.

    With ``groups``, a resample draws whole groups (`training.grouped_bootstrap`): a DFDC source
    video's real crop and its fake share a group, and the group, not the crop, is the unit the
    test set was drawn in. Without, it draws images.
    """
    weights = None if groups is None else group_weights(groups, config)
    if weights is None:
        idx = _resample_indices(len(y), config)
        return _resampled_aucs(y, p, idx), lambda values: np.asarray(values, dtype=np.float64)[idx].mean(axis=1)
    return weighted_aucs(y, p, weights), lambda values: weighted_means(values, weights)


def bootstrap_intervals(
    y: np.ndarray, p: np.ndarray, *, threshold: float, config: BootstrapConfig, groups: np.ndarray | None = None
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals for AUC and accuracy (images, or ``groups``, resampled with
    replacement).

    Resamples holding a single class are skipped for AUC. Every system evaluated with the
    same ``config`` (and groups) sees the same resamples, so their intervals are comparable.

    Returns:
        {"auc_ci": [lo, hi] | None, "accuracy_ci": [lo, hi]}.
    """
    y, p = _check_inputs(y, p)
    aucs, mean_of = _resampled(y, p, groups, config)
    correct = ((p >= threshold).astype(int) == y).astype(np.float64)
    accs = mean_of(correct).tolist()
    aucs = aucs[np.isfinite(aucs)].tolist()  # one-class resamples have no AUC
    return {"auc_ci": _percentile_interval(aucs, config), "accuracy_ci": _percentile_interval(accs, config)}


def paired_bootstrap_auc(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, config: BootstrapConfig, groups: np.ndarray | None = None
) -> dict[str, Any]:
    """Paired bootstrap test of AUC(a) - AUC(b) on the same images (or whole ``groups``).

    Both systems are scored on each resample, so the correlation between them (they see the
    same faces) is kept. The two-sided p-value uses the shifted null: the share of resampled
    differences at least as far from the observed difference as the observed difference is
    from zero, with the +1 correction so it is never exactly 0.

    Returns:
        {"delta_auc", "delta_auc_ci", "p_value", "n_resamples", "method"}; values None when
        only one class is present.
    """
    y, p_a = _check_inputs(y, p_a)
    _, p_b = _check_inputs(y, p_b)
    method = "paired bootstrap of the AUC difference (two-sided, shifted null)"
    if not _both_classes(y):
        return {"delta_auc": None, "delta_auc_ci": None, "p_value": None, "n_resamples": 0, "method": method}
    observed = float(roc_auc_score(y, p_a) - roc_auc_score(y, p_b))
    d = _resampled(y, p_a, groups, config)[0] - _resampled(y, p_b, groups, config)[0]  # the same draws
    d = d[np.isfinite(d)]  # one-class resamples have no AUC
    deltas = d.tolist()
    extreme = int(np.sum(np.abs(d - observed) >= abs(observed)))
    p_value = (1 + extreme) / (1 + len(d))
    return {
        "delta_auc": observed,
        "delta_auc_ci": _percentile_interval(deltas, config),
        "p_value": float(min(1.0, p_value)),
        "n_resamples": len(d),
        "method": method,
    }


def mcnemar_test(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test on the decisions of two systems (binomial test on the discordant pairs).

    Returns:
        {"a_right_b_wrong", "a_wrong_b_right", "p_value"}.
    """
    y = np.asarray(y).astype(int)
    right_a = np.asarray(pred_a).astype(int) == y
    right_b = np.asarray(pred_b).astype(int) == y
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"a_right_b_wrong": b, "a_wrong_b_right": c, "p_value": p_value}


def system_metrics(
    y: np.ndarray, p: np.ndarray, *, threshold: float, config: BootstrapConfig, groups: np.ndarray | None = None
) -> dict[str, Any]:
    """Point metrics plus bootstrap intervals for one system (the ``metrics.json`` entry)."""
    out = point_metrics(y, p, threshold=threshold)
    out.update(bootstrap_intervals(y, p, threshold=threshold, config=config, groups=groups))
    return out


def best_by_auc(metrics: dict[str, dict[str, Any]], candidates: list[str]) -> str:
    """The candidate with the highest AUC (accuracy breaks ties and stands in when AUC is None)."""
    if not candidates:
        raise ValueError("No candidate systems to choose from.")

    def key(name: str) -> tuple[float, float]:
        m = metrics[name]
        auc = m["auc"] if m["auc"] is not None else -1.0
        return (auc, m["accuracy"])

    return max(candidates, key=key)


@dataclass(frozen=True)
class System:
    """One scored system: its p_fake on the evaluated images and its decision threshold."""

    name: str  # "custom", ..., "majority", "mean", "stacking", "ensemble"
    kind: str  # "agent", "baseline" or "ensemble"
    p_fake: np.ndarray  # (N,) on the scored evaluated images
    threshold: float  # decision threshold on p_fake
    note: str  # provenance, quoted in the report


def score_systems(y: np.ndarray, systems: Sequence[System], bootstrap: BootstrapConfig,
                  groups: np.ndarray | None = None) -> dict[str, Any]:
    """metrics.json's "systems", "best_single" and "ensemble_vs_best_single" sections (intervals
    and the paired test resampling whole ``groups`` when given)."""
    metrics = {s.name: {**system_metrics(y, s.p_fake, threshold=s.threshold, config=bootstrap, groups=groups),
                        "kind": s.kind, "note": s.note} for s in systems}
    agents = [s for s in systems if s.kind == "agent"]
    best = best_by_auc(metrics, [s.name for s in agents])
    comparison: dict[str, Any] = {"delta_auc": None, "p_value": None,
                                  "method": "paired bootstrap of the AUC difference", "against": best}
    ensemble = next((s for s in systems if s.name == "ensemble"), None)
    if ensemble is not None:
        best_sys = next(s for s in agents if s.name == best)
        comparison.update(paired_bootstrap_auc(y, ensemble.p_fake, best_sys.p_fake, config=bootstrap, groups=groups))
        comparison["against"] = best
        comparison["mcnemar"] = mcnemar_test(y, ensemble.p_fake >= ensemble.threshold,
                                             best_sys.p_fake >= best_sys.threshold)
    return {"systems": metrics, "best_single": best, "ensemble_vs_best_single": comparison}

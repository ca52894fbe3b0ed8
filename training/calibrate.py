"""Post-training calibration on val: temperature scaling and the decision threshold.

The original report wanted a "picky" model that favours precision on the fake class, so the
default threshold rule maximises F0.5 (precision weighted twice recall) on val.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from agents.labels import FAKE_INDEX
from agents.predictor import apply_temperature
from blackboard.calibration import THRESHOLD_RULES as _RULES, choose_threshold
from training.metrics import point_metrics

THRESHOLD_RULES = (*_RULES, "fixed:<t>")  # for help texts



def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 that minimises val negative log-likelihood of softmax(log p / T)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be (N, C) matching labels (N,), received {probs.shape} and {labels.shape}.")

    def nll(t: float) -> float:
        p = apply_temperature(probs, t).astype(np.float64)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))

    res = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded")
    return float(res.x)


def binary_metrics(p_fake: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """The metrics stored in a bundle for one agent on val (fake is positive): a subset of
    `training.metrics.point_metrics`, under the names bundles have always used ("f0.5"; AUC NaN,
    not None, when val holds one class)."""
    m = point_metrics(labels, p_fake, threshold=threshold)
    return {
        "n": int(len(labels)),
        "auc": float("nan") if m["auc"] is None else m["auc"],
        **{key: m[key] for key in ("accuracy", "precision", "recall", "f1")},
        "f0.5": m["f0_5"],
        "log_loss": m["log_loss"],
        "threshold": m["threshold"],
    }


def p_fake_of(probs: np.ndarray) -> np.ndarray:
    return np.asarray(probs)[:, FAKE_INDEX]


def calibrate(raw: np.ndarray, labels: np.ndarray, rule: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Calibrates an agent on val: the temperature, then the threshold ``rule`` picks, then metrics.

    Args:
        raw: (N, C) class probabilities of the val rows, before calibration.
        labels: (N,) class indices of the val rows.
        rule: the threshold rule (see `blackboard.calibration.choose_threshold`).

    Returns:
        (calibrated p_fake per val row, the calibration fields of an agent's bundle meta:
        ``temperature``, ``threshold``, ``threshold_rule`` and ``val_metrics``).
    """
    temperature = fit_temperature(raw, labels)
    p_val = p_fake_of(apply_temperature(raw, temperature))
    threshold = choose_threshold(p_val, labels, rule)
    return p_val, {"temperature": temperature, "threshold": threshold, "threshold_rule": rule,
                   "val_metrics": binary_metrics(p_val, labels, threshold)}


def calibration_summary(meta: dict[str, Any]) -> str:
    """One line on what `calibrate` fitted, for a trainer's closing message."""
    metrics = meta["val_metrics"]
    return (f"T={meta['temperature']:.3f} threshold={meta['threshold']:.3f} "
            f"val AUC={metrics['auc']:.4f} acc={metrics['accuracy']:.4f}")

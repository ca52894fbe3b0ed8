"""Post-training calibration on val: temperature scaling and the decision threshold.

The original report wanted a "picky" model that favours precision on the fake class, so the
default threshold rule maximises F0.5 (precision weighted twice recall) on val.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    fbeta_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from agents.labels import FAKE_INDEX
from agents.predictor import apply_temperature
from blackboard.calibration import THRESHOLD_RULES as _RULES

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
    """The metrics stored in a bundle for one agent on val (fake is positive)."""
    p_fake = np.asarray(p_fake, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    pred = (p_fake >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "n": int(len(labels)),
        "auc": float(roc_auc_score(labels, p_fake)) if both else float("nan"),
        "accuracy": float(accuracy_score(labels, pred)),
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "f1": float(f1_score(labels, pred, zero_division=0)),
        "f0.5": float(fbeta_score(labels, pred, beta=0.5, zero_division=0)),
        "log_loss": float(log_loss(labels, np.clip(p_fake, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "threshold": float(threshold),
    }


def p_fake_of(probs: np.ndarray) -> np.ndarray:
    return np.asarray(probs)[:, FAKE_INDEX]

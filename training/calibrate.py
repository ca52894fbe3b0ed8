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
# An agent's refit (slope and offset of its log-odds) closer than this to the identity is not applied.
REFIT_TOLERANCE = 0.02



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


def refit_agent_calibration(bundle: Any, votes: np.ndarray, labels: np.ndarray, prior: float | None, *,
                            rows: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """Refits each agent's temperature and bias on its calibrated votes, for a fake share ``prior``.

    An agent's temperature is fitted on val, whose fake share (60-65 %) its probabilities then
    carry: the forensic agent said 0.575 on average on a 50/50 test set. A Platt fit of each
    agent's log-odds (`blackboard.calibration.Calibrator`, moved to ``prior`` by Bayes' rule, as
    the controller's own calibration) gives a slope ``a`` and an offset ``b``; as the log-odds are
    log(p_fake / p_real) / T, the agent's new temperature is T / a and its bias b. Its threshold
    moves through the same map, so every decision it makes stays the same.

    Args:
        bundle: the loaded bundle the votes came from.
        votes: (N, agents) calibrated p_fake, columns in ``bundle.agent_names`` order, all finite.
        labels: (N,) 0 = real, 1 = fake.
        prior: the fake share the refitted probabilities assume (None: the labels' own share).
        rows: indices of the rows to fit on (default all); every row's votes are mapped.

    Returns:
        (the votes under the new calibration, agent name -> manifest fields to update); an agent
        whose fitted slope is not positive (its votes do not rank the labels), or whose refit would
        move its log-odds by less than :data:`REFIT_TOLERANCE` (already refitted: a second
        `fit-controller` then reuses the vote cache), keeps its calibration.
    """
    from blackboard.calibration import Calibrator

    votes = np.asarray(votes, dtype=np.float64)
    labels = np.asarray(labels)
    rows = np.arange(len(votes)) if rows is None else np.asarray(rows)
    new = votes.copy()
    updates: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(bundle.agent_names):
        info = bundle.agent(name)
        fitted = Calibrator(kind="platt").fit(votes[rows, j], labels[rows], prior=prior)
        shift = fitted.intercept + fitted.prior_shift
        if not fitted.coef > 0 or (abs(fitted.coef - 1.0) < REFIT_TOLERANCE and abs(shift) < REFIT_TOLERANCE):
            continue
        offset = info.bias * fitted.coef + shift
        new[:, j] = fitted.apply(votes[:, j])
        threshold = float(fitted.apply(np.array([info.threshold]))[0])  # the same map: same decisions
        updates[name] = {"temperature": float(info.temperature / fitted.coef), "bias": float(offset),
                         "threshold": threshold,
                         "calibration_refit": {"prior": prior, "rows": int(len(rows)),
                                               "slope": fitted.coef, "offset": shift}}
    return new, updates

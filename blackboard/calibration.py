"""Calibration and operating point shared by every decider: score -> probability -> threshold.

One copy of the threshold rules for the whole project (agents' thresholds in ``training.train``
and every controller's): ``choose_threshold`` picks a threshold on calibrated p_fake from
labelled val scores, and refuses one-class labels for the data-driven rules (a threshold chosen
on one class means nothing). ``Calibrator`` maps a raw combined score in (0, 1) to a probability
(Platt scaling on its logit, or isotonic regression) and serialises to plain JSON numbers.

A calibrator fitted on data with one fake share states probabilities for that share. Fitted
with ``prior``, it re-expresses them for another (Bayes' rule: the log-odds move by
``logit(prior) - logit(share)``), so probabilities shown to a user do not carry the dataset's
mix of fakes; the decisions do not change, because the threshold is chosen on the moved scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, field
from typing import Annotated, Any, Literal, Optional

import numpy as np
from pydantic import AfterValidator, ConfigDict
from pydantic.dataclasses import dataclass

from agents.labels import label_to_index

THRESHOLD_RULES = ("f0.5", "f1", "youden")  # plus "fixed:<p>" with 0 < p < 1
CalibrationKind = Literal["platt", "isotonic", "none"]
EPS = 1e-6  # probabilities are clipped this far from 0 and 1 before a logit


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)) of probabilities clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z: Any) -> np.ndarray:
    """1 / (1 + exp(-z)), computed without overflow warnings."""
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def parse_threshold_rule(rule: str) -> tuple[str, float | None]:
    """("f0.5" | "f1" | "youden", None) or ("fixed", p).

    Raises:
        ValueError: an unknown rule, or a fixed value outside (0, 1).
    """
    if rule in THRESHOLD_RULES:
        return rule, None
    if isinstance(rule, str) and rule.startswith("fixed:"):
        try:
            value = float(rule.split(":", 1)[1])
        except ValueError:
            value = math.nan
        if 0.0 < value < 1.0:
            return "fixed", value
    raise ValueError(f"Unknown threshold rule {rule!r}: threshold_rule must be one of {THRESHOLD_RULES} "
                     "or 'fixed:<p>' with 0 < p < 1.")


def labels_to_int(labels: Any) -> np.ndarray:
    """0/1 labels from 0/1 numbers or "real"/"fake" names.

    Raises:
        ValueError: any other value.
    """
    arr = np.asarray(labels)
    if arr.dtype.kind in "USO":
        return np.array([label_to_index(x) for x in arr], dtype=int)
    arr = arr.astype(int)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) / 1 (fake) or names, received values {np.unique(arr)[:5]}.")
    return arr


def check_prior(prior: float | None) -> float | None:
    """Refuses a prior outside (0, 1) (None = keep the fitting data's fake share).

    Returns:
        ``prior`` itself, so that it can serve as a pydantic validator (`Prior`).

    Raises:
        ValueError: naming the value received.
    """
    if prior is not None and not 0.0 < float(prior) < 1.0:
        raise ValueError(f"prior must be a fake share in (0, 1) or None, received {prior!r}.")
    return prior


def check_threshold_rule(rule: str) -> str:
    """``rule`` itself when :func:`parse_threshold_rule` accepts it (a pydantic validator: `ThresholdRule`)."""
    parse_threshold_rule(rule)
    return rule


# Config field types of the settings every decider shares, checked by the functions above.
Prior = Annotated[Optional[float], AfterValidator(check_prior)]
ThresholdRule = Annotated[str, AfterValidator(check_threshold_rule)]


def choose_threshold(p_fake: np.ndarray, labels: np.ndarray, rule: str = "f0.5") -> float:
    """Picks a decision threshold on calibrated p_fake from labelled val scores.

    Args:
        p_fake: calibrated scores, shape (N,).
        labels: 1 = fake, 0 = real.
        rule: "f0.5" (default, maximises F0.5 for fake: precision weighted twice recall), "f1",
            "youden" (max TPR - FPR) or "fixed:<p>".

    Raises:
        ValueError: an unknown rule, or a data-driven rule on labels of one class only.
    """
    kind, value = parse_threshold_rule(rule)
    if kind == "fixed":
        return float(value)
    p_fake = np.asarray(p_fake, dtype=np.float64)
    labels = labels_to_int(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"Choosing a threshold with rule {rule!r} needs both classes in the labels; "
                         "received one class only (use 'fixed:<p>', or fit on a split with reals and fakes).")
    # Here, not at the top: `serve`'s process decides without scikit-learn (~1.5 s with SciPy).
    from sklearn.metrics import precision_recall_curve, roc_curve

    if kind == "youden":
        fpr, tpr, thr = roc_curve(labels, p_fake)
        return float(np.clip(thr[int(np.argmax(tpr - fpr))], 0.0, 1.0))
    beta = 0.5 if kind == "f0.5" else 1.0
    precision, recall, thr = precision_recall_curve(labels, p_fake)
    p, r = precision[:-1], recall[:-1]
    f = (1 + beta**2) * p * r / np.maximum(beta**2 * p + r, 1e-12)
    return float(thr[int(np.argmax(f))])


@dataclass(config=ConfigDict(extra="forbid"))
class Calibrator:
    """Maps a raw combined score in (0, 1) to a probability (plain numbers, for JSON)."""

    kind: CalibrationKind = "none"  # "none": the raw score
    coef: float = 1.0  # Platt: p = sigmoid(coef * logit(s) + intercept)
    intercept: float = 0.0
    x: list[float] = field(default_factory=list)  # isotonic knots (raw score)
    y: list[float] = field(default_factory=list)  # isotonic knots (probability)
    prior_shift: float = 0.0  # added to the calibrated log-odds: logit(prior) - logit(fitting share)

    def fit(self, s: np.ndarray, labels: np.ndarray, *, prior: float | None = None) -> "Calibrator":
        """Fits on raw scores and 0/1 labels; one-class labels leave the score as it is.

        Args:
            prior: the fake share the probabilities should assume (None: the labels' own share).
        """
        check_prior(prior)
        labels = labels_to_int(labels)
        self.prior_shift = 0.0
        if self.kind == "none" or len(np.unique(labels)) < 2:
            self.kind = "none"
            return self
        if prior is not None:
            share = float(np.mean(labels))
            self.prior_shift = float(math.log(prior / (1 - prior)) - math.log(share / (1 - share)))
        # Here, not at the top: `serve`'s process decides without scikit-learn (~1.5 s with SciPy).
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        if self.kind == "platt":
            lr = LogisticRegression(C=1e4)
            lr.fit(logit(s)[:, None], labels)
            self.coef, self.intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        else:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, labels)
            self.x = [float(v) for v in iso.X_thresholds_]
            self.y = [float(v) for v in iso.y_thresholds_]
        return self

    def apply(self, s: np.ndarray) -> np.ndarray:
        """Calibrated probability of each raw score (for the prior it was fitted with)."""
        if self.kind == "platt":
            return sigmoid(self.coef * logit(s) + self.intercept + self.prior_shift)
        if self.kind == "isotonic":
            p = np.interp(s, self.x, self.y)
            return sigmoid(logit(p) + self.prior_shift) if self.prior_shift else p
        return np.asarray(s, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON fields; ``prior_shift`` only when set, so tables fitted before it existed
        keep their content (and version hash)."""
        out = asdict(self)
        if not out["prior_shift"]:
            del out["prior_shift"]
        return out

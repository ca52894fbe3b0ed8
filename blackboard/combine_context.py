"""Stacking that sees the picture's condition: the fair baseline for a context controller.

Logistic regression (scikit-learn) on each agent's log-odds, the standardised context features
(:mod:`vision.context`) and every (agent log-odds x feature) product, so it can learn "trust
agent a more when the face is blurred" just as the context controller can. Missing votes count
as 0.5 (log-odds 0), missing context as the fitting data's mean.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from agents.labels import FAKE, REAL
from blackboard.calibration import logit


class ContextStackingCombiner:
    """Stacking on log-odds, context and their products.

    Args:
        agents: agent names, the columns of every votes array.
        context: context feature names, the columns of every context array.
        C: inverse L2 strength of the logistic regression.
    """

    name = "stacking+context"

    def __init__(self, agents: Sequence[str], context: Sequence[str], *, C: float = 1.0) -> None:
        self.agents = list(agents)
        self.context_names = tuple(context)
        # Here, not at the top: `serve`'s process decides without scikit-learn (~1.5 s with SciPy).
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=C, max_iter=2000)
        self.mean = np.zeros(len(self.context_names))
        self.std = np.ones(len(self.context_names))

    def _features(self, votes: np.ndarray, present: np.ndarray | None, context: np.ndarray | None) -> np.ndarray:
        votes = np.asarray(votes, dtype=np.float64)
        mask = np.isfinite(votes) if present is None else np.asarray(present, bool) & np.isfinite(votes)
        lo = np.where(mask, logit(np.where(mask, votes, 0.5)), 0.0)
        k = len(self.context_names)
        ctx = np.full((len(votes), k), np.nan) if context is None else np.asarray(context, np.float64).reshape(len(votes), k)
        z = np.nan_to_num((ctx - self.mean) / self.std)
        return np.concatenate([lo, z, (lo[:, :, None] * z[:, None, :]).reshape(len(votes), -1)], axis=1)

    def fit(self, votes: np.ndarray, labels: np.ndarray, context: np.ndarray | None = None) -> "ContextStackingCombiner":
        """Learns the standardisation and the regression from labelled val votes."""
        if context is not None:
            ctx = np.asarray(context, np.float64).reshape(len(votes), -1)
            self.mean = np.nan_to_num(np.nanmean(ctx, axis=0))
            std = np.nan_to_num(np.nanstd(ctx, axis=0), nan=1.0)
            self.std = np.where(std < 1e-9, 1.0, std)
        self.model.fit(self._features(votes, None, context), np.asarray(labels, dtype=int))
        return self

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None,
                      context: np.ndarray | None = None) -> np.ndarray:
        """p_fake, shape (N,)."""
        return self.model.predict_proba(self._features(votes, present, context))[:, 1]

    def weights(self) -> dict[str, dict[str, float]]:
        """agent -> class -> its log-odds coefficient at the mean context (clipped at 0)."""
        coef = self.model.coef_[0][:len(self.agents)]
        return {a: {REAL: float(max(c, 0.0)), FAKE: float(max(c, 0.0))} for a, c in zip(self.agents, coef)}

    def to_dict(self) -> dict[str, Any]:
        """The fitted numbers (what a bundle stores)."""
        return {"context": list(self.context_names), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "coef": self.model.coef_[0].tolist(), "intercept": float(self.model.intercept_[0])}

    @classmethod
    def from_dict(cls, agents: Sequence[str], data: dict[str, Any]) -> "ContextStackingCombiner":
        """A fitted combiner from :meth:`to_dict` output."""
        new = cls(agents, data["context"])
        new.mean = np.asarray(data["mean"], np.float64)
        new.std = np.asarray(data["std"], np.float64)
        coef = np.asarray(data["coef"], np.float64)
        k = len(new.context_names)
        if coef.shape != (len(new.agents) * (1 + k) + k,):
            raise ValueError(f"stacking+context has {coef.size} coefficients for {len(new.agents)} agents and {k} features.")
        new.model.coef_, new.model.intercept_ = coef[None, :], np.array([float(data["intercept"])])
        new.model.classes_, new.model.n_features_in_ = np.array([0, 1]), coef.size
        return new

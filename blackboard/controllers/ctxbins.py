"""The binned context controller: a log-odds weight per (agent, class spoken, context bin).

CHIMACS learns how far to trust each agent for each class; here the trust also depends on the
picture's condition (:mod:`vision.context`). Each named context feature is cut into ``bins``
quantile bins of the fitting data, and an agent's weight when it says class ``c`` on a face in
bin ``b`` of feature ``k`` is::

    W[a, c] + D[k, b, a, c]

summed over the features, so one table row per bin reads directly as "how far the controller
trusts this agent in this condition". Learning is the log-odds rule's policy gradient
(:mod:`blackboard.controllers.logodds`) with one-hot bin indicators in place of standardised
context values; its L2 pull toward zero keeps a rarely-filled bin at the agent's overall weight.
A face whose context is unknown (NaN) falls in no bin and gets ``W`` alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from agents.labels import CLASSES
from blackboard.controllers.base import agent_class_table, register_controller
from blackboard.controllers.logodds import ContextNames, LogOddsConfig, LogOddsController


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class BinnedConfig(LogOddsConfig):
    """The log-odds rule's settings plus how many quantile bins each context feature gets."""

    context: ContextNames = Field(("sharpness",), min_length=1)  # the bins need a feature to cut
    bins: int = Field(3, ge=2, le=10)  # quantile bins per context feature


@register_controller
class BinnedLogOddsController(LogOddsController):
    """Per-(agent, class, context bin) log-odds weights learned by policy gradient.

    Args:
        agents: agent names, in the column order of every votes array.
        config: learning, context, bins, calibration and threshold settings.
    """

    kind = "logodds-bins"
    schema_version = 2
    config_class = BinnedConfig

    def __init__(self, agents: Sequence[str], config: BinnedConfig = BinnedConfig()) -> None:
        super().__init__(agents, config)
        n_cols = len(config.context) * config.bins
        self.v = np.zeros((n_cols, len(self.agents), len(CLASSES)))  # D[(feature, bin), agent, class]
        self.u = np.zeros(n_cols)
        # Inner quantile edges per feature; zeros until fitted (v and u are zero then too, so the
        # bin a value falls in changes nothing before the fit).
        self.edges = np.zeros((len(config.context), config.bins - 1))

    def _bin_index(self, context: np.ndarray) -> np.ndarray:
        """(N, K) bin of each feature value; -1 where it is unknown."""
        idx = np.stack([np.searchsorted(self.edges[k], context[:, k], side="right")
                        for k in range(context.shape[1])], axis=1)
        return np.where(np.isfinite(context), idx, -1)

    def _z(self, context: np.ndarray | None, n: int) -> np.ndarray:
        """One-hot bin indicators (N, K * bins); all zero for missing context."""
        k, bins = len(self.config.context), self.config.bins
        z = np.zeros((n, k * bins))
        if context is None:
            return z
        ctx = np.asarray(context, dtype=np.float64).reshape(n, -1)
        if ctx.shape[1] != k:
            raise ValueError(f"context must have shape (N, {k}) for {self.config.context}, received {ctx.shape}.")
        idx = self._bin_index(ctx)
        rows, feats = np.nonzero(idx >= 0)
        z[rows, feats * bins + idx[rows, feats]] = 1.0
        return z

    def fit_rule(self, votes: np.ndarray, mask: np.ndarray, y: np.ndarray, context: np.ndarray | None) -> None:
        if context is None:
            raise ValueError(f"The binned controller needs the context {self.config.context} to fit.")
        ctx = np.asarray(context, dtype=np.float64).reshape(len(y), -1)
        qs = np.linspace(0.0, 1.0, self.config.bins + 1)[1:-1]
        self.edges = np.stack([np.nanquantile(ctx[:, k], qs) if np.isfinite(ctx[:, k]).any()
                               else np.zeros(len(qs)) for k in range(ctx.shape[1])])
        super().fit_rule(votes, mask, y, context)

    # ------------------------------------------------------------ explaining
    def bin_trust(self) -> dict[str, list[dict[str, Any]]]:
        """feature -> one row per bin: its value range and agent -> class -> weight in that bin
        (the other features at no bin), the table the trust plot draws."""
        out: dict[str, list[dict[str, Any]]] = {}
        bins = self.config.bins
        for k, name in enumerate(self.config.context):
            edges = [-np.inf, *self.edges[k].tolist(), np.inf]
            rows = []
            for b in range(bins):
                w = self.w + self.v[k * bins + b]
                rows.append({"bin": b, "low": float(edges[b]), "high": float(edges[b + 1]),
                             "weights": agent_class_table(self.agents, w)})
            out[name] = rows
        return out

    # ----------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        state = super()._state()
        state["edges"] = self.edges.tolist()
        return state

    def _restore(self, obj: dict[str, Any]) -> None:
        # The log-odds state (its ctx_mean/ctx_std unused by the bins, but part of the stored
        # content and so of the version hash), plus the bins' edges.
        super()._restore(obj)
        self.edges = np.asarray(obj["edges"], dtype=np.float64).reshape(self.edges.shape)

    def summary(self) -> dict[str, Any]:
        base = super(LogOddsController, self).summary()
        return {**base, "bias": float(self.bias), "context": list(self.config.context), "bins": self.config.bins,
                "bin_trust": self.bin_trust()}

"""Combiners: how votes become one probability. The RL controller and the baselines share this API.

Every combiner sees votes as an (N, A) array of calibrated p_fake, columns in ``agents`` order,
with an optional boolean ``present`` mask of the same shape (False = that agent did not vote,
e.g. it missed the deadline). ``fit`` learns from labelled votes (val split only);
``predict_proba`` returns p_fake of shape (N,); ``weights`` explains the last decision rule as
agent -> class -> non-negative weight.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from agents.errors import parse_json
from agents.labels import CLASSES, FAKE, REAL


def vote_matrix(p_fake_by_agent: Mapping[str, Any], agents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(votes (N, A), present (N, A)) in ``agents`` order; absent agents and NaN are not present."""
    lengths = {len(np.atleast_1d(np.asarray(v))) for v in p_fake_by_agent.values()}
    if len(lengths) > 1:
        raise ValueError(f"every agent's p_fake must cover the same faces; received lengths {sorted(lengths)}.")
    n = lengths.pop() if lengths else 0
    votes = np.full((n, len(agents)), np.nan, dtype=np.float64)
    for j, name in enumerate(agents):
        if name in p_fake_by_agent:
            votes[:, j] = np.atleast_1d(np.asarray(p_fake_by_agent[name], dtype=np.float64))
    present = np.isfinite(votes)
    return np.where(present, votes, 0.5), present



@runtime_checkable
class Combiner(Protocol):
    name: str
    agents: list[str]

    def fit(self, votes: np.ndarray, labels: np.ndarray) -> "Combiner": ...

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray: ...

    def weights(self) -> dict[str, dict[str, float]]: ...


def _check(votes: np.ndarray, agents: Sequence[str], present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    votes = np.asarray(votes, dtype=np.float64)
    if votes.ndim != 2 or votes.shape[1] != len(agents):
        raise ValueError(f"votes must have shape (N, {len(agents)}) for agents {list(agents)}, received {votes.shape}.")
    mask = np.ones_like(votes, dtype=bool) if present is None else np.asarray(present, dtype=bool)
    if mask.shape != votes.shape:
        raise ValueError(f"present mask shape {mask.shape} differs from votes shape {votes.shape}.")
    return votes, mask


def mean_vote(votes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean p_fake of the present votes per row; 0.5 ("don't know") where none is present."""
    n = mask.sum(axis=1)
    return np.where(n > 0, (votes * mask).sum(axis=1) / np.maximum(n, 1), 0.5)


class _FixedRule:
    """A combiner with nothing to learn: ``fit`` leaves it as it is."""

    def __init__(self, agents: Sequence[str]):
        self.agents = list(agents)

    def fit(self, votes: np.ndarray, labels: np.ndarray) -> "_FixedRule":
        return self


class SingleAgent(_FixedRule):
    """One agent alone (its own calibrated probability)."""

    def __init__(self, agents: Sequence[str], agent: str):
        super().__init__(agents)
        if agent not in self.agents:
            raise ValueError(f"Agent {agent!r} not among {list(agents)}.")
        self.agent, self.name = agent, agent
        self._col = self.agents.index(agent)

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        votes, mask = _check(votes, self.agents, present)
        # A missing single agent cannot decide: fall back to "don't know" (0.5).
        return np.where(mask[:, self._col], votes[:, self._col], 0.5)

    def weights(self) -> dict[str, dict[str, float]]:
        return {a: {c: float(a == self.agent) for c in CLASSES} for a in self.agents}


class MeanCombiner(_FixedRule):
    """Mean of the present agents' p_fake."""

    name = "mean"

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        return mean_vote(*_check(votes, self.agents, present))

    def weights(self) -> dict[str, dict[str, float]]:
        return {a: {c: 1.0 / len(self.agents) for c in CLASSES} for a in self.agents}


class MajorityCombiner(_FixedRule):
    """Majority vote of the present agents' labels (p_fake >= 0.5); the score is the fake share."""

    name = "majority"

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        votes, mask = _check(votes, self.agents, present)
        n = mask.sum(axis=1)
        fake_votes = ((votes >= 0.5) & mask).sum(axis=1)
        # Ties break on the mean probability so the score still ranks cases.
        mean = mean_vote(votes, mask)
        share = np.where(n > 0, fake_votes / np.maximum(n, 1), 0.5)
        return np.clip(share + 1e-3 * (mean - 0.5), 0.0, 1.0)

    def weights(self) -> dict[str, dict[str, float]]:
        return {a: {c: 1.0 for c in CLASSES} for a in self.agents}


class StackingCombiner:
    """Logistic-regression stacking on the agents' logits (scikit-learn), fitted on val."""

    name = "stacking"

    def __init__(self, agents: Sequence[str], *, C: float = 1.0):
        # Here, not at the top: `serve`'s process decides without scikit-learn (~1.5 s with SciPy).
        from sklearn.linear_model import LogisticRegression

        self.agents = list(agents)
        self.model = LogisticRegression(C=C)
        self._fitted = False

    @staticmethod
    def _features(votes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        p = np.clip(votes, 1e-6, 1 - 1e-6)
        # A missing vote becomes logit 0 ("no opinion").
        return np.where(mask, np.log(p / (1 - p)), 0.0)

    def fit(self, votes: np.ndarray, labels: np.ndarray) -> "StackingCombiner":
        votes, mask = _check(votes, self.agents, None)
        labels = np.asarray(labels).astype(int)
        if len(np.unique(labels)) < 2:
            raise ValueError("Stacking needs both classes in its fitting data.")
        self.model.fit(self._features(votes, mask), labels)
        self._fitted = True
        return self

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("StackingCombiner.predict_proba called before fit.")
        votes, mask = _check(votes, self.agents, present)
        return self.model.predict_proba(self._features(votes, mask))[:, 1]

    def weights(self) -> dict[str, dict[str, float]]:
        coef = self.model.coef_[0] if self._fitted else np.ones(len(self.agents))
        return {a: {REAL: float(max(c, 0.0)), FAKE: float(max(c, 0.0))} for a, c in zip(self.agents, coef)}

    def to_dict(self) -> dict[str, Any]:
        """The fitted coefficients as plain numbers (what the bundle stores)."""
        if not self._fitted:
            raise RuntimeError("StackingCombiner.to_dict called before fit.")
        return {"coef": [float(c) for c in self.model.coef_[0]], "intercept": float(self.model.intercept_[0])}

    @classmethod
    def from_dict(cls, agents: Sequence[str], data: dict[str, Any]) -> "StackingCombiner":
        """A fitted combiner from :meth:`to_dict` output."""
        coef = np.asarray(data["coef"], dtype=np.float64)
        if coef.shape != (len(agents),):
            raise ValueError(f"stacking has {coef.size} coefficients for {len(agents)} agents {list(agents)}.")
        new = cls(agents)
        new.model.coef_ = coef[None, :]
        new.model.intercept_ = np.array([float(data["intercept"])])
        new.model.classes_ = np.array([0, 1])
        new.model.n_features_in_ = len(agents)
        new._fitted = True
        return new


BASELINES_SCHEMA = "fakeface-baselines"
BASELINE_NAMES = ("majority", "mean", "stacking")  # the fixed combiners shipped with every controller
CONTEXT_STACKING = "stacking+context"  # stored too when the controller reads context: the fair comparison


def fit_baselines(agents: Sequence[str], votes: np.ndarray, labels: np.ndarray) -> dict[str, Combiner]:
    """Majority, mean and stacking fitted on labelled votes (val), in ``BASELINE_NAMES`` order."""
    return {"majority": MajorityCombiner(agents), "mean": MeanCombiner(agents),
            "stacking": StackingCombiner(agents).fit(votes, labels)}


def baselines_to_json(combiners: dict[str, Combiner], *, fitted_on: dict[str, Any]) -> bytes:
    """The bundle file of fitted baselines (stacking's coefficients; the others have none)."""
    agents = next(iter(combiners.values())).agents
    systems = {"majority": {}, "mean": {}, "stacking": combiners["stacking"].to_dict()}
    if CONTEXT_STACKING in combiners:  # stacking on the controller's context (blackboard.combine_context)
        systems[CONTEXT_STACKING] = combiners[CONTEXT_STACKING].to_dict()
    return json.dumps({"schema": BASELINES_SCHEMA, "schema_version": 1, "agents": list(agents),
                       "systems": systems, "fitted_on": fitted_on}, indent=2, sort_keys=True).encode()


def baselines_from_json(data: bytes | str) -> dict[str, Combiner]:
    """Fitted baselines from :func:`baselines_to_json` output.

    Raises:
        ValueError: not a baselines file, or its stacking does not match its agents.
    """
    obj = parse_json(data, what="Baselines file")
    if not isinstance(obj, dict) or obj.get("schema") != BASELINES_SCHEMA or obj.get("schema_version") != 1:
        raise ValueError(f"Not a fakeface baselines file (expected {BASELINES_SCHEMA} v1).")
    agents = [str(a) for a in obj["agents"]]
    out: dict[str, Combiner] = {"majority": MajorityCombiner(agents), "mean": MeanCombiner(agents),
                                "stacking": StackingCombiner.from_dict(agents, obj["systems"]["stacking"])}
    if CONTEXT_STACKING in obj["systems"]:
        from blackboard.combine_context import ContextStackingCombiner

        out[CONTEXT_STACKING] = ContextStackingCombiner.from_dict(agents, obj["systems"][CONTEXT_STACKING])
    return out


def baselines(agents: Sequence[str]) -> list:
    """Each single agent, majority vote, mean probability and stacking (unfitted)."""
    return [SingleAgent(agents, a) for a in agents] + [
        MajorityCombiner(agents), MeanCombiner(agents), StackingCombiner(agents)
    ]

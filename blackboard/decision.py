"""Votes -> decision, the one rule every caller uses (server, batch, evaluate, fit-controller).

``decide(p_fake_by_agent, controller)`` takes each agent's calibrated p_fake per face (NaN or an
absent key = that agent did not vote) and the bundle's controller, and returns p_fake, label,
threshold and each agent's share of every decision; with a borderline band (`blackboard.borderline`)
a p_fake too close to the threshold is labelled "uncertain" with its reason. With no controller the decision is the mean
of the present votes at threshold 0.5 (and its shares are equal), so "controller, else mean" is
decided here and nowhere else. Agents are matched by name: votes of agents the controller does
not know are ignored by it, and a controller agent without a vote drops out of that decision.

``context_for(controller, crops, contexts)`` gives the per-face context a controller conditions
on (:mod:`vision.context`: face size, sharpness, JPEG blockiness, brightness, detected or given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from agents.labels import FAKE, REAL
from blackboard.borderline import Borderline
from blackboard.case import UNCERTAIN
from blackboard.combine import MeanCombiner, vote_matrix
from blackboard.controllers.base import Controller
from vision.context import check_names, context_matrix, face_context, sharpness

MEAN = "mean"  # combiner name and version string of the no-controller fallback
MEAN_THRESHOLD = 0.5


@dataclass(frozen=True)
class Decisions:
    """The decisions on N faces."""

    p_fake: np.ndarray  # (N,) calibrated p_fake of the ensemble
    labels: np.ndarray  # (N,) "real" / "fake" at ``threshold``
    threshold: float  # threshold on p_fake used for the labels
    combiner: str  # "ensemble" (a controller) or "mean" (no controller)
    version: str  # the controller's version, or "mean"
    agents: tuple[str, ...]  # the agents the decider weighs, in ``present`` column order
    present: np.ndarray  # (N, len(agents)) which of them voted
    weights: tuple[dict[str, float], ...]  # per face: agent -> share of the decision (empty if not explained)
    reasons: tuple[str, ...] = ()  # per face: why the label is "uncertain" ("" otherwise); () without a band
    # per face: agent -> how the face's context moved its weight (empty if not explained)
    context_shift: tuple[dict[str, float], ...] = ()

    @property
    def degraded(self) -> np.ndarray:
        """(N,) True where some agent the decider weighs did not vote."""
        return ~self.present.all(axis=1)


def decider_name(controller: Controller | None) -> str:
    """"ensemble" for a controller, "mean" without one."""
    return MEAN if controller is None else controller.name


def decider_version(controller: Controller | None) -> str:
    """The controller's version, or "mean" without one."""
    return MEAN if controller is None else controller.version


def decide(p_fake_by_agent: Mapping[str, Any], controller: Controller | None, *,
           context: np.ndarray | None = None, explain: bool = True, band: Borderline | None = None) -> Decisions:
    """The ensemble's decision on every face.

    Args:
        p_fake_by_agent: agent name -> (N,) calibrated p_fake (NaN = no vote on that face).
        controller: the bundle's controller, or None for the mean of the votes at 0.5.
        context: optional (N, K) case context in ``controller.config.context`` order (ignored
            by rules without context; NaN = unknown).
        explain: compute each agent's share of each decision (skip it for bulk scoring).
        band: the borderline band (`blackboard.borderline`): a p_fake inside it is labelled
            "uncertain" with its reason. None (scoring, fitting) keeps every label real/fake.

    Returns:
        The decisions; a face without any vote gets p_fake 0.5.
    """
    if controller is None:
        agents = list(p_fake_by_agent)
        votes, present = vote_matrix(p_fake_by_agent, agents)
        p = MeanCombiner(agents).predict_proba(votes, present) if agents else np.full(len(votes), 0.5)
        threshold = MEAN_THRESHOLD
        shares = tuple({a: (1.0 / max(int(row.sum()), 1)) if row[j] else 0.0 for j, a in enumerate(agents)}
                       for row in present) if explain else ()
        shifts = tuple({a: 0.0 for a in agents} for _ in present) if explain else ()
    else:
        agents = list(controller.agents)
        votes, present = vote_matrix(p_fake_by_agent, agents)
        p = controller.predict_proba(votes, present, context)
        threshold = float(controller.threshold)
        rows = [None if context is None else context[i] for i in range(len(votes))] if explain else []
        shares = tuple(controller.explain(votes[i], present[i], c) for i, c in enumerate(rows))
        shifts = tuple(controller.context_shift(votes[i], present[i], c) for i, c in enumerate(rows))
    p = np.asarray(p, dtype=np.float64)
    labels = np.where(p >= threshold, FAKE, REAL).astype(object)
    reasons: tuple[str, ...] = ()
    if band is not None:
        inside = band.inside(p, threshold)
        labels[inside] = UNCERTAIN
        reasons = tuple(band.reason(float(v), threshold) if hit else "" for v, hit in zip(p, inside))
    return Decisions(p_fake=p, labels=labels, threshold=threshold,
                     combiner=decider_name(controller), version=decider_version(controller),
                     agents=tuple(agents), present=present, weights=shares, reasons=reasons,
                     context_shift=shifts)


def decide_matrix(votes: np.ndarray, agents: Sequence[str], controller: Controller | None, *,
                  context: np.ndarray | None = None) -> Decisions:
    """:func:`decide` for an (N, A) vote matrix whose columns are ``agents`` (NaN = no vote)."""
    votes = np.asarray(votes, dtype=np.float64)
    if votes.ndim != 2 or votes.shape[1] != len(agents):
        raise ValueError(f"votes must have shape (N, {len(agents)}) for agents {list(agents)}, received {votes.shape}.")
    return decide({a: votes[:, j] for j, a in enumerate(agents)}, controller, context=context, explain=False)


# ------------------------------------------------------------------ context
def blur(crop: np.ndarray) -> float:
    """log(1 + variance of the Laplacian) of the grey crop resized to 224 px: low = blurry."""
    return sharpness(crop)


def context_for(controller: Controller | None, crops: Sequence[np.ndarray | None],
                contexts: Sequence[Mapping[str, float]] | None = None) -> np.ndarray | None:
    """The context ``controller`` reads, per face; None when it reads none or it cannot be had.

    Args:
        controller: the decider (None or a rule without context: no context).
        crops: the faces' crops, used when ``contexts`` is not given (each crop taken as given).
        contexts: each face's :func:`vision.context.face_context`, computed where the source
            image and the face's box were known (the board, the batch face stage).
    """
    names = () if controller is None else controller.context_names
    if not names:
        return None
    if contexts is not None:
        return context_matrix(contexts, names)
    if any(c is None for c in crops):
        return None
    return case_context(crops, names)


def case_context(crops: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """(N, K) named context features (``vision.context.CONTEXT_NAMES``) of crops taken as given.

    Raises:
        ValueError: an unknown feature name.
    """
    check_names(names)
    return context_matrix([face_context(c) for c in crops], names)

"""Synthetic vote streams with known per-class experts, shared by the controller tests.

Two one-class experts: when A says "fake" it is always right (it calls 60 % of the fakes fake,
confidently) and otherwise it murmurs "real" at the same weak confidence on any case; B is the
mirror image for "real". Each alone ranks only the cases it is sure of.
"""

from __future__ import annotations

from typing import Any

import numpy as np

AGENTS = ["A", "B"]


def expert_stream(n: int, seed: int, noisy: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(votes (n, 2), labels, context (n, 1)); ``noisy`` names an agent whose votes are pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sure = rng.random(n) < 0.6
    a = np.where((y == 1) & sure, rng.uniform(0.7, 0.95, n), rng.uniform(0.3, 0.49, n))
    b = np.where((y == 0) & sure, rng.uniform(0.05, 0.3, n), rng.uniform(0.51, 0.7, n))
    votes = np.stack([a, b], axis=1)
    if noisy is not None:
        votes[:, AGENTS.index(noisy)] = rng.uniform(0.01, 0.99, n)
    return votes, y, rng.normal(size=(n, 1))


def live_and_replay(n: int, seed: int, *, fit: int) -> tuple[Any, Any]:
    """(a log-odds controller fitted on the first ``fit`` votes of a stream of ``n``, the rest
    as its replay set): the serving state the feedback and borderline tests start from."""
    from blackboard.controllers.logodds import LogOddsController
    from blackboard.controllers.store import ReplaySet

    votes, y, _ = expert_stream(n, seed=seed)
    return LogOddsController(AGENTS).fit(votes[:fit], y[:fit]), ReplaySet(tuple(AGENTS), votes[fit:], y[fit:])

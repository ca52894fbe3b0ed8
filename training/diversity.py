"""How differently the agents err: what an ensemble can gain over its best member.

Each agent decides at its own threshold (the bundle's). From the resulting error table (N
faces x A agents, True = that agent is wrong on that face):

* **error correlation** of a pair: the Pearson correlation of their 0/1 error indicators (the
  phi coefficient, computed by ``sklearn.metrics.matthews_corrcoef``); near 1, they fail on the
  same faces and a vote between them adds little. None when an agent makes no error (or only
  errors), where a correlation is undefined.
* **double-fault rate** of a pair: the share of faces both get wrong.
* **oracle accuracy**: the share of faces at least one agent gets right, the ceiling for any
  combiner that picks one agent's answer per face; **all wrong** is its complement.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import matthews_corrcoef


def error_table(y: np.ndarray, votes: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """(N, A) True where agent j's decision ``votes[:, j] >= thresholds[j]`` is not label ``y``."""
    votes = np.asarray(votes, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if votes.ndim != 2 or votes.shape[0] != len(y) or votes.shape[1] != len(thresholds):
        raise ValueError(f"votes must be (N={len(y)}, A={len(thresholds)}), received {votes.shape}.")
    decided = votes >= np.asarray(thresholds, dtype=np.float64)[None, :]
    return decided.astype(int) != y[:, None]


def error_correlation(errors_a: np.ndarray, errors_b: np.ndarray) -> float | None:
    """Phi coefficient of two 0/1 error vectors; None when either is constant."""
    a, b = np.asarray(errors_a, dtype=int), np.asarray(errors_b, dtype=int)
    if a.min() == a.max() or b.min() == b.max():
        return None
    return float(matthews_corrcoef(a, b))


def diversity(y: np.ndarray, votes: np.ndarray, thresholds: Sequence[float], agents: Sequence[str]) -> dict[str, Any]:
    """The diversity section of metrics.json for one set of faces.

    Returns:
        {"n", "agent_error_rate": {agent: rate}, "pairs": [{"agents": [a, b], "error_correlation",
        "double_fault", "disagreement"}], "oracle_accuracy", "all_wrong", "mean_error_correlation",
        "mean_double_fault"}.
    """
    errors = error_table(y, votes, thresholds)
    if len(errors) == 0:
        raise ValueError("Cannot measure diversity on an empty set of faces.")
    pairs = []
    for i, j in combinations(range(len(agents)), 2):
        pairs.append({
            "agents": [agents[i], agents[j]],
            "error_correlation": error_correlation(errors[:, i], errors[:, j]),
            "double_fault": float(np.mean(errors[:, i] & errors[:, j])),
            # Different answers means exactly one of the two is wrong (two classes).
            "disagreement": float(np.mean(errors[:, i] ^ errors[:, j])),
        })
    correlations = [p["error_correlation"] for p in pairs if p["error_correlation"] is not None]
    all_wrong = float(np.mean(errors.all(axis=1)))
    return {
        "n": int(len(errors)),
        "agent_error_rate": {a: float(errors[:, j].mean()) for j, a in enumerate(agents)},
        "pairs": pairs,
        "oracle_accuracy": 1.0 - all_wrong,
        "all_wrong": all_wrong,
        "mean_error_correlation": float(np.mean(correlations)) if correlations else None,
        "mean_double_fault": float(np.mean([p["double_fault"] for p in pairs])) if pairs else None,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def pairs_markdown(section: dict[str, Any]) -> str:
    """Markdown table of every agent pair of one diversity section."""
    lines = ["| agents | error correlation | double fault | disagreement |", "|---|---|---|---|"]
    for pair in section["pairs"]:
        lines.append(f"| {' + '.join(pair['agents'])} | {_fmt(pair['error_correlation'])} "
                     f"| {_fmt(pair['double_fault'])} | {_fmt(pair['disagreement'])} |")
    return "\n".join(lines)


def summary_markdown(sections: dict[str, dict[str, Any]], best_accuracy: dict[str, float] | None = None) -> str:
    """One row per data set / transform: oracle accuracy, all wrong, mean correlation and double fault.

    Args:
        sections: name -> :func:`diversity` result.
        best_accuracy: name -> the best single agent's accuracy there (shown beside the oracle).
    """
    lines = ["| faces | n | oracle accuracy | best single accuracy | all wrong | mean error correlation "
             "| mean double fault |", "|---|---|---|---|---|---|---|"]
    for name, s in sections.items():
        best = None if best_accuracy is None else best_accuracy.get(name)
        lines.append(f"| {name} | {s['n']} | {_fmt(s['oracle_accuracy'])} | {_fmt(best)} | {_fmt(s['all_wrong'])} "
                     f"| {_fmt(s['mean_error_correlation'])} | {_fmt(s['mean_double_fault'])} |")
    return "\n".join(lines)

"""Selective risk: how accurate a system is on the cases it is most sure of.

A system that may abstain answers only the faces where it is most confident. Confidence here
is the distance of p_fake from the system's own threshold, |p - threshold|: the faces are
ranked by it, and for each share answered (coverage) the accuracy on the answered faces is
read off. A useful confidence makes the curve fall from left (few, sure answers) to right
(everything answered, the plain accuracy). Ties in confidence are broken by input order
(a stable sort), so the curve is reproducible.

``abstained`` (optional) marks faces the system itself declined (the ensemble's "uncertain"
answers); they give one more point: the accuracy on the rest at the share it answered.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ABSTAIN_RATE = 0.10  # metrics.json's headline: accuracy when the least sure 10 % are not answered
COVERAGE_GRID = tuple(round(0.05 * k, 2) for k in range(1, 21))  # 5 %, 10 %, ..., 100 % answered


def _ranked_correct(y: np.ndarray, p: np.ndarray, threshold: float) -> np.ndarray:
    """Right (True) or wrong per face, most confident first."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0 or len(y) != len(p):
        raise ValueError(f"labels and scores must be non-empty and of equal length, received {len(y)} and {len(p)}.")
    order = np.argsort(-np.abs(p - threshold), kind="stable")
    return ((p[order] >= threshold).astype(int) == y[order])


def answered_count(n: int, coverage: float) -> int:
    """Faces answered at ``coverage`` of ``n``: at least one, rounded up so 90 % of 15 answers 14."""
    return max(1, min(n, math.ceil(round(coverage * n, 9))))


def accuracy_at_coverage(y: np.ndarray, p: np.ndarray, threshold: float, coverage: float) -> float:
    """Accuracy on the ``coverage`` share of faces most confidently answered."""
    correct = _ranked_correct(y, p, threshold)
    return float(correct[:answered_count(len(correct), coverage)].mean())


def selective_curve(y: np.ndarray, p: np.ndarray, threshold: float, *,
                    abstained: np.ndarray | None = None) -> dict[str, Any]:
    """metrics.json's selective-risk entry of one system.

    Returns:
        {"coverage": grid, "accuracy": accuracy at each grid point, "accuracy_at_10pct_abstention",
        "full_accuracy", and with ``abstained``: "own_abstention": {"answered_share", "accuracy"}}.
    """
    correct = _ranked_correct(y, p, threshold)
    n = len(correct)
    running = np.cumsum(correct) / np.arange(1, n + 1)  # accuracy of the k most confident
    out: dict[str, Any] = {
        "coverage": list(COVERAGE_GRID),
        "accuracy": [float(running[answered_count(n, c) - 1]) for c in COVERAGE_GRID],
        "accuracy_at_10pct_abstention": float(running[answered_count(n, 1.0 - ABSTAIN_RATE) - 1]),
        "full_accuracy": float(running[-1]),
    }
    if abstained is not None:
        keep = ~np.asarray(abstained, dtype=bool)
        decided = (np.asarray(p)[keep] >= threshold).astype(int) == np.asarray(y).astype(int)[keep]
        out["own_abstention"] = {"answered_share": float(keep.mean()),
                                 "accuracy": float(decided.mean()) if keep.any() else None}
    return out


def plot_selective(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path, *,
                   own: dict[str, dict[str, Any]] | None = None) -> str:
    """Accuracy of answered faces vs share answered, one line per system (full resolution).

    Args:
        curves: system -> (y, p_fake, threshold).
        path: PNG to write (atomically).
        own: system -> its "own_abstention" point, drawn as a marker.
    """
    from matplotlib.figure import Figure

    from training.report import save_figure

    fig = Figure(figsize=(6.5, 5))
    ax = fig.add_subplot()
    for name, (y, p, threshold) in curves.items():
        correct = _ranked_correct(y, p, threshold)
        k = np.arange(1, len(correct) + 1)
        ax.plot(k / len(correct), np.cumsum(correct) / k, label=name, linewidth=1.2)
    for name, point in (own or {}).items():
        if point.get("accuracy") is not None:
            ax.plot([point["answered_share"]], [point["accuracy"]], marker="*", markersize=12, linestyle="none",
                    label=f"{name}: its own 'uncertain' answers withheld")
    ax.axvline(1.0 - ABSTAIN_RATE, linestyle=":", color="grey", linewidth=1)
    ax.set_xlabel("share of faces answered (most confident first, |p - threshold|)")
    ax.set_ylabel("accuracy on the answered faces")
    ax.set_xlim(0, 1.01)
    ax.set_title("Selective risk")
    ax.legend(loc="lower left", fontsize="small")
    return save_figure(fig, path)


def selective_markdown(section: dict[str, dict[str, Any]], shown: Sequence[float] = (0.5, 0.8, 0.9, 1.0)) -> str:
    """Markdown table: each system's accuracy at a few coverages, and at 10 % abstention."""
    header = "| system | " + " | ".join(f"{c:.0%} answered" for c in shown) + " | own 'uncertain' withheld |"
    lines = [header, "|" + "---|" * (len(shown) + 2)]
    for name, s in section.items():
        by_cov = dict(zip(s["coverage"], s["accuracy"]))
        own = s.get("own_abstention")
        own_text = "n/a" if not own or own["accuracy"] is None else (
            f"{own['accuracy']:.4f} at {own['answered_share']:.0%} answered")
        lines.append(f"| {name} | " + " | ".join(f"{by_cov[round(c, 2)]:.4f}" for c in shown) + f" | {own_text} |")
    return "\n".join(lines)

"""Trust per agent per context bin: the table and the plot the evaluate report shows.

For the binned controller (:mod:`blackboard.controllers.ctxbins`) the bins are its own quantile
bins; for the smooth log-odds controller with context they are "low / mean / high", one standard
deviation either side of the fitting data's mean of each feature. The number shown for an agent
is its log-odds weight averaged over the two classes it can speak for (the controller's trust
in it, in that condition); a rule without context has one column per agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from blackboard.controllers.base import Controller, agent_class_table


def trust_by_context(controller: Controller) -> dict[str, list[dict[str, Any]]]:
    """feature -> rows of {"bin", "label", "weights": agent -> class -> weight} ({} without context)."""
    if hasattr(controller, "bin_trust"):
        return {name: [{"bin": r["bin"], "label": f"{r['low']:.2f}..{r['high']:.2f}", "weights": r["weights"]}
                       for r in rows] for name, rows in controller.bin_trust().items()}
    names = tuple(getattr(controller, "context_names", ()))
    if not names or not hasattr(controller, "v"):
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for k, name in enumerate(names):
        rows = []
        for b, (z, label) in enumerate(((-1.0, "low"), (0.0, "mean"), (1.0, "high"))):
            w = controller.w + z * controller.v[k]
            value = controller.ctx_mean[k] + z * controller.ctx_std[k]
            rows.append({"bin": b, "label": f"{label} ({value:.2f})",
                         "weights": agent_class_table(controller.agents, w)})
        out[name] = rows
    return out


def leading_agents(table: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """feature -> the most trusted agent in each bin (the issue's "different leader" check)."""
    return {name: [max(r["weights"], key=lambda a: np.mean(list(r["weights"][a].values()))) for r in rows]
            for name, rows in table.items()}


def plot_trust_by_context(controller: Controller, path: str | Path) -> Path | None:
    """Writes a PNG of grouped bars (one panel per feature, bins on x, one bar per agent).

    Returns:
        The path written, or None when the controller has no context to plot.
    """
    import matplotlib

    matplotlib.use("Agg")  # reports are written headless
    import matplotlib.pyplot as plt

    from agents.atomic import atomic_write

    table = trust_by_context(controller)
    if not table:
        return None
    agents = list(controller.agents)
    fig, axes = plt.subplots(1, len(table), figsize=(4.2 * len(table), 3.4), squeeze=False)
    width = 0.8 / len(agents)
    for ax, (name, rows) in zip(axes[0], table.items()):
        x = np.arange(len(rows))
        for i, agent in enumerate(agents):
            ax.bar(x + (i - (len(agents) - 1) / 2) * width,
                   [np.mean(list(r["weights"][agent].values())) for r in rows], width, label=agent)
        ax.set_xticks(x, [r["label"] for r in rows], fontsize=7)
        ax.set_title(name)
        ax.axhline(0.0, color="grey", linewidth=0.6)
    axes[0][0].set_ylabel("log-odds weight (trust)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"trust per agent per context bin - controller {controller.version}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path

"""The forensic agent's heat-map tile: a labelled chart of what each feature group said.

The forensic agent reads whole-crop statistics (colour, spectrum, noise, ...), not places, so its
tile is no map: one horizontal bar per feature group, its contribution to the log-odds of
"fake" (``ForensicModel.explain``), red to the right for a group that pushed towards fake, green
to the left for one that pushed towards real, with a title, axis labels and a legend. Drawn
with matplotlib's object API (``Figure`` and the Agg canvas: no pyplot state, safe on the
replica's worker threads).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

# Matplotlib colours matching the verdict colours of `vision.annotate` (red fake, green real).
FAKE_COLOUR = "#e62828"
REAL_COLOUR = "#3cb43c"
# Default tile: as tall as a Grad-CAM tile (224 px) is wide, and wide enough for the groups' names.
WIDTH, HEIGHT = 448, 336


def contribution_figure(contributions: Mapping[str, float], *, width: int = WIDTH, height: int = HEIGHT):
    """The chart as a matplotlib ``Figure`` (on an Agg canvas) of ``width`` x ``height`` px.

    Args:
        contributions: feature group -> contribution to the calibrated log-odds of fake.
        width: image width in pixels (at least 224).
        height: image height in pixels (at least 224).

    Raises:
        ValueError: too small an image, or a contribution that is not a finite number.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if int(width) < 224 or int(height) < 224:
        raise ValueError(f"the chart must be at least 224x224 px to be read, received {width}x{height}.")
    values = {str(k): float(v) for k, v in contributions.items()}
    bad = sorted(k for k, v in values.items() if not np.isfinite(v))
    if bad:
        raise ValueError(f"contributions must be finite numbers; received NaN or infinity for {bad}.")
    dpi = 100
    fig = Figure(figsize=(int(width) / dpi, int(height) / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Largest effect on top: the groups that mattered most are read first.
    order = sorted(values, key=lambda k: abs(values[k]))
    if order:
        shown = [values[k] for k in order]
        ax.barh(order, shown, color=[FAKE_COLOUR if v > 0 else REAL_COLOUR for v in shown])
        peak = max(max(abs(v) for v in shown), 1e-3)
        ax.set_xlim(-1.15 * peak, 1.15 * peak)
    else:
        ax.text(0.5, 0.5, "no feature groups", ha="center", va="center", transform=ax.transAxes)
    ax.axvline(0.0, color="#333333", linewidth=0.8)
    ax.set_title("forensic: what each feature group said", fontsize=10)
    ax.set_xlabel("contribution to the log-odds of fake", fontsize=9)
    ax.set_ylabel("feature group", fontsize=9)
    ax.tick_params(labelsize=8)
    # Below the axes, so it never covers a bar.
    ax.legend(handles=[Patch(color=FAKE_COLOUR, label="pushes towards fake"),
                       Patch(color=REAL_COLOUR, label="pushes towards real")],
              fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    # Fixed margins (room for the groups' names, the axis label and the legend): laying the figure
    # out to fit (tight_layout) costs as much again as drawing it.
    fig.subplots_adjust(left=0.24, right=0.97, top=0.91, bottom=0.27)
    return fig


def contribution_chart(contributions: Mapping[str, float], *, width: int = WIDTH,
                       height: int = HEIGHT) -> np.ndarray:
    """:func:`contribution_figure` drawn as an RGB uint8 image of ``(height, width, 3)``."""
    fig = contribution_figure(contributions, width=width, height=height)
    fig.canvas.draw()
    return np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])

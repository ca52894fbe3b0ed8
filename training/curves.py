"""Training-curve plots from Keras CSV logs (matplotlib, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import pandas as pd  # noqa: E402

from agents.atomic import atomic_write


def plot_curves(log_csv: str | os.PathLike[str], out_png: str | os.PathLike[str], *, title: str = "") -> Path:
    """Plots loss and accuracy (train and val) per epoch from a `keras.callbacks.CSVLogger` file."""
    log = pd.read_csv(log_csv)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = log["epoch"] + 1
    for ax, key in zip(axes, ("loss", "accuracy")):
        if key in log:
            ax.plot(epochs, log[key], marker="o", label=f"train {key}")
        if f"val_{key}" in log:
            ax.plot(epochs, log[f"val_{key}"], marker="o", label=f"val {key}")
        if key == "accuracy" and "val_auc" in log:
            ax.plot(epochs, log["val_auc"], marker="s", label="val ROC AUC")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:  # e.g. the forensic agent: no per-epoch log for this panel
            ax.text(0.5, 0.5, f"no {key} per epoch", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    try:
        atomic_write(out_png, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)
    return out_png

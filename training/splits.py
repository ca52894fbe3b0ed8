"""What every trainer (Keras agents and forensic) shares: the rows and labels of the train and
val splits of a manifest, and the reuse of a run that finished before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from agents.labels import label_to_index

if TYPE_CHECKING:
    from training.train import TrainConfig


def load_split(manifest: pd.DataFrame, split: str, *, limit: int | None, seed: int) -> pd.DataFrame:
    """Rows of one split; `limit` keeps whole groups (never part of a group) up to about that many."""
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        raise ValueError(f"The manifest has no {split!r} rows; build it with `fakeface dataset build`.")
    if limit is not None and len(rows) > limit:
        groups = rows["group"].drop_duplicates().sample(frac=1.0, random_state=seed)
        sizes = rows.groupby("group").size()
        keep = groups[sizes.loc[groups].cumsum().to_numpy() <= limit]
        rows = rows[rows["group"].isin(set(keep))]
    return rows.reset_index(drop=True)


def train_val(manifest: pd.DataFrame, config: "TrainConfig") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, val rows), each cut to the config's image limit by whole groups."""
    return (load_split(manifest, "train", limit=config.max_train_images, seed=config.seed),
            load_split(manifest, "val", limit=config.max_val_images, seed=config.seed))


def split_labels(rows: pd.DataFrame) -> np.ndarray:
    """The class index of each row's label (int64, in row order)."""
    return np.array([label_to_index(v) for v in rows["label"]], dtype=np.int64)


def finished_meta(name: str, agent_dir: Path, model_path: Path, *, verbose: int) -> dict[str, Any] | None:
    """The stored ``meta.json`` of an agent whose training finished in ``agent_dir`` before (its
    model file beside it), so a rerun reuses it; None when there is none."""
    meta_path = agent_dir / "meta.json"
    if not (meta_path.is_file() and model_path.is_file()):
        return None
    if verbose:
        print(f"[{name}] reusing finished training in {agent_dir}")
    return json.loads(meta_path.read_text())

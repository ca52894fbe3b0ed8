"""The rows of one split of a manifest, shared by every trainer (Keras agents and forensic)."""

from __future__ import annotations

import pandas as pd


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

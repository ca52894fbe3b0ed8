"""Writes mixed.csv: the DFDC group split plus the train splits of the two other fake sources.

`dfdc-extra.csv` (DFDC face swaps, two manipulations per source video) is the base. The
`gan-faces/` (FFHQ vs StyleGAN) and `lfw-swaps/` (LFW vs 3D-model face swaps) folders ship their
own `split` column; their `train` rows are divided into train and val here by group (stratified
by label, seeded), and their `test` rows keep the split name `test`, so no training or tuning
step ever reads them. Groups never sit on two sides (checked).

    python benchmarks/splits/make_mixed.py [--data ../shared/data] [--val 0.15]
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from split_files import SHARED_DATA, split_parser, write_split

SOURCES = ("gan-faces", "lfw-swaps")


def split_source(folder: Path, out_dir: Path, *, val: float, seed: int) -> pd.DataFrame:
    """One source's rows with train/val/test splits and paths relative to ``out_dir``."""
    meta = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    rows = meta[["path", "label", "group", "split"]].copy()
    # Group names are per source; prefix them so two sources can never share a group by accident.
    rows["group"] = folder.name + ":" + rows["group"]
    train = rows["split"] == "train"
    folds = StratifiedGroupKFold(n_splits=max(2, round(1 / val)), shuffle=True, random_state=seed)
    _, val_idx = next(folds.split(rows[train], rows.loc[train, "label"], rows.loc[train, "group"]))
    rows.loc[rows.index[train][val_idx], "split"] = "val"
    rows["path"] = [os.path.relpath((folder / p).resolve(), out_dir) for p in rows["path"]]
    return rows


def main() -> int:
    parser = split_parser(__doc__, base="dfdc-extra.csv", base_help="the DFDC group split", out="mixed.csv")
    parser.add_argument("--data", default=str(SHARED_DATA), help="folder holding gan-faces/ and lfw-swaps/")
    parser.add_argument("--val", type=float, default=0.15, help="share of each source's train groups for val")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out_dir = Path(args.out).resolve().parent
    base = pd.read_csv(args.base, dtype=str, keep_default_na=False)[["path", "label", "group", "split"]]
    parts = [base] + [split_source(Path(args.data) / name, out_dir, val=args.val, seed=args.seed)
                      for name in SOURCES]
    merged = pd.concat(parts, ignore_index=True)
    write_split(args.out, merged)
    print(f"{args.out}: {len(merged)} rows")
    source = merged["path"].str.extract(r"data/([^/]+)/")[0]
    print(merged.assign(source=source).groupby(["source", "split", "label"]).size().to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

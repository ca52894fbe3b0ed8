"""Writes dfdc-extra.csv: the dfdc.csv group split plus the extra fakes of the same groups.

`../shared/data/dfdc-extra-fakes` holds a second manipulation of the source videos of `dfdc/`,
with the same `group` values. Each extra fake takes the split of its group in dfdc.csv, so a
group stays on one side of every split across both folders. Extra fakes of a group that
dfdc.csv does not list are left out (and counted).

    python benchmarks/splits/make_dfdc_extra.py [--extra ../shared/data/dfdc-extra-fakes]
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from split_files import SHARED_DATA, split_parser, write_split


def main() -> int:
    parser = split_parser(__doc__, base="dfdc.csv", base_help="the group split to extend", out="dfdc-extra.csv")
    parser.add_argument("--extra", default=str(SHARED_DATA / "dfdc-extra-fakes"),
                        help="folder with metadata.csv and fake/")
    args = parser.parse_args()
    base = pd.read_csv(args.base, dtype=str, keep_default_na=False)
    extra_dir = Path(args.extra)
    meta = pd.read_csv(extra_dir / "metadata.csv", dtype=str, keep_default_na=False)
    split_of = base.drop_duplicates("group").set_index("group")["split"]
    known = meta["group"].isin(split_of.index)
    out_dir = Path(args.out).resolve().parent
    rows = pd.DataFrame({
        # Relative to the CSV's folder, like dfdc.csv, so the file works from any clone location.
        "path": [os.path.relpath((extra_dir / p).resolve(), out_dir) for p in meta.loc[known, "path"]],
        "label": meta.loc[known, "label"].to_numpy(),
        "group": meta.loc[known, "group"].to_numpy(),
        "split": split_of.loc[meta.loc[known, "group"]].to_numpy(),
    })
    # write_split checks the invariant in code, not just by construction.
    merged = pd.concat([base[["path", "label", "group", "split"]], rows], ignore_index=True)
    write_split(args.out, merged)
    print(f"{args.out}: {len(merged)} rows ({len(rows)} extra fakes, {int((~known).sum())} without a known group)")
    print(merged.groupby(["split", "label"]).size().to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Writes dfdc-test-500.csv: a fixed, seeded subset of dfdc-test for `fakeface evaluate --degrade all`.

Scoring all 2 000 dfdc-test crops through every benchmark transform takes hours on the 2-core
box (each of the two screenshot compositions runs MTCNN on a whole 720p-2340p screen), so the
degrade benchmark uses ``--per-class`` real and fake crops of dfdc-test drawn with
``numpy.random.default_rng(--seed)`` from its metadata.csv (rows sorted by path first, so the
draw does not depend on file order). A manifest input also needs a fitting split: ``--val``
crops per class of the ``val`` split of dfdc.csv (the training pool; no dfdc-test group is
there) are added as ``val`` rows. The shipped bundle stores its baselines and controller, so they
are only scored, never fitted on.

    python benchmarks/splits/make_dfdc_test_subset.py [--data ../shared/data] [--per-class 250]
    python benchmarks/splits/make_dfdc_test_subset.py --first 10 --of dfdc-test-200.csv

``--first N --of CSV`` keeps the first N test rows per class of an earlier subset (and its val
rows): the screenshot compositions run MTCNN on whole screens and fit only a smaller set on a
busy 2-core box, and their copies are the same as in the larger run (seeds follow the path).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from agents.atomic import atomic_write_text
from agents.command_line import command_parser
from split_files import HERE, SHARED_DATA


def pick(rows: pd.DataFrame, per_class: int, rng: np.random.Generator) -> pd.DataFrame:
    """``per_class`` rows of each label, drawn without replacement from rows sorted by path."""
    parts = []
    for label in ("real", "fake"):
        pool = rows[rows["label"] == label].sort_values("path").reset_index(drop=True)
        if len(pool) < per_class:
            raise SystemExit(f"only {len(pool)} {label} rows, {per_class} asked for")
        parts.append(pool.iloc[np.sort(rng.choice(len(pool), per_class, replace=False))])
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    parser = command_parser(None, __doc__, show_defaults=False)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--val", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=0, help="keep the first N test rows per class of --of")
    parser.add_argument("--of", default="", help="an earlier subset in this folder (with --first)")
    args = parser.parse_args()
    if args.first:
        rows = pd.read_csv(HERE / args.of, dtype=str, keep_default_na=False)
        test = rows[rows["split"] == "test"].groupby("label", sort=False).head(args.first)
        out = HERE / f"dfdc-test-{len(test)}.csv"
        atomic_write_text(out, pd.concat([test, rows[rows["split"] != "test"]]).to_csv(index=False))
        print(f"{out}: {len(test)} test rows from {args.of}")
        return
    rng = np.random.default_rng(args.seed)
    folder = args.data / "dfdc-test"
    meta = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    test = pick(meta, args.per_class, rng).assign(split="test")
    # Not resolved: ../shared is a link beside each checkout, and the paths must work in all of them.
    test["path"] = [os.path.relpath(folder / p, HERE) for p in test["path"]]
    pool = pd.read_csv(HERE / "dfdc.csv", dtype=str, keep_default_na=False)
    val = pick(pool[pool["split"] == "val"], args.val, rng)
    rows = pd.concat([test[["path", "label", "group", "split"]], val[["path", "label", "group", "split"]]])
    out = HERE / f"dfdc-test-{2 * args.per_class}.csv"
    atomic_write_text(out, rows.to_csv(index=False))
    print(f"{out}: {len(test)} test rows, {len(val)} val rows")


if __name__ == "__main__":
    main()

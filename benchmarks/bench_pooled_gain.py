"""Does the ensemble beat its best agent on the pooled screenshot benchmark? A paired bootstrap by source face.

Reads the `degraded_predictions.csv` that `fakeface evaluate --degrade ...` writes (every copy of
every face, one row per copy and transform) and compares two systems' AUC over all copies pooled.
Each resample draws source faces with replacement and keeps all copies of a drawn face, so copies
of one face never split (issue 22's rule); both systems are scored on the same resamples.

    PYTHONPATH=. python benchmarks/bench_pooled_gain.py \
        --predictions benchmarks/results/eval-dfdc-test-500-screenshots-2026-12-03-night/degraded_predictions.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import bench_parser, setup, write_json

setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from training.grouped_bootstrap import interval, source_counts, weighted_aucs  # noqa: E402
from training.metrics import BootstrapConfig  # noqa: E402


def paired_gain(rows: pd.DataFrame, a: str, b: str, config: BootstrapConfig) -> dict:
    """AUC of system ``a`` minus that of ``b`` over the pooled rows, with `evaluate`'s bootstrap by
    source face (`training.grouped_bootstrap`: a face's copies are drawn together)."""
    rows = rows.dropna(subset=[a, b])
    faces = rows["path"].astype("category").cat.codes.to_numpy()
    weights = source_counts(int(faces.max()) + 1, config)[:, faces]  # each copy weighs as its face
    y = rows["label"].to_numpy()
    deltas = weighted_aucs(y, rows[a].to_numpy(), weights) - weighted_aucs(y, rows[b].to_numpy(), weights)
    deltas = deltas[np.isfinite(deltas)]
    # Two-sided: how often the resampled gain falls on the other side of zero.
    p = 2 * min((deltas <= 0).mean(), (deltas >= 0).mean())
    auc_a, auc_b = roc_auc_score(y, rows[a]), roc_auc_score(y, rows[b])
    return {"systems": [a, b], "copies": int(len(rows)), "faces": int(faces.max()) + 1,
            "auc": {a: float(auc_a), b: float(auc_b)}, "delta_auc": float(auc_a - auc_b),
            "delta_auc_ci": interval(deltas, config), "p_value": float(max(p, 1.0 / config.n_resamples)),
            "resamples": config.n_resamples, "seed": config.seed}


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="pooled_gain.json")
    parser.add_argument("--predictions", type=Path, required=True, help="degraded_predictions.csv of an evaluation")
    parser.add_argument("--system", default="ensemble", help="system to test (a column of the CSV)")
    parser.add_argument("--against", default="forensic", help="system to compare with (a column of the CSV)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    rows = pd.read_csv(args.predictions)
    rows = rows[rows["transform"] != "clean"] if "transform" in rows else rows
    result = {"predictions": str(args.predictions),
              **paired_gain(rows, args.system, args.against,
                              BootstrapConfig(n_resamples=args.resamples, seed=args.seed))}
    write_json(args.out, result, echo=True)


if __name__ == "__main__":
    main(sys.argv[1:])

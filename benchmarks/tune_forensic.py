"""Choosing the forensic agent's boosting settings and feature groups on val (clean + degraded).

Usage:
    python benchmarks/tune_forensic.py --manifest benchmarks/splits/mixed.csv \\
        --work runs/forensic/work [--max-train-images 12000 --max-val-images 4000]

Rebuilds the training run's rows exactly as `fakeface train` does (the same split limits and
degraded copies), reads their features from the run's cache (computing any missing), and fits
the agent's gradient boosting with each candidate setting, with the training's group-held-out
early stopping. Reports val ROC AUC on all val rows, on the clean and the degraded copies,
and per source folder (dfdc, gan-faces, lfw-swaps): test sets are never touched. Also fits the
default settings on the first feature set's groups only (version 1's), to separate what the
new features add from what degraded training adds. Saves benchmarks/results/forensic_tuning.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness import REPO, bench_parser, setup, stamp, write_json

setup(tf_log_level="3")

import numpy as np  # noqa: E402

V1_GROUPS = ("colour", "saturation", "spectrum", "noise", "sharpness", "jpeg")
CANDIDATES = {
    "default": {},
    "lr0.05-63leaves": {"learning_rate": 0.05, "max_leaf_nodes": 63, "min_samples_leaf": 50},
    "255leaves-msl50": {"max_leaf_nodes": 255, "min_samples_leaf": 50},
    "31leaves-l2_5": {"max_leaf_nodes": 31, "l2_regularization": 5.0, "min_samples_leaf": 40},
}


def main(argv: list[str] | None = None) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from agents.forensic import DEFAULT_PARAMS
    from agents.forensic_features import CONTRACT, GROUPS
    from training.dataset import read_manifest
    from training.splits import load_split, split_labels
    from training.forensic_cache import FeatureCache
    from training.train_forensic import _seeds, holdout_plan, with_degraded_copies

    p = bench_parser(__doc__)
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--work", required=True, type=Path, help="the training work dir (its feature cache)")
    p.add_argument("--max-train-images", type=int, default=None)
    p.add_argument("--max-val-images", type=int, default=None)
    p.add_argument("--copies", type=int, default=1, help="degraded copies per image (as trained)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, help="comma-separated candidate names (default: all)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/forensic_tuning.json")
    args = p.parse_args(argv)

    manifest = read_manifest(args.manifest)
    train = with_degraded_copies(load_split(manifest, "train", limit=args.max_train_images, seed=args.seed),
                                 args.copies, args.seed)
    val = with_degraded_copies(load_split(manifest, "val", limit=args.max_val_images, seed=args.seed),
                               args.copies, args.seed)
    cache = FeatureCache.for_work_dir(args.work, CONTRACT)
    x_train = cache.features(train["path"].tolist(), degrade_seeds=_seeds(train))
    x_val = cache.features(val["path"].tolist(), degrade_seeds=_seeds(val))
    y_train, y_val = split_labels(train), split_labels(val)
    fit, stop, weights = holdout_plan(y_train, train["group"].tolist(), class_weights=True, seed=args.seed)
    clean = val["degrade_seed"].isna().to_numpy()
    source = val["path"].str.extract(r"/(dfdc|gan-faces|lfw-swaps)[/-]")[0].fillna("dfdc").to_numpy()
    parts = {"all": np.ones(len(val), bool), "clean": clean, "degraded": ~clean,
             **{s: source == s for s in ("dfdc", "gan-faces", "lfw-swaps")}}

    all_cols = list(range(x_train.shape[1]))
    v1_cols = sorted(i for g in V1_GROUPS for i in GROUPS[g])
    runs = [(name, params, all_cols) for name, params in CANDIDATES.items()] + [("default-v1-groups", {}, v1_cols)]
    if args.only:
        keep = set(args.only.split(","))
        runs = [r for r in runs if r[0] in keep]
    results = {}
    for name, params, cols in runs:
        start = time.perf_counter()
        model = HistGradientBoostingClassifier(**{**DEFAULT_PARAMS, "random_state": args.seed, **params})
        xt = x_train[:, cols]
        model.fit(xt[fit], y_train[fit], sample_weight=weights[fit], X_val=xt[stop], y_val=y_train[stop],
                  sample_weight_val=weights[stop])
        p_val = model.predict_proba(x_val[:, cols])[:, 1]
        aucs = {k: float(roc_auc_score(y_val[m], p_val[m])) for k, m in parts.items()
                if m.any() and len(set(y_val[m])) == 2}
        results[name] = {"params": params, "features": len(cols), "iterations": int(model.n_iter_),
                         "fit_seconds": round(time.perf_counter() - start, 1), "val_auc": aucs}
        print(f"{name:<20} {len(cols):>4} feats {model.n_iter_:>4} it " +
              " ".join(f"{k} {v:.4f}" for k, v in aucs.items()) + f"  ({results[name]['fit_seconds']:.0f}s)",
              flush=True)
    out = {**stamp(argv or sys.argv[1:]),
           "n": {"train_rows": int(len(train)), "val_rows": int(len(val))}, "results": results}
    write_json(args.out, out)


if __name__ == "__main__":
    main()

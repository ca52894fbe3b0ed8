"""The forensic agent's feature speed and its per-group ablation.

Usage:
    python benchmarks/bench_forensic.py speed [--data ../shared/data/dfdc-test] [--n 300]
    python benchmarks/bench_forensic.py ablation --manifest benchmarks/splits/dfdc-extra.csv \
        --work runs/forensic_bundle.work

``speed`` times `forensic_features.image_features` per prepared 224 px crop on one core
(OpenCV single-threaded) and saves benchmarks/results/forensic_speed.json; target <= 5 ms.
``ablation`` fits the agent's gradient boosting (its settings and group-held-out early
stopping, as in training) on the manifest's train split with each feature group alone, all
groups, and (with --leave-one-out) all groups but one, and reports ROC AUC on val (and on the
manifest's internal test split for all groups), saved to benchmarks/results/forensic_ablation.json. Features come from (and go to) the training
feature cache in WORK, so this reuses an earlier `fakeface train` run's extraction.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from harness import REPO, RESULTS, bench_parser, setup, stamp, write_json

setup(tf_log_level="3")

import numpy as np  # noqa: E402


def speed(args: argparse.Namespace) -> None:
    import cv2

    from agents.forensic_features import CONTRACT, image_features
    from agents.preprocessing import prepare_batch
    from vision.media import read_image

    cv2.setNumThreads(1)
    data = Path(args.data)
    files = sorted(data.glob("*/*.jpg"))[: args.n] if data.is_dir() else []
    if files:
        crops, source = [read_image(p) for p in files], str(data)
    else:  # no data folder: smooth random crops of the same size
        rng = np.random.default_rng(0)
        crops = [cv2.GaussianBlur(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), (0, 0), 2)
                 for _ in range(args.n)]
        source = "synthetic"
    prepared = prepare_batch(crops, CONTRACT)
    image_features(prepared[0])  # warm the per-size geometry
    times = []
    cpu_start = time.process_time()  # CPU time is what a shared machine's load cannot inflate
    for x in prepared:
        start = time.perf_counter()
        image_features(x)
        times.append((time.perf_counter() - start) * 1000.0)
    cpu_ms = (time.process_time() - cpu_start) * 1000.0 / len(prepared)
    times = np.array(times)
    result = {**stamp(), "data": source, "n": len(times), "ms_per_crop_median": float(np.median(times)),
              "ms_per_crop_p90": float(np.percentile(times, 90)), "ms_per_crop_mean": float(times.mean()),
              "cpu_ms_per_crop": cpu_ms, "target_ms": 5.0, "load_average_1min": os.getloadavg()[0]}
    print(f"forensic features: wall median {result['ms_per_crop_median']:.2f} ms, p90 "
          f"{result['ms_per_crop_p90']:.2f} ms, CPU {cpu_ms:.2f} ms per 224 px crop on one core "
          f"({len(times)} crops, load {result['load_average_1min']:.1f})")
    write_json(args.out or RESULTS / "forensic_speed.json", result)


def ablation(args: argparse.Namespace) -> None:
    from sklearn.metrics import roc_auc_score

    from sklearn.ensemble import HistGradientBoostingClassifier

    from agents.forensic import DEFAULT_PARAMS
    from agents.forensic_features import CONTRACT, GROUPS
    from training.dataset import read_manifest
    from training.forensic_cache import FeatureCache
    from training.train_forensic import holdout_plan

    manifest = read_manifest(args.manifest)
    cache = FeatureCache.for_work_dir(args.work, CONTRACT)
    splits = {s: manifest[manifest["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    x = {s: cache.features(rows["path"].tolist(), workers=args.workers) for s, rows in splits.items()}
    y = {s: (rows["label"] == "fake").to_numpy().astype(int) for s, rows in splits.items()}
    fit, stop, weights = holdout_plan(y["train"], splits["train"]["group"].tolist(), class_weights=True, seed=args.seed)
    names = list(GROUPS)
    configs = {"all": names, **{f"only {g}": [g] for g in names}}
    if args.leave_one_out:
        configs.update({f"all but {g}": [h for h in names if h != g] for g in names})
    rows = {}
    for label, use in configs.items():
        cols = sorted(i for g in use for i in GROUPS[g])
        start = time.perf_counter()
        # The agent's own estimator settings and holdout, on a subset of the feature columns.
        model = HistGradientBoostingClassifier(**{**DEFAULT_PARAMS, "random_state": args.seed})
        xt = x["train"][:, cols]
        model.fit(xt[fit], y["train"][fit], sample_weight=weights[fit], X_val=xt[stop], y_val=y["train"][stop],
                  sample_weight_val=weights[stop])
        row = {"groups": use, "features": len(cols), "iterations": int(model.n_iter_),
               "fit_seconds": round(time.perf_counter() - start, 1),
               "val_auc": float(roc_auc_score(y["val"], model.predict_proba(x["val"][:, cols])[:, 1]))}
        if label == "all" and len(y["test"]):
            row["internal_test_auc"] = float(roc_auc_score(y["test"], model.predict_proba(x["test"][:, cols])[:, 1]))
        rows[label] = row
        print(f"{label:<22} {len(cols):>4} features  val AUC {row['val_auc']:.4f}  ({row['iterations']} iterations, "
              f"{row['fit_seconds']:.0f}s)" + (f"  internal test AUC {row['internal_test_auc']:.4f}"
                                              if "internal_test_auc" in row else ""), flush=True)
    result = {**stamp(), "manifest": str(args.manifest),
              "n": {s: int(len(v)) for s, v in y.items()}, "seed": args.seed, "results": rows}
    write_json(args.out or RESULTS / "forensic_ablation.json", result)


def main() -> None:
    parser = bench_parser(__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed", help="ms per crop of the feature extractor on one core")
    p.add_argument("--data", default=str(REPO.parent / "shared/data/dfdc-test"))
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--out", default=None)
    p = sub.add_parser("ablation", help="val ROC AUC per feature group, all groups and all but one")
    p.add_argument("--manifest", required=True)
    p.add_argument("--work", required=True, help="training work dir holding (or to hold) the feature cache")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--leave-one-out", action="store_true", help="also fit all groups but one, for each group")
    p.add_argument("--out", default=None)
    args = parser.parse_args()
    {"speed": speed, "ablation": ablation}[args.command](args)


if __name__ == "__main__":
    main()

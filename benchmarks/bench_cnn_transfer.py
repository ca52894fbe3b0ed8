"""Does a trained agent carry over? Its scores on held-out DFDC, unseen fake kinds and screenshots.

Usage:
    python benchmarks/bench_cnn_transfer.py --bundle DIR [--agents custom,vgg16] [--limit N] [--degrade a,b]
        [--out benchmarks/results/cnn_transfer.json]

For each agent of the bundle (one built by `fakeface train`, or the shipped default) it prints and
saves ROC AUC (fake = positive) and accuracy at the agent's own threshold on:
- val: the agent's own val metrics, as stored in the bundle at training time;
- dfdc-test: ../shared/data/dfdc-test (source videos never seen in training);
- dfdc-test+NAME: the same crops after a named `vision.degrade` transform (``--degrade``,
  default scale0.5, jpeg70, h264: a face shown at half size, re-compressed, or through a video
  codec), given to the agent as served crops are (its contract resizes them);
- gan-faces-test / lfw-swaps-test: the `test` split of those folders (report only: never used
  to choose anything).
The crops are used whole (they already are face crops), so this scores the agent alone.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from harness import REPO, bench_parser, now, setup, write_json

setup(tf_log_level="3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def held_out_sets(data: Path, limit: int | None) -> dict[str, pd.DataFrame]:
    """name -> rows (absolute path, y); `limit` keeps a seeded, class-balanced sample of each."""
    sets = {}
    for name, folder, split in (("dfdc-test", "dfdc-test", None), ("gan-faces-test", "gan-faces", "test"),
                                ("lfw-swaps-test", "lfw-swaps", "test")):
        meta = pd.read_csv(data / folder / "metadata.csv")
        if split is not None:
            meta = meta[meta["split"] == split]
        rows = pd.DataFrame({"path": [str(data / folder / p) for p in meta["path"]],
                             "y": (meta["label"] == "fake").astype(int).to_numpy()})
        if limit is not None:
            rows = pd.concat([g.sample(min(len(g), limit // 2), random_state=0) for _, g in rows.groupby("y")])
        sets[name] = rows.reset_index(drop=True)
    return sets


def score(p_fake: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    return {"n": int(len(y)), "auc": round(float(roc_auc_score(y, p_fake)), 4),
            "accuracy": round(float(np.mean((p_fake >= threshold) == y)), 4)}


def main() -> None:
    parser = bench_parser(__doc__, out="cnn_transfer.json")
    parser.add_argument("--bundle", required=True, help="bundle dir written by `fakeface train`")
    parser.add_argument("--agents", default=None, help="comma-separated agents (default: every keras agent)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--limit", type=int, default=None, help="class-balanced sample per set (CPU budget)")
    parser.add_argument("--degrade", default="scale0.5,jpeg70,h264", help="vision.degrade transforms of dfdc-test")
    args = parser.parse_args()

    from agents.bundle import load_bundle
    from agents.predictor import AgentPredictor
    from vision.media import read_image
    from vision import degrade

    bundle = load_bundle(args.bundle)
    names = args.agents.split(",") if args.agents else [n for n in bundle.agent_names
                                                        if bundle.agent(n).kind == "keras"]
    sets = held_out_sets(Path(args.data), args.limit)
    images = {name: [read_image(p) for p in rows["path"]] for name, rows in sets.items()}
    labels = {n: r["y"].to_numpy() for n, r in sets.items()}
    for name in filter(None, args.degrade.split(",")):
        images[f"dfdc-test+{name}"] = [degrade.apply(name, im, seed=i) for i, im in enumerate(images["dfdc-test"])]
        labels[f"dfdc-test+{name}"] = labels["dfdc-test"]

    results = {}
    for agent in names:
        predictor = AgentPredictor(bundle, agent)
        info = bundle.agent(agent)
        row = {"preprocessing": info.preprocessing.to_dict(), "threshold": info.threshold,
               "val": {k: info.val_metrics.get(k) for k in ("n", "auc", "accuracy")},
               "training": {k: info.training.get(k) for k in ("train_files", "epochs_run", "best_val_auc",
                                                               "train_seconds", "train_images_per_second")}}
        for name, faces in images.items():
            start = time.perf_counter()
            p = predictor.predict_p_fake(faces)
            row[name] = {**score(p, labels[name], info.threshold),
                         "images_per_s": round(len(faces) / (time.perf_counter() - start), 1)}
        results[agent] = row
        print(agent, json.dumps({k: v for k, v in row.items() if k not in ("preprocessing", "training")}))
    report = {"bundle": str(args.bundle), "limit": args.limit, "agents": results,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
              "date": now()}
    write_json(args.out, report)


if __name__ == "__main__":
    main()

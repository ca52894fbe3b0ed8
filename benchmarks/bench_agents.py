"""Per-agent scores on a held-out folder and CPU training/inference throughput.

Usage:
    python benchmarks/bench_agents.py [--bundle B] [--data ../shared/data/dfdc-test] [--out benchmarks/results/agents.json]

Prints and saves JSON: per agent ROC AUC, accuracy, F1 (at the bundle's threshold) on the data
(fake = positive), inference images/s, and training images/s measured on in-memory batches at
the agent's contract size on this machine.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from harness import REPO, bench_parser, now, setup, write_json

setup(tf_log_level="3")

import numpy as np  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score  # noqa: E402

from agents.command_line import add_bundle_arg  # noqa: E402


def folder_items(root: Path, limit: int | None) -> list[tuple[Path, int]]:
    items = []
    for label, y in (("real", 0), ("fake", 1)):
        files = sorted(p for p in (root / label).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        items += [(p, y) for p in (files[: limit // 2] if limit else files)]
    return items


def train_throughput(name: str, contract, seconds: float, precision: str) -> float:
    import keras

    from agents.registry import get_agent

    keras.mixed_precision.set_global_policy(precision)
    model = get_agent(name).build(input_size=contract.height)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    x = np.random.rand(64, *contract.input_shape).astype("float32") * (255 if contract.scale == "raw" else 1)
    y = np.random.randint(0, 2, 64)
    model.train_on_batch(x, y)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.train_on_batch(x, y)
        n += len(x)
    keras.mixed_precision.set_global_policy("float32")
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = bench_parser(__doc__, out="agents.json")
    add_bundle_arg(parser)
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/dfdc-test"))
    parser.add_argument("--limit", type=int, default=None, help="images per run (half real, half fake)")
    parser.add_argument("--train-seconds", type=float, default=20.0)
    args = parser.parse_args()

    from agents.bundle import load_bundle
    from agents.predictor import AgentPredictor
    from vision.media import read_image

    bundle = load_bundle(args.bundle)
    items = folder_items(Path(args.data), args.limit)
    labels = np.array([y for _, y in items])
    images = [read_image(p) for p, _ in items]
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": now(),
        # Paths relative to the checkout: results carry no machine's absolute paths.
        "bundle": os.path.relpath(bundle.path, REPO), "bundle_version": bundle.version,
        "data": os.path.relpath(Path(args.data).resolve(), REPO), "n": len(items),
        "agents": {},
    }
    for name in bundle.agent_names:
        info = bundle.agent(name)
        predictor = AgentPredictor(bundle, name, batch_size=128)
        start = time.perf_counter()
        p = predictor.predict_p_fake(images)
        infer_s = time.perf_counter() - start
        pred = (p >= info.threshold).astype(int)
        precision = info.training.get("config", {}).get("precision", "float32")
        row = {
            "auc": float(roc_auc_score(labels, p)),
            "accuracy": float(accuracy_score(labels, pred)),
            "f1": float(f1_score(labels, pred, zero_division=0)),
            "threshold": info.threshold,
            "input": list(info.preprocessing.input_shape),
            "inference_images_per_s": len(items) / infer_s,
            # Keras agents only: the forensic agent (gradient boosting) has no training step to time.
            "train_images_per_s_measured": (train_throughput(name, info.preprocessing, args.train_seconds, precision)
                                            if info.kind == "keras" else float("nan")),
            "train_precision": precision,
            "train_images_per_s_in_bundle_run": info.training.get("train_images_per_second"),
            "synthetic_fakes": info.training.get("synthetic_fakes", 0),
        }
        result["agents"][name] = row
        print(f"{name:<8} AUC {row['auc']:.4f} acc {row['accuracy']:.4f} F1 {row['f1']:.4f} "
              f"infer {row['inference_images_per_s']:.0f} img/s train {row['train_images_per_s_measured']:.0f} img/s")
    write_json(args.out, result)


if __name__ == "__main__":
    main()

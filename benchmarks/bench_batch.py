"""Throughput of `fakeface batch` (Ray Data) with 1 and 2 actors per agent vs a plain loop.

Same images, same agents, same run: a subset of ../shared/data/dfdc-test (balanced real/fake,
--detect off since the images are face crops), through

* ``loop``: one process, each agent's `AgentPredictor` in turn, mean of the votes;
* ``ray_k1`` / ``ray_k2``: `training.batch.run` with 1 / 2 actors per agent on a local Ray.

Wall times include model loading (the loop) and actor start-up (Ray); Ray's own start is
excluded. The goal, 2 actors >= 1.7x 1 actor, needs two free cores per extra actor set; the
machine, its core count and its load average are recorded next to the numbers.

    python benchmarks/bench_batch.py --n 400
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/dfdc-test"
RESULTS = REPO / "benchmarks" / "results" / "batch.json"


def pick_images(data: Path, n: int) -> list[str]:
    """The first n/2 real and n/2 fake images of metadata.csv (a fixed, balanced subset)."""
    with open(data / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for label in ("real", "fake"):
        out += [str((data / r["path"]).resolve()) for r in rows if r["label"] == label][: n // 2]
    if len(out) < n:
        raise SystemExit(f"{data} has only {len(out)} usable images, asked for {n}.")
    return out


def choose_bundle(workdir: Path) -> tuple[str, str]:
    """The shipped default bundle when it exists, else the tests' tiny bundle (and which)."""
    from agents.bundle import DEFAULT_BUNDLE

    if (DEFAULT_BUNDLE / "manifest.json").is_file():
        return str(DEFAULT_BUNDLE), "default (agents/default_bundle)"
    spec = importlib.util.spec_from_file_location("fakeface_conftest", REPO / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    path = conftest.make_tiny_bundle(workdir / "tiny")
    return str(path), "tiny (tests/conftest.make_tiny_bundle: 32x32 inputs, random weights)"


def plain_loop(paths: list[str], bundle: str, batch_size: int) -> dict:
    """Single-process reference: read, resize, every agent, the bundle's controller (mean if none)."""
    from agents.bundle import load_bundle
    from agents.predictor import AgentPredictor
    from blackboard.combine import MeanCombiner
    from blackboard.controller import load_controller
    from blackboard.faces import read_image, whole_image_crop

    start = time.perf_counter()
    loaded = load_bundle(bundle)
    predictors = [AgentPredictor(loaded, a, batch_size=batch_size) for a in loaded.agent_names]
    combiner = load_controller(loaded) or MeanCombiner(loaded.agent_names)
    loaded_s = time.perf_counter() - start
    p_all = []
    for i in range(0, len(paths), batch_size):
        crops = np.stack([whole_image_crop(read_image(p)).crop for p in paths[i:i + batch_size]])
        votes = np.stack([pred.predict_p_fake(crops) for pred in predictors], axis=1)
        p_all.append(combiner.predict_proba(votes))
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 2), "model_load_s": round(loaded_s, 2),
            "images_per_s": round(len(paths) / wall, 2),
            "images_per_s_after_load": round(len(paths) / (wall - loaded_s), 2),
            "p_fake": np.concatenate(p_all)}


def ray_run(list_file: Path, out: Path, bundle: str, k: int, batch_size: int) -> dict:
    from training.batch import build_parser, config_from_args, run

    args = build_parser().parse_args([
        "--input", str(list_file), "--output", str(out), "--bundle", bundle, "--detect", "off",
        "--actors-per-agent", str(k), "--batch-size", str(batch_size), "--shard-size", "100"])
    summary = run(config_from_args(args))
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pandas()
    return {"wall_s": summary["seconds"], "images_per_s": round(summary["inputs"] / summary["seconds"], 2),
            "rows": summary["rows"], "rejects": summary["rejects"], "p_fake": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import ray

    paths = pick_images(args.data, args.n)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        bundle, bundle_kind = choose_bundle(tmp)
        list_file = tmp / "inputs.txt"
        list_file.write_text("\n".join(paths) + "\n")
        load_before = os.getloadavg()
        loop = plain_loop(paths, bundle, args.batch_size)
        ray.init(address="local", include_dashboard=False, num_cpus=os.cpu_count(), log_to_driver=False)
        try:
            runs = {f"ray_k{k}": ray_run(list_file, tmp / f"k{k}.parquet", bundle, k, args.batch_size)
                    for k in (1, 2)}
        finally:
            ray.shutdown()
        load_after = os.getloadavg()
    # Same agents on the same images: the Ray job must agree with the loop.
    ref = dict(zip(paths, loop.pop("p_fake")))
    for name, r in runs.items():
        rows = r.pop("p_fake")
        diff = max(abs(float(p) - float(ref[s])) for s, p in zip(rows["source"], rows["p_fake"]))
        r["max_abs_diff_vs_loop"] = round(diff, 6)
    result = {
        "benchmark": "fakeface batch throughput (--detect off)",
        "data": f"{args.data} ({args.n} images, balanced real/fake)",
        "bundle": bundle_kind,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after],
                    "note": "shared machine: other jobs ran at the same time; see load averages"},
        "batch_size": args.batch_size,
        "loop": loop,
        **runs,
        "speedup_k2_over_k1": round(runs["ray_k2"]["images_per_s"] / runs["ray_k1"]["images_per_s"], 2),
        "goal": "ray_k2 >= 1.7x ray_k1 where two cores are free",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

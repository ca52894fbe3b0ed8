"""Throughput of `fakeface evaluate --detect auto` on face crops, and of a second run from the vote cache.

A balanced subset of ../shared/data/dfdc-test (224x224 DFDC crops, laid out as real/ and fake/
symlinks in a temporary folder) is evaluated twice with the shipped bundle:

* ``first``: an empty vote cache, so every image goes through the Ray Data stages (read, crop
  recognised by its shape, four agents); images/s is over the pipeline's wall time
  (``timing.pipeline_s``: Ray start excluded, actor start-up included) and over the whole command;
* ``second``: the same command again, which must read every vote from the cache (no agent runs).

    flock /tmp/bench.lock nice -n 5 python benchmarks/bench_evaluate.py --n 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

from harness import REPO, bench_parser, machine_and_load, setup, write_json

setup()

DEFAULT_DATA = REPO.parent / "shared/data/dfdc-test"
GOAL_IMAGES_PER_S = 60.0


def link_subset(data: Path, n: int, folder: Path) -> int:
    """Symlinks the first n/2 real and n/2 fake crops of metadata.csv into folder/real, folder/fake."""
    with open(data / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    count = 0
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True)
        for r in [r for r in rows if r["label"] == label][: n // 2]:
            src = (data / r["path"]).resolve()
            (folder / label / src.name).symlink_to(src)
            count += 1
    return count


def run_once(folder: Path, out: Path, cache: Path, extra: list[str]) -> dict:
    from training.evaluate import main

    start = time.perf_counter()
    # The command as a user runs it: default bootstrap (1 000 resamples) included.
    code = main(["--data", str(folder), "--out", str(out), "--detect", "auto", "--cache-dir", str(cache), *extra])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"fakeface evaluate exited with {code}")
    timing = json.loads((out / "metrics.json").read_text())["timing"]
    return {"command_s": round(wall, 2), **timing}


def main() -> None:
    parser = bench_parser(__doc__, out="evaluate.json")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more `fakeface evaluate` arguments, e.g. --batch-size 64")
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        tmp = Path(tmp)
        n = link_subset(args.data, args.n, tmp / "data")
        first = run_once(tmp / "data", tmp / "out1", tmp / "cache", args.extra)
        second = run_once(tmp / "data", tmp / "out2", tmp / "cache", args.extra)
    first["images_per_s_command"] = round(n / first["command_s"], 2)
    result = {
        "benchmark": "fakeface evaluate --detect auto on face crops, then again from the vote cache",
        "data": f"{args.data.name} ({n} crops, balanced real/fake)",
        "bundle": "default (agents/default_bundle)",
        "extra_arguments": args.extra,
        "machine": machine_and_load(load_before),
        "first": first,
        "second_from_cache": second,
        "goal": f"first.images_per_s >= {GOAL_IMAGES_PER_S} on 2 cores; second run scores no image",
        "goal_met": bool((first["images_per_s"] or 0) >= GOAL_IMAGES_PER_S and second["images_scored"] == 0),
    }
    write_json(args.out, result, echo=True)


if __name__ == "__main__":
    main()

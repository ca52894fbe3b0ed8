"""Small `fakeface batch` jobs end to end: in this process (the default under the size limit) vs Ray.

Usage:
    python benchmarks/bench_small_jobs.py [--sizes 3 48] [--repeats 2] [--out benchmarks/results/small_jobs.json]

For each job size N, a folder of N 1920x1080 screenshots (gan-faces test portraits pasted into a
desktop-like frame, as in bench_photos.py) is classified by ``python -m fakeface.cli batch`` in a
fresh process, wall-clock from start to exit (imports, model loading, detection, agents, output):

* ``in-process``: no cluster named, under ``blackboard.local_stages.local_max_work()`` inputs;
* ``ray``: the same command with ``--ray-address local`` (a new local Ray, its actors and Ray Data).

Runs alternate between the two paths. The rows of both outputs are compared (every column but
``node_id``). From the two sizes, a straight line per path (start-up + per-image cost) gives the
job size where Ray starts to pay, the crossover that local_max_work() should not exceed by much.
Goal (issue 24): 3 screenshots <= 6 s end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, add_repeats_arg, bench_parser, stamp, use_checkout, write_json

use_checkout()


def make_screenshots(folder: Path, count: int) -> None:
    import cv2

    from benchmarks.bench_photos import _gan_faces, _screenshot

    faces = _gan_faces(count)
    for i in range(count):
        face = faces[i % len(faces)]
        cv2.imwrite(str(folder / f"shot{i:03d}.png"), cv2.cvtColor(_screenshot(face, i), cv2.COLOR_RGB2BGR))


def run_batch(folder: Path, out: Path, ray: bool) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "fakeface.cli", "batch", "--input", str(folder), "--output", str(out)]
    if ray:
        cmd += ["--ray-address", "local"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def same_rows(a: Path, b: Path) -> bool:
    import pandas as pd

    left, right = pd.read_parquet(a).drop(columns="node_id"), pd.read_parquet(b).drop(columns="node_id")
    try:
        pd.testing.assert_frame_equal(left, right)
    except AssertionError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, out="small_jobs.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 48], help="job sizes (screenshots)")
    add_repeats_arg(parser, default=2, per="size and path (best is kept)")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / f"in{size}"
            folder.mkdir()
            make_screenshots(folder, size)
            times: dict[str, list[float]] = {"in-process": [], "ray": []}
            outputs = {}
            for r in range(args.repeats):
                for path in ("in-process", "ray"):  # alternating: both see the same load
                    out = Path(tmp) / f"{path}-{size}-{r}.parquet"
                    seconds, summary = run_batch(folder, out, ray=path == "ray")
                    assert summary["ran_on"] == path, summary
                    times[path].append(round(seconds, 2))
                    outputs[path] = out
            results[str(size)] = {
                "in_process_s": min(times["in-process"]), "ray_s": min(times["ray"]), "runs_s": times,
                "identical_rows": same_rows(outputs["in-process"], outputs["ray"]),
            }
            print(f"{size:4d} screenshots: in-process {results[str(size)]['in_process_s']:6.1f} s, ray "
                  f"{results[str(size)]['ray_s']:6.1f} s, identical rows: {results[str(size)]['identical_rows']} "
                  f"(runs {times})", flush=True)
    report = {
        **stamp(argv if argv is not None else sys.argv[1:]),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "sizes": results,
        "goal_s_3_screenshots": 6.0,
    }
    if len(args.sizes) >= 2:
        lo, hi = str(min(args.sizes)), str(max(args.sizes))
        span = int(hi) - int(lo)
        per = {p: (results[hi][k] - results[lo][k]) / span for p, k in (("local", "in_process_s"), ("ray", "ray_s"))}
        start = {p: results[lo][k] - per[p] * int(lo) for p, k in (("local", "in_process_s"), ("ray", "ray_s"))}
        report["per_image_s"] = {k: round(v, 3) for k, v in per.items()}
        report["start_up_s"] = {k: round(v, 2) for k, v in start.items()}
        if per["local"] > per["ray"] > 0:  # under a changing load the lines can be meaningless
            report["crossover_images"] = round((start["ray"] - start["local"]) / (per["local"] - per["ray"]))
    if "3" in results:
        report["goal_met"] = results["3"]["in_process_s"] <= 6.0
    write_json(args.out, report, echo=True, hide=("sizes",))


if __name__ == "__main__":
    main()

"""`fakeface evaluate --detect auto` on photos: in process one block at a time, in process with
blocks side by side on threads or on worker processes (the default), and on a new local Ray
(issue 24).

Usage:
    python benchmarks/bench_local_workers.py [--sizes 1024 600] [--out benchmarks/results/local_workers.json]
    python benchmarks/bench_local_workers.py --ways "blocks on threads" "blocks on processes" \
        --out benchmarks/results/local_processes.json
    python benchmarks/bench_local_workers.py --split all --ways "blocks on processes" ray "default routing" \
        --out benchmarks/results/local_workers_1600.json

The test split of ../shared/data/gan-faces (FFHQ photos and StyleGAN faces, 256 px) is upscaled
(bicubic) to each ``--sizes`` square and written as PNG into real/ and fake/ folders: 1024 px
portraits, and 600 px as a stand-in for the ~600 px photos of the issue. Each folder is evaluated
by ``python -m fakeface.cli evaluate --no-cache`` in a fresh process, in each ``--ways``, back to back:

* ``one block at a time``: in process, ``$FAKEFACE_LOCAL_WORKERS=1`` (the models use every core);
* ``blocks on threads``: in process, blocks side by side on threads
  (`blackboard.local_stages.local_workers`; ``$FAKEFACE_LOCAL_PROCESSES=0``);
* ``blocks on processes``: in process, the default: the same blocks on forked worker processes
  (`blackboard.local_stages.uses_processes`);
* ``ray``: ``--ray-address local``.

Reported per run: the pipeline's images/s (`timing.images_per_s`, start-up included), its steady
rate and first results, the command's wall time, and the largest |delta p| of any agent or the
ensemble against the first run (the paths must give the same votes). Goals (issue 24, 2 cores):
>= 15 images/s on 1024 px portraits, >= 25 on ~600 px photos.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, bench_parser, machine_and_load, setup, stamp, write_json

setup()

DATA = REPO.parent / "shared/data/gan-faces"
GOALS = {1024: 15.0, 600: 25.0}
WAYS = {
    "one block at a time": ({"FAKEFACE_LOCAL_WORKERS": "1"}, ["--in-process"]),
    "blocks on threads": ({"FAKEFACE_LOCAL_PROCESSES": "0"}, ["--in-process"]),
    "blocks on processes": ({}, ["--in-process"]),
    "ray": ({}, ["--ray-address", "local"]),
    "default routing": ({}, []),  # what a user's plain command does: in process up to the limit, else Ray
}


def make_folder(root: Path, side: int, split: str = "test") -> int:
    """The gan-faces ``split`` ("test", or "all": both splits, a job the size of the issue's 2 035
    photos) upscaled to ``side`` px, as real/ and fake/ PNG files; returns the count."""
    import cv2
    import pandas as pd

    table = pd.read_csv(DATA / "metadata.csv")
    test = table if split == "all" else table[table["split"] == split]
    for row in test.itertuples():
        image = cv2.imread(str(DATA / row.path))
        out = root / row.label / f"{Path(row.path).stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC))
    return len(test)


def evaluate(folder: Path, out: Path, env_extra: dict[str, str], flags: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "FAKEFACE_LOCAL_WORKERS",
                                                               "FAKEFACE_LOCAL_PROCESSES")}
    env.update(env_extra, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "fakeface.cli", "evaluate", "--data", str(folder), "--out", str(out), "--detect",
           "auto", "--no-cache", "--no-progress", "--bootstrap", "10", *flags]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    timing = json.loads((out / "metrics.json").read_text())["timing"]
    return {"wall_s": round(wall, 2), **timing}


def largest_delta(a: Path, b: Path) -> float:
    import pandas as pd

    left, right = pd.read_csv(a / "predictions.csv"), pd.read_csv(b / "predictions.csv")
    columns = [c for c in left.columns if c not in ("path", "label")]
    return float((left[columns] - right[columns]).abs().max().max())


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out="local_workers.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 600])
    parser.add_argument("--split", choices=("test", "all"), default="test",
                        help="gan-faces images to upscale: the test split (240), or all 1 600 (a large job)")
    parser.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS)[:4],
                        help="runs to make (default: all but 'default routing')")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs {DATA}", file=sys.stderr)
        return 2
    results, load_before = {}, os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="local-workers-") as tmp:
        for side in args.sizes:
            folder = Path(tmp) / f"photos{side}"
            count = make_folder(folder, side, args.split)
            runs, first = {}, None
            for way in args.ways:
                env_extra, flags = WAYS[way]
                out = Path(tmp) / f"out{side}-{way.replace(' ', '-')}"
                runs[way] = evaluate(folder, out, env_extra, flags)
                first = first or out
                runs[way]["max_abs_delta_p_vs_first"] = largest_delta(first, out)
                row = runs[way]
                print(f"{side} px, {way:20s}: {row['images_per_s']:5.2f} img/s (steady {row['steady_images_per_s']}, "
                      f"first results {row['first_results_s']} s, ran on {row['ran_on']}), wall {row['wall_s']} s, "
                      f"max |dp| vs first {row['max_abs_delta_p_vs_first']:.1e}", flush=True)
            best = max(r["images_per_s"] for r in runs.values())
            results[f"{side}px"] = {"images": count, "split": args.split, "runs": runs, "goal_images_per_s": GOALS.get(side),
                                    "goal_met": best >= GOALS.get(side, float("inf"))}
    write_json(args.out, {**stamp(sys.argv[1:] if argv is None else argv), **machine_and_load(load_before), "issue": 24,
                          "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

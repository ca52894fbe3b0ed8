"""Same answers on every path: serve, classify, batch and evaluate give one p_fake per face.

Issue 23 moved image -> verdict into one pipeline of stage callables that every front door runs.
This checks it from the outside, through the real commands a user types, on the same inputs:

* ``classify``: ``fakeface classify --json`` in process (no Ray) — the reference;
* ``serve``: ``fakeface serve`` (embedded local Ray, Serve replicas) and ``fakeface classify
  --server`` against it (unary calls for images, ``ClassifyStream`` for clips);
* ``batch``: ``fakeface batch`` to parquet, in process (the job is under its in-process limit:
  blocks on threads side by side), and ``batch-ray`` the same with ``--ray-address local`` (Ray Data);
* ``evaluate``: ``fakeface evaluate`` on the crops as a real/ and fake/ folder (no vote cache), in
  process, and ``evaluate-ray`` on a new local Ray.

Inputs: ``--per-class`` real and fake dfdc-test crops drawn with a seed, and the clips in the
shared videos folder (every sampled frame's face; evaluate takes images only). A face is keyed by
its file and, for a clip, the frame's time. Reported per path against ``classify``: faces
compared, faces missing on either side, the largest and the 99th percentile |delta p_fake|, and
whether all agree within ``--tolerance`` (1e-6, the issue's bar).

    python benchmarks/bench_same_answers.py                 # 200 + 200 crops and the two clips
    python benchmarks/bench_same_answers.py --per-class 5   # a quick check

Results go to benchmarks/results/same_answers.json.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from harness import REPO, bench_parser, serve_process, setup, stamp, write_json

setup(tf_log_level="3")

DATA = REPO.parent / "shared" / "data"
Key = tuple[str, float]  # (real path of the input, frame time in s; -1 for an image)


def run(cmd: list[str], log: Path, *, checkout: Path = REPO) -> float:
    """Runs a fakeface command to completion, its stdout to ``log`` and its stderr beside it
    (``.err``); returns its wall time. ``checkout``: the source tree whose code (and shipped
    bundle) runs it, e.g. a worktree of the commit before a change."""
    start = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(checkout)) if checkout != REPO else os.environ
    with open(log, "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.run([sys.executable, "-m", "fakeface.cli", *cmd], cwd=checkout, stdout=out, stderr=err,
                              env=env)
    if proc.returncode != 0:
        raise SystemExit(f"`fakeface {' '.join(cmd[:2])} ...` failed ({proc.returncode}); see {log}")
    return time.monotonic() - start


def from_classify_json(text: str) -> dict[Key, list[float]]:
    """Faces of `fakeface classify --json`: an image's faces, and a clip's per-frame timeline."""
    faces: dict[Key, list[float]] = defaultdict(list)
    for result in json.loads(text):
        path = os.path.realpath(result["file"])
        if result["kind"] == "video":
            for track in result["tracks"]:
                for point in track["timeline"]:
                    faces[(path, round(float(point["time_s"]), 3))].append(float(point["p_fake"]))
        else:
            for face in result["faces"]:
                faces[(path, -1.0)].append(float(face["p_fake"]))
    return faces


def from_batch(path: Path) -> dict[Key, list[float]]:
    """Faces of a `fakeface batch` parquet file (rows without a face are left out)."""
    import pyarrow.parquet as pq

    faces: dict[Key, list[float]] = defaultdict(list)
    for row in pq.read_table(path).to_pylist():
        if row["face_index"] < 0 or row["status"] != "ok":
            continue
        time_s = -1.0 if row["kind"] == "image" else round(float(row["time_s"]), 3)
        faces[(os.path.realpath(row["source"]), time_s)].append(float(row["p_fake"]))
    return faces


def from_evaluate(out_dir: Path) -> dict[Key, list[float]]:
    """The ensemble's p_fake per image of `fakeface evaluate`'s predictions.csv."""
    faces: dict[Key, list[float]] = defaultdict(list)
    with open(out_dir / "predictions.csv") as fh:
        for row in csv.DictReader(fh):
            path = os.path.realpath(os.path.join(REPO, row["path"]))
            faces[(path, -1.0)].append(float(row["ensemble"]))
    return faces


def compare(reference: dict[Key, list[float]], other: dict[Key, list[float]], *, tolerance: float,
            images_only: bool = False) -> dict:
    """Faces matched by key (several faces of one frame by sorted p_fake) and their differences."""
    keys = {k for k in reference if not images_only or k[1] < 0}
    deltas, missing, count_differs = [], sorted(keys - set(other)), 0
    for key in sorted(keys & set(other)):
        a, b = sorted(reference[key]), sorted(other[key])
        if len(a) != len(b):
            count_differs += 1
            continue
        deltas.extend(abs(x - y) for x, y in zip(a, b))
    extra = sorted(set(other) - keys)
    worst = float(max(deltas)) if deltas else float("nan")
    return {"faces_compared": len(deltas), "inputs_missing": len(missing), "inputs_extra": len(extra),
            "frames_with_other_face_count": count_differs, "max_abs_delta": worst,
            "p99_abs_delta": float(np.percentile(deltas, 99)) if deltas else float("nan"),
            "identical_within_tolerance": bool(deltas) and worst <= tolerance and not missing and not count_differs,
            "missing_examples": [f"{Path(k[0]).name}@{k[1]}" for k in missing[:5]]}


def serve_answers(paths: list[str], work: Path) -> tuple[dict[Key, list[float]], float]:
    """Starts `fakeface serve`, classifies the inputs through it, stops it."""
    with serve_process(work / "serve.log") as served:
        seconds = run(["classify", "--server", f"127.0.0.1:{served.port}", "--json", *paths], work / "serve.json")
    return from_classify_json((work / "serve.json").read_text()), seconds


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, out="same_answers.json")
    parser.add_argument("--data", type=Path, default=DATA / "dfdc-test", help="folder with real/ and fake/ crops")
    parser.add_argument("--videos", type=Path, default=DATA / "videos", help="folder of clips (searched recursively)")
    parser.add_argument("--per-class", type=int, default=200, help="crops drawn from each of real/ and fake/")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops drawn")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest |delta p_fake| called identical")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of the code before a change (git worktree): its `classify` is "
                             "compared with this one's too, as path 'classify-before'")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="same-answers-"))
    crops: list[str] = []
    for label in ("real", "fake"):
        names = sorted(p.name for p in (args.data / label).glob("*.jpg"))
        (work / "crops" / label).mkdir(parents=True)
        for name in rng.choice(names, size=min(args.per_class, len(names)), replace=False):
            link = work / "crops" / label / name
            link.symlink_to(args.data / label / name)
            crops.append(str(link))
    clips = sorted(str(p) for p in args.videos.rglob("*.mp4")) if args.videos.is_dir() else []
    paths = crops + clips
    (work / "inputs.txt").write_text("\n".join(paths) + "\n")
    print(f"{len(crops)} crops and {len(clips)} clips in {work}", flush=True)

    seconds: dict[str, float] = {}
    seconds["classify"] = run(["classify", "--json", *paths], work / "classify.json")
    reference = from_classify_json((work / "classify.json").read_text())
    answers = {}
    if args.before is not None:
        seconds["classify-before"] = run(["classify", "--json", *paths], work / "before.json",
                                         checkout=args.before.resolve())
        answers["classify-before"] = from_classify_json((work / "before.json").read_text())
    answers["serve"], seconds["serve"] = serve_answers(paths, work)
    for name, where in (("batch", []), ("batch-ray", ["--ray-address", "local"])):
        seconds[name] = run(["batch", "--input", str(work / "inputs.txt"), "--output", str(work / f"{name}.parquet"),
                             *where], work / f"{name}.log")
        answers[name] = from_batch(work / f"{name}.parquet")
    for name, where in (("evaluate", []), ("evaluate-ray", ["--ray-address", "local"])):
        seconds[name] = run(["evaluate", "--data", str(work / "crops"), "--out", str(work / name), "--detect", "auto",
                             "--no-cache", "--bootstrap", "10", "--no-progress", *where], work / f"{name}.log")
        answers[name] = from_evaluate(work / name)

    report = {name: compare(reference, got, tolerance=args.tolerance, images_only=name.startswith("evaluate"))
              for name, got in answers.items()}
    for name, row in report.items():
        print(f"{name:12s} vs classify: {row['faces_compared']} faces, max |dp| {row['max_abs_delta']:.2e}, "
              f"missing {row['inputs_missing']}, identical: {row['identical_within_tolerance']}")
    write_json(args.out, {
        **stamp(sys.argv[1:] if argv is None else argv), "issue": 23,
        "inputs": {"crops": len(crops), "clips": [Path(c).name for c in clips], "seed": args.seed,
                   "faces_in_reference": sum(len(v) for v in reference.values())},
        # The commit, not the folder: the record stays meaningful on another machine.
        "before": None if args.before is None else subprocess.run(
            ["git", "-C", str(args.before), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            check=False).stdout.strip() or "not a git checkout",
        "tolerance": args.tolerance, "reference": "fakeface classify --json (in process, no Ray)",
        "paths": report, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    })


if __name__ == "__main__":
    main()

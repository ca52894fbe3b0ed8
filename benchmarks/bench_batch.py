"""Throughput of `fakeface batch` (Ray Data) against a plain loop, and across one and two Ray nodes.

Inputs: the dfdc-test face crops (224x224), repeated under distinct symlink names until there
are ``--n`` of them (``--detect off``: they are crops; the plain loop crops the same way), the
shipped bundle, its controller deciding (mean of votes without one). Three modes:

* ``local`` (default): the plain single-process loop (read, crop, every agent in turn, decide;
  TensorFlow/OpenMP threads = the cores, its fastest setting) against `fakeface.batch.run` on a
  local Ray on the same cores. Both are measured in steady state: the loop after its models are
  loaded, the job from its first completed shard to its last (shard files' modification times),
  so neither start-up counts. Goal: Ray >= 0.9x the loop, same p_fake.
* ``scaling``: a Ray cluster of loopback-only, token-authenticated nodes started here with
  ``taskset -c i ray start ... --num-cpus 1``; the job runs on one such node, then on two.
  Goal: two nodes >= 1.8x one node (steady images/s).
* ``cluster --address HOST:PORT``: the same job against a running cluster (``RAY_AUTH_TOKEN`` etc.
  from the environment, as for any Ray client), e.g. to size ``--actors-per-agent`` on it.

    flock /tmp/bench.lock nice -n 5 python benchmarks/bench_batch.py --n 4000
    flock /tmp/bench.lock nice -n 5 python benchmarks/bench_batch.py --mode scaling --n 2000
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, RESULTS, bench_parser, machine_and_load, setup, write_json

setup()

import numpy as np  # noqa: E402

from agents.command_line import add_bundle_arg  # noqa: E402
from blackboard.ray_runtime import free_ports, node_args, stop_node  # noqa: E402 - extra local Ray nodes
DEFAULT_DATA = REPO.parent / "shared/data/dfdc-test"
RAY = str(Path(sys.executable).with_name("ray"))
SHARD_SIZE = 100


def link_inputs(data: Path, n: int, folder: Path) -> list[str]:
    """n input paths: the crops of metadata.csv (real and fake interleaved), repeated under
    distinct symlink names (a batch job de-duplicates identical paths)."""
    with open(data / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    real = [r["path"] for r in rows if r["label"] == "real"]
    fake = [r["path"] for r in rows if r["label"] == "fake"]
    crops = [p for pair in zip(real, fake) for p in pair]
    out = []
    for i in range(n):
        copy = folder / f"copy{i // len(crops)}"
        copy.mkdir(parents=True, exist_ok=True)
        link = copy / Path(crops[i % len(crops)]).name
        link.symlink_to((data / crops[i % len(crops)]).resolve())
        out.append(str(link))
    return out


def plain_loop(paths: list[str], bundle: str | None, batch_size: int) -> dict:
    """Single-process reference: read, crop, every agent, the one decision rule and the
    uncertainty gate (what `fakeface batch`'s decision stage does)."""
    from agents.bundle import load_bundle
    from agents.predictor import AgentPredictor
    from blackboard.controllers.store import load_controller
    from blackboard.decision import context_for, decide_matrix
    from vision.faces import whole_image_crop
    from vision.media import read_image
    from blackboard.ood import UncertaintyGate

    start = time.perf_counter()
    loaded = load_bundle(bundle)
    predictors = [AgentPredictor(loaded, a, batch_size=batch_size) for a in loaded.agent_names]
    controller = load_controller(loaded)
    gate = UncertaintyGate.from_bundle(loaded)
    for pred in predictors:  # the first call of each batch shape traces the graph
        pred.predict_p_fake(np.zeros((batch_size, 224, 224, 3), np.uint8))
    loaded_s = time.perf_counter() - start
    p_all = []
    for i in range(0, len(paths), batch_size):
        crops = np.stack([whole_image_crop(read_image(p)).crop for p in paths[i:i + batch_size]])
        votes = np.stack([pred.predict_p_fake(crops) for pred in predictors], axis=1)
        p_all.append(decide_matrix(votes, loaded.agent_names, controller,
                                   context=context_for(controller, list(crops))).p_fake)
        gate.assess(list(crops), [(224.0, 224.0)] * len(crops))
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 2), "model_load_s": round(loaded_s, 2),
            "steady_images_per_s": round(len(paths) / (wall - loaded_s), 2),
            "p_fake": np.concatenate(p_all)}


def ray_job(paths: list[str], work: Path, *, address: str | None, bundle: str | None, actors: str | None,
            batch_size: int, threads: int = 0, agent_set: int = 0) -> dict:
    """`fakeface batch` over ``paths``; steady rate from the completion times of its shards."""
    import pyarrow.parquet as pq

    from fakeface.batch import run
    from fakeface.batch_config import build_parser, config_from_args

    work.mkdir(parents=True, exist_ok=True)
    (work / "inputs.txt").write_text("\n".join(paths) + "\n")
    out = work / "out.parquet"
    argv = ["--input", str(work / "inputs.txt"), "--output", str(out), "--detect", "off",
            "--batch-size", str(batch_size), "--shard-size", str(SHARD_SIZE),
            "--threads-per-actor", str(threads), "--agent-set-actors", str(agent_set), "--keep-parts"]
    argv += ["--actors-per-agent", actors] if actors else []  # else the default layout
    argv += ["--bundle", bundle] if bundle else []
    argv += ["--ray-address", address] if address else []
    started = time.time()
    summary = run(config_from_args(build_parser().parse_args(argv)))
    done = sorted(p.stat().st_mtime for p in (work / "out.parts").glob("shard-*.parquet"))
    # From the first shard written to the last: every actor is up, no start-up in the rate.
    steady = (len(paths) - SHARD_SIZE) / max(done[-1] - done[0], 1e-9) if len(done) > 1 else None
    rows = pq.read_table(out).to_pandas()
    return {"wall_s": summary["seconds"], "first_shard_s": round(done[0] - started, 2),
            "images_per_s_end_to_end": round(len(paths) / summary["seconds"], 2),
            "steady_images_per_s": round(steady, 2) if steady else None, "rows": summary["rows"],
            "rejects": summary["rejects"], "face_stage_nodes": int(rows["node_id"].nunique()),
            "p_fake": dict(zip(rows["source"], rows["p_fake"]))}


def start_nodes(n_nodes: int, logs: Path) -> tuple[str, list[subprocess.Popen]]:
    """n loopback-only Ray nodes, node i pinned to core i with 1 CPU; returns (address, processes)."""
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_raylet_start_wait_time_s": "180",
           "RAY_agent_register_timeout_ms": "180000"}
    procs = []
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(n_nodes):
        where = ["--head", f"--port={port}", "--include-dashboard=false"] if i == 0 else [f"--address={address}"]
        log = logs / f"node{i}.log"
        with open(log, "ab") as f:
            procs.append(subprocess.Popen(
                ["taskset", "-c", str(i % os.cpu_count()), RAY, "start", *where, "--node-ip-address=127.0.0.1",
                 *node_args(tempfile.mkdtemp(prefix=f"ffb{i}-"))],
                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 240
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                for p in procs:
                    stop_node(p)
                raise SystemExit(f"Ray node {i} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
    return address, procs


def scaling(paths: list[str], tmp: Path, args: argparse.Namespace) -> dict:
    """The same job on one 1-CPU node, then on two."""
    # One token for the nodes and this driver (set before Ray is imported: it reads the auth
    # mode then); the nodes listen on 127.0.0.1 only.
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    import ray
    os.sched_setaffinity(0, {0})  # the driver shares the head node's core
    runs = {}
    for n_nodes in (1, 2):
        address, procs = start_nodes(n_nodes, tmp / f"logs{n_nodes}")
        try:
            runs[f"nodes_{n_nodes}"] = ray_job(paths, tmp / f"n{n_nodes}", address=address, bundle=args.bundle,
                                               actors=args.actors_per_agent, batch_size=args.batch_size,
                                               threads=args.threads_per_actor, agent_set=args.agent_set_actors)
        finally:
            ray.shutdown()
            for p in procs:
                stop_node(p)
    ratio = runs["nodes_2"]["steady_images_per_s"] / runs["nodes_1"]["steady_images_per_s"]
    return {**runs, "speedup_2_over_1": round(ratio, 2), "goal": "speedup_2_over_1 >= 1.8",
            "goal_met": ratio >= 1.8}


def local(paths: list[str], tmp: Path, args: argparse.Namespace) -> dict:
    from blackboard.worker_threads import limit_threads

    limit_threads(os.cpu_count())  # the loop's fastest setting (before TensorFlow starts)
    loop = plain_loop(paths, args.bundle, args.batch_size)
    job = ray_job(paths, tmp / "ray", address=None, bundle=args.bundle, actors=args.actors_per_agent,
                  batch_size=args.batch_size, threads=args.threads_per_actor, agent_set=args.agent_set_actors)
    ratio = job["steady_images_per_s"] / loop["steady_images_per_s"]
    return {"loop": loop, "ray": job, "ray_over_loop": round(ratio, 3), "goal": "ray_over_loop >= 0.9",
            "goal_met": ratio >= 0.9}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--mode", choices=("local", "scaling", "cluster"), default="local")
    parser.add_argument("--address", default=None, help="Ray cluster address (mode cluster)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=4000)
    add_bundle_arg(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--actors-per-agent", default=None,
                        help="as `fakeface batch`, e.g. 1,vgg16=2 (default: its default layout, agent sets)")
    parser.add_argument("--agent-set-actors", type=int, default=0, help="as `fakeface batch` (0: one per CPU)")
    parser.add_argument("--threads-per-actor", type=int, default=0, help="as `fakeface batch` (0: auto)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default benchmarks/results/)")
    args = parser.parse_args()
    if args.mode == "cluster" and not args.address:
        parser.error("--mode cluster needs --address HOST:PORT")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        paths = link_inputs(args.data, args.n, tmp / "inputs")
        if args.mode == "local":
            result = local(paths, tmp, args)
        elif args.mode == "scaling":
            result = scaling(paths, tmp, args)
        else:
            result = {"ray": ray_job(paths, tmp / "ray", address=args.address, bundle=args.bundle,
                                     actors=args.actors_per_agent, batch_size=args.batch_size,
                                     threads=args.threads_per_actor, agent_set=args.agent_set_actors)}
    # Same agents and decision on the same images: every run must agree with the reference.
    runs = {k: v for k, v in result.items() if isinstance(v, dict) and "p_fake" in v}
    ref = runs.pop("loop")["p_fake"] if "loop" in runs else None
    ref = dict(zip(paths, ref)) if ref is not None else next(iter(runs.values()))["p_fake"]
    for r in runs.values():
        got = r.pop("p_fake")
        r["max_abs_diff_p_fake"] = round(max(abs(float(got[s]) - float(ref[s])) for s in paths), 6)
    result.get("loop", {}).pop("p_fake", None)
    result = {
        "benchmark": f"fakeface batch --detect off, mode {args.mode}",
        "data": f"{args.data.name} crops repeated to {args.n} inputs",
        "bundle": args.bundle or "default (agents/default_bundle)",
        "batch_size": args.batch_size, "actors_per_agent": args.actors_per_agent,
        "threads_per_actor": args.threads_per_actor, "agent_set_actors": args.agent_set_actors,
        "machine": machine_and_load(load_before),
        **result,
    }
    write_json(args.out or RESULTS / f"batch_{args.mode}.json", result, echo=True)


if __name__ == "__main__":
    main()

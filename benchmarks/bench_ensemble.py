"""Latency and throughput of the Ray blackboard against the slowest agent alone, in one run.

Measures, on the same bundle and the same face crop:
  * each agent's own ``predict_p_fake`` on one crop, in this process (p50/p99 ms);
  * one case through the Ray ensemble (``classify_faces``: agent actors + controller, no
    detection) with one replica per agent (p50/p99 ms), and the ratio of its p50 to the slowest
    agent's p50 (goal: <= 1.15);
  * cases/s with 1 and 2 replicas per agent under concurrent requests (micro-batching on).

Usage::

    python benchmarks/bench_ensemble.py [--bundle DIR] [--cases 40] [--concurrency 8]

Prints a table and saves JSON to benchmarks/results/ensemble.json.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from harness import REPO, bench_parser, face_crop, setup, write_json

setup()

import numpy as np  # noqa: E402

from agents.command_line import add_bundle_arg  # noqa: E402
from agents.bundle import DEFAULT_BUNDLE, load_bundle  # noqa: E402
from agents.predictor import AgentPredictor  # noqa: E402

SAMPLE_DIR = REPO.parent / "shared/data/dfdc-test"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean()), "n": int(arr.size)}


def time_calls(fn, *, cases: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(cases):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def bench_agents(bundle, crop: np.ndarray, *, cases: int, warmup: int) -> dict[str, dict[str, float]]:
    """Each agent alone, in this process."""
    result = {}
    for name in bundle.agent_names:
        predictor = AgentPredictor(bundle, name)
        result[name] = percentiles(time_calls(lambda: predictor.predict_p_fake([crop]), cases=cases, warmup=warmup))
    return result


def bench_ensemble(bundle, crop: np.ndarray, *, replicas: int, cpus: float, cases: int, warmup: int,
                   concurrency: int) -> dict[str, object]:
    """Sequential latency and concurrent throughput of one deployment."""
    from blackboard.ensemble import Ensemble
    from blackboard.config import EnsembleConfig

    per_actor = min(0.5, cpus / (replicas * len(bundle.agent_names) + 1))
    config = EnsembleConfig(replicas=replicas, num_cpus_per_actor=per_actor, deadline_s=60.0)
    ensemble = Ensemble(bundle, config)
    try:
        if not ensemble.ready(timeout_s=600):
            raise RuntimeError("ensemble actors did not become ready in 600 s")
        latency = percentiles(time_calls(lambda: ensemble.classify_faces([crop]), cases=cases, warmup=warmup))
        degraded = 0
        total = cases * 2

        def one(_: int) -> bool:
            return ensemble.classify_faces([crop]).degraded

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, range(concurrency)))  # warm the concurrent path
            start = time.perf_counter()
            degraded = sum(pool.map(one, range(total)))
            elapsed = time.perf_counter() - start
        info = ensemble.model_info()["agents"]
        batches = {n: info[n]["batches_sent"] for n in info}
        crops = {n: info[n]["crops_sent"] for n in info}
    finally:
        ensemble.shutdown()
    return {"replicas": replicas, "num_cpus_per_actor": per_actor, "latency": latency,
            "throughput_cases_per_s": total / elapsed, "concurrency": concurrency, "degraded_cases": int(degraded),
            "mean_crops_per_actor_call": {n: crops[n] / max(batches[n], 1) for n in batches}}


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, out="ensemble.json")
    add_bundle_arg(parser)
    parser.add_argument("--cases", type=int, default=40, help="timed cases per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8, help="client threads for throughput")
    parser.add_argument("--num-cpus", type=float, default=float(os.cpu_count() or 2), help="CPUs given to Ray")
    args = parser.parse_args(argv)
    if args.bundle is None and not (DEFAULT_BUNDLE / "manifest.json").is_file():
        parser.error(f"no default bundle at {DEFAULT_BUNDLE}; pass --bundle DIR")
    bundle = load_bundle(args.bundle)
    crop, crop_source = face_crop(sorted(SAMPLE_DIR.glob("*/*.jpg"))[:1])  # a DFDC test crop

    import ray

    # Ray first: its raylet must register within 30 s, which fails on a box loaded by TensorFlow.
    for attempt in (1, 2):
        try:
            ray.init(address="local", include_dashboard=False, num_cpus=args.num_cpus, log_to_driver=False)
            break
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception on a start-up timeout
            ray.shutdown()
            if attempt == 2:
                raise SystemExit(f"bench_ensemble: Ray did not start: {err}") from err
    try:
        agents = bench_agents(bundle, crop, cases=args.cases, warmup=args.warmup)
        slowest = max(agents, key=lambda n: agents[n]["p50_ms"])
        runs = [bench_ensemble(bundle, crop, replicas=r, cpus=args.num_cpus, cases=args.cases, warmup=args.warmup,
                               concurrency=args.concurrency) for r in (1, 2)]
    finally:
        ray.shutdown()
    ratio = runs[0]["latency"]["p50_ms"] / agents[slowest]["p50_ms"]
    result = {
        "bundle": os.path.relpath(bundle.path, REPO), "bundle_version": bundle.version,
        "crop": os.path.relpath(crop_source, REPO) if os.path.isabs(crop_source) else crop_source,
        "host": {"cpus": os.cpu_count(), "ray_cpus": args.num_cpus, "load_average": list(os.getloadavg())},
        "agents_in_process": agents, "slowest_agent": slowest, "ensemble": runs,
        "p50_ratio_vs_slowest_agent": ratio, "goal_p50_ratio": 1.15, "goal_met": bool(ratio <= 1.15),
    }
    print(f"bundle {bundle.path} ({bundle.version}); crop: {crop_source}; load avg {os.getloadavg()[0]:.1f}")
    for name, row in agents.items():
        print(f"  agent {name:<8} in-process   p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms")
    for run in runs:
        lat = run["latency"]
        print(f"  ensemble x{run['replicas']} (Ray)        p50 {lat['p50_ms']:8.1f} ms  p99 {lat['p99_ms']:8.1f} ms  "
              f"{run['throughput_cases_per_s']:6.1f} cases/s at {run['concurrency']} clients")
    print(f"  p50 ensemble / slowest agent ({slowest}) = {ratio:.2f} (goal <= 1.15: "
          f"{'met' if ratio <= 1.15 else 'NOT met'})")
    write_json(args.out, result)


if __name__ == "__main__":
    main()

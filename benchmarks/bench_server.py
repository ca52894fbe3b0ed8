"""Server latency/throughput against the same agents called directly, in one run.

Measures, on one face crop (face detection off, so both sides do the same work):

* direct: each agent's ``AgentPredictor`` in this process: single-crop p50 latency and
  batched throughput (crops/s at ``--batch``); "all agents" throughput = one crop through every
  agent in turn (they share the same CPUs);
* server: a real gRPC server on 127.0.0.1 around the Ray ensemble: p50/p99 latency and
  throughput with 1, 4 and 16 concurrent clients (one channel each, in a process of their own),
  and the CPU each process used per request at each level (``cpu_ms_per_request``, from /proc:
  replicas, this process = the gRPC server and case logic, the clients' process).

Goals (issue 15): server p50 at 1 client <= 1.3 x the slowest agent alone; throughput at 16
clients >= 0.8 x the agents' raw batched throughput. With ``--baseline-ref REF`` the same
measurement first runs on REF's code (a temporary worktree), so a change of serving path is
compared in one run. Results go to benchmarks/results/server.json.

    python benchmarks/bench_server.py                 # default bundle (tiny one if none shipped)
    python benchmarks/bench_server.py --levels 1,16 --baseline-ref b64972f   # AgentPool vs Ray Serve
    python benchmarks/bench_server.py --levels 1,16 --layout agents --out /tmp/agents.json
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

from harness import REPO, add_repeats_arg, bench_parser, face_crop, serving, setup, write_json

setup()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from blackboard.config import EnsembleConfig  # noqa: E402


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


def first_dfdc_crop() -> tuple[np.ndarray, str]:
    """A real face crop: the first DFDC crop when the shared data is present, else the astronaut."""
    meta = REPO.parent / "shared/data/dfdc/metadata.csv"
    if not meta.is_file():
        return face_crop()
    import pandas as pd

    return face_crop([meta.parent / pd.read_csv(meta).iloc[0]["path"]])


def pick_bundle(arg: str | None, workdir: Path) -> tuple[Path, str]:
    from agents.bundle import DEFAULT_BUNDLE

    if arg:
        return Path(arg), "given"
    if (DEFAULT_BUNDLE / "manifest.json").is_file():
        return DEFAULT_BUNDLE, "default"
    from tests.conftest import make_tiny_bundle

    return make_tiny_bundle(workdir / "tiny"), "tiny (no default bundle shipped yet)"


def bench_direct(bundle: Path, crop: np.ndarray, *, repeats: int, batch: int) -> dict:
    """Each agent alone in this process."""
    from agents.bundle import load_bundle
    from agents.predictor import AgentPredictor

    loaded = load_bundle(bundle)
    out = {}
    for name in loaded.agent_names:
        predictor = AgentPredictor(loaded, name, batch_size=batch)
        predictor.predict_p_fake([crop])  # warm-up (graph tracing)
        predictor.predict_p_fake([crop] * batch)
        singles = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predictor.predict_p_fake([crop])
            singles.append(time.perf_counter() - t0)
        batches = []
        for _ in range(max(3, repeats // 4)):
            t0 = time.perf_counter()
            predictor.predict_p_fake([crop] * batch)
            batches.append(time.perf_counter() - t0)
        out[name] = {
            "single_p50_ms": percentile_ms(singles, 50),
            "single_p99_ms": percentile_ms(singles, 99),
            "batched_crops_per_s": batch / float(np.median(batches)),
        }
        del predictor
    per_crop_s = sum(1.0 / v["batched_crops_per_s"] for v in out.values())
    return {
        "agents": out,
        "slowest_single_p50_ms": max(v["single_p50_ms"] for v in out.values()),
        "all_agents_batched_crops_per_s": 1.0 / per_crop_s,
        "batch": batch,
    }


def cpu_seconds_by_process() -> dict[int, tuple[str, float]]:
    """pid -> (command line, user+system CPU seconds so far) of every process (Linux /proc)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # the process ended meanwhile
        # Program names without their directories: results carry no machine's absolute paths.
        cmd = " ".join(os.path.basename(a) if a.startswith("/") else a for a in argv if a)
        out[int(pid)] = (cmd[:60], (int(stat[11]) + int(stat[12])) / tick)
    return out


def cpu_ms_per_request(before: dict, after: dict, requests: int, top: int = 6) -> dict[str, float]:
    """The processes that used the most CPU between two snapshots, in ms of CPU per request.

    Where a served case's CPU goes (replicas vs this process: gRPC server, case logic and the
    benchmark's own client threads), to compare with the agents' raw cost."""
    used = sorted(((after[pid][1] - before[pid][1], after[pid][0]) for pid in after if pid in before), reverse=True)
    return {f"{name} [{i}]": round(sec * 1000.0 / requests, 2) for i, (sec, name) in enumerate(used[:top]) if sec > 0}


class LoadProcess:
    """Closed-loop gRPC clients in a process of their own (this script with ``--load``).

    The clients run apart from the server, as they do in use: client threads in the server's
    process would compete with its request threads for the GIL and be counted as its CPU.
    """

    def __init__(self, port: int, clients: int, image: str) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__, "--load", str(port), str(clients), image],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()  # after warm-up: channels connected, graphs traced
        if line != "READY":
            self.proc.kill()
            raise RuntimeError(f"load process did not start (said {line!r})")

    def run(self, requests: int) -> tuple[list[float], float]:
        """(latency of each request in s, wall seconds of all of them)."""
        self.proc.stdin.write(f"{requests}\n")
        self.proc.stdin.flush()
        report = json.loads(self.proc.stdout.readline())
        return report["latencies"], report["wall_s"]

    def __enter__(self) -> "LoadProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def load_main(port: int, clients: int, image: str) -> None:
    """The ``--load`` side: ``clients`` threads, one channel each, send the image in a closed loop."""
    import grpc

    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc

    request = pb.ClassifyRequest(image=Path(image).read_bytes(),
                                 options=pb.ClassifyOptions(face_detection=pb.FACE_DETECTION_OFF))
    local = threading.local()

    def one(_: int) -> float:
        if not hasattr(local, "stub"):
            local.stub = pb_grpc.DetectorStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        t0 = time.perf_counter()
        resp = local.stub.Classify(request, timeout=120)
        elapsed = time.perf_counter() - t0
        assert len(resp.faces) == 1 and not resp.faces[0].degraded, resp
        return elapsed

    with futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(max(8, 2 * clients))))  # warm-up; each thread's channel connects
        print("READY", flush=True)
        for line in sys.stdin:
            t0 = time.perf_counter()
            latencies = list(pool.map(one, range(int(line))))
            print(json.dumps({"latencies": latencies, "wall_s": time.perf_counter() - t0}), flush=True)


def bench_server(bundle: Path, crop: np.ndarray, *, levels: list[int], requests: int, replicas: int,
                 max_batch_size: int, max_wait_ms: float | None, layout: str | None) -> dict:
    import ray

    from blackboard.ensemble import Ensemble
    from fakeface.serve.server import ServerConfig

    ok, buf = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert ok
    ray.init(address="local", include_dashboard=False, num_cpus=os.cpu_count(), log_to_driver=False)
    cpus = None  # the ensemble spreads the cluster's CPUs over its actors
    ensemble = Ensemble(bundle, EnsembleConfig(replicas=replicas, num_cpus_per_actor=cpus,
                                               **({} if layout is None else {"layout": layout}),
                                               max_batch_size=max_batch_size,
                                               **({} if max_wait_ms is None else {"max_wait_ms": max_wait_ms}),
                                               deadline_s=60.0))
    results: dict = {}
    try:
        with serving(ensemble, ServerConfig(workers=32, max_in_flight=128)) as (_, port), \
                tempfile.NamedTemporaryFile(suffix=".png") as image:
            image.write(buf.tobytes())
            image.flush()
            for clients in levels:
                with LoadProcess(port, clients, image.name) as load:
                    cpu_before = cpu_seconds_by_process()
                    latencies, wall = load.run(requests)
                    cpu = cpu_ms_per_request(cpu_before, cpu_seconds_by_process(), requests)
                results[str(clients)] = {
                    "requests": requests,
                    "p50_ms": percentile_ms(latencies, 50),
                    "p99_ms": percentile_ms(latencies, 99),
                    "throughput_rps": requests / wall,
                    "cpu_ms_per_request": cpu,
                }
                print(f"  server, {clients:>2} clients: p50 {results[str(clients)]['p50_ms']:.1f} ms, "
                      f"p99 {results[str(clients)]['p99_ms']:.1f} ms, "
                      f"{results[str(clients)]['throughput_rps']:.1f} req/s", flush=True)
    finally:
        ensemble.shutdown()
        ray.shutdown()
    return {"levels": results, "layout": getattr(ensemble.config, "layout", "agents"),
            "replicas": replicas, "max_batch_size": max_batch_size,
            "max_wait_ms": ensemble.config.max_wait_ms,
            "num_cpus_per_actor": cpus}


def run_baseline(ref: str, argv: list[str]) -> dict:
    """This script, run on ``ref``'s code (a detached worktree), with the same arguments."""
    import shutil
    import subprocess

    rest, skip = [], False
    for arg in argv:  # the same arguments minus --baseline-ref/--out
        if skip:
            skip = False
            continue
        if arg in ("--baseline-ref", "--out"):
            skip = True
            continue
        if not arg.startswith(("--baseline-ref=", "--out=")):
            rest.append(arg)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)
        try:
            script = tree / "benchmarks" / "bench_server.py"
            shutil.copy(Path(__file__), script)  # today's measurement, on the old code
            out = Path(tmp) / "baseline.json"
            print(f"baseline: {ref} in {tree}", flush=True)
            subprocess.run([sys.executable, str(script), *rest, "--out", str(out)], check=True, cwd=tree)
            report = json.loads(out.read_text())
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)
    report["ref"] = ref
    return report


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--load"]:  # the clients' process (LoadProcess)
        load_main(int(argv[1]), int(argv[2]), argv[3])
        return
    parser = bench_parser(__doc__, out="server.json")
    parser.add_argument("--bundle", default=None, help="bundle directory (default: shipped, else a tiny one)")
    parser.add_argument("--requests", type=int, default=48, help="timed requests per concurrency level")
    add_repeats_arg(parser, default=30, per="agent (direct single-crop calls)")
    parser.add_argument("--batch", type=int, default=EnsembleConfig.max_batch_size,
                        help="direct batch size (= server max batch)")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--layout", choices=["sets", "agents"], default=None,
                        help="agents' Serve layout (default: the code's own EnsembleConfig default)")
    parser.add_argument("--max-wait-ms", type=float, default=None,
                        help="batching wait (default: the code's own EnsembleConfig default)")
    parser.add_argument("--baseline-ref", default=None,
                        help="also run this script on a git ref's code (e.g. the commit before a change) first, "
                             "in a temporary worktree, and put both results in --out")
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",")]
    baseline = run_baseline(args.baseline_ref, argv) if args.baseline_ref else None

    with tempfile.TemporaryDirectory() as tmp:
        bundle, kind = pick_bundle(args.bundle, Path(tmp))
        crop, crop_source = first_dfdc_crop()
        print(f"bundle: {bundle} ({kind}); crop: {crop_source} {crop.shape}", flush=True)
        direct = bench_direct(bundle, crop, repeats=args.repeats, batch=args.batch)
        for name, d in direct["agents"].items():
            print(f"  direct {name}: p50 {d['single_p50_ms']:.1f} ms, {d['batched_crops_per_s']:.1f} crops/s "
                  f"batched", flush=True)
        served = bench_server(bundle, crop, levels=levels, requests=args.requests, replicas=args.replicas,
                              max_batch_size=args.batch, max_wait_ms=args.max_wait_ms, layout=args.layout)

    p50_1 = served["levels"].get("1", {}).get("p50_ms")
    thr_16 = served["levels"].get("16", {}).get("throughput_rps")
    goals = {
        "p50_1_client_over_slowest_agent": None if p50_1 is None else p50_1 / direct["slowest_single_p50_ms"],
        "p50_goal_max": 1.3,
        "throughput_16_over_agents_batched": None if thr_16 is None else thr_16 / direct["all_agents_batched_crops_per_s"],
        "throughput_goal_min": 0.8,
    }
    goals["p50_goal_met"] = goals["p50_1_client_over_slowest_agent"] is not None and \
        goals["p50_1_client_over_slowest_agent"] <= 1.3
    goals["throughput_goal_met"] = goals["throughput_16_over_agents_batched"] is not None and \
        goals["throughput_16_over_agents_batched"] >= 0.8
    report = {
        # Paths relative to the checkout: results carry no machine's absolute paths.
        "bundle": os.path.relpath(bundle, REPO) if kind != "tiny" else "tiny test bundle", "bundle_kind": kind,
        "crop": os.path.relpath(crop_source, REPO) if os.path.isabs(crop_source) else crop_source,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "direct": direct, "server": served, "goals": goals,
        "baseline": baseline,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(goals, indent=2))
    write_json(args.out, report)


if __name__ == "__main__":
    main()

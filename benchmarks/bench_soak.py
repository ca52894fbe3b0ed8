"""Footprint and soak: the whole `fakeface serve` process tree under mixed traffic, in one run.

Starts `fakeface serve` exactly as a user does (a subprocess: embedded local Ray, loopback, the
web page on), waits for SERVING, then:

* idle: resident memory (RSS) of every process of the tree, grouped by role (the server
  process, Ray's own daemons, Serve replicas and workers), after ``--settle`` seconds;
* soak: ``--clients`` clients for ``--seconds`` sending a mix of what people send — a face crop,
  a full-HD screenshot with a face, a short clip over ``ClassifyStream``, feedback on an answer,
  and bad inputs (garbage bytes, a 4x4 image) — with RSS sampled every ``--sample-s`` seconds
  and every call's status and latency kept;
* verdict against issue 26's goals: idle RSS of the tree <= 2.5 GB; peak under the soak
  <= 4 GB; growth over the soak (mean of the last tenth of samples vs the first tenth)
  <= 5 %; 0 unexpected errors (bad inputs must get INVALID_ARGUMENT, all else OK or
  RESOURCE_EXHAUSTED under overload).

Results go to benchmarks/results/soak.json.

    python benchmarks/bench_soak.py --seconds 1800 --clients 8    # the 30-minute soak
    python benchmarks/bench_soak.py --seconds 120 --clients 4     # a short check
"""

from __future__ import annotations

import collections
import os
import platform
import threading
import time

import cv2
import grpc
import numpy as np
import psutil

from harness import add_load_args, bench_parser, serve_process, timed_call, tree_rss, use_checkout, write_json

use_checkout()

from agents.command_line import add_bundle_arg  # noqa: E402
from fakeface.rpc.fakeface.v1 import detector_pb2 as pb  # noqa: E402
from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc  # noqa: E402

GIB = 2**30
# Statuses that are a correct answer for each kind of call.
EXPECTED = {"bad": {"INVALID_ARGUMENT"}, "feedback": {"OK", "RESOURCE_EXHAUSTED", "NOT_FOUND"}}
OK_LIKE = {"OK", "RESOURCE_EXHAUSTED"}  # overload is refused on purpose, not an error


def role(proc: psutil.Process, server_pid: int) -> str:
    """A short name for what a process of the tree is."""
    if proc.pid == server_pid:
        return "fakeface serve (gRPC, page, driver)"
    try:
        name = " ".join(proc.cmdline()[:3])
    except psutil.Error:
        return "gone"
    for key, label in (("ServeReplica", "Serve replica"), ("ServeController", "Serve controller"),
                       ("ProxyActor", "Serve proxy"), ("raylet", "raylet"), ("gcs_server", "GCS"),
                       ("dashboard", "dashboard"), ("log_monitor", "log monitor"), ("monitor.py", "monitor"),
                       ("ray_reaper", "reaper"), ("default_worker", "idle Ray worker"), ("ray::", "Ray worker")):
        if key in name:
            return label
    return name[:40]


def rss_by_role(server_pid: int) -> tuple[int, dict[str, int]]:
    """Total RSS of the server and its descendants, and RSS by role (bytes)."""
    by_role: dict[str, int] = collections.Counter()
    for proc, rss in tree_rss(server_pid):
        by_role[role(proc, server_pid)] += rss
    return sum(by_role.values()), dict(by_role)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def payloads() -> dict[str, object]:
    """What the clients send: a crop, a 1080p screenshot with a face, clip frames, bad input."""
    from skimage import data as skdata

    photo = skdata.astronaut()
    crop = np.ascontiguousarray(cv2.resize(photo[30:250, 120:340], (224, 224)))
    screen = np.full((1080, 1920, 3), 30, dtype=np.uint8)
    screen[280:792, 704:1216] = cv2.resize(photo, (512, 512))
    frames = [jpeg(np.roll(crop, shift, axis=1)) for shift in range(0, 40, 8)]
    return {"crop": jpeg(crop), "screen": jpeg(screen), "frames": frames, "garbage": os.urandom(512),
            "tiny": jpeg(np.zeros((4, 4, 3), np.uint8))}


def client_loop(target: str, data: dict, stop: threading.Event, seed: int, out: list) -> None:
    """One client: a weighted random mix of calls until ``stop``; appends (kind, code, seconds)."""
    rng = np.random.default_rng(seed)
    stub = pb_grpc.DetectorStub(grpc.insecure_channel(target))
    off = pb.ClassifyOptions(face_detection=pb.FACE_DETECTION_OFF)
    last_id = ""
    kinds, weights = ["crop", "screen", "clip", "feedback", "bad"], [0.45, 0.2, 0.1, 0.1, 0.15]

    def send(kind: str) -> None:
        nonlocal last_id
        if kind == "crop":
            last_id = stub.Classify(pb.ClassifyRequest(image=data["crop"], options=off), timeout=30).request_id
        elif kind == "screen":
            stub.Classify(pb.ClassifyRequest(image=data["screen"]), timeout=30)
        elif kind == "clip":
            requests = (pb.ClassifyRequest(image=f, options=off) for f in data["frames"])
            for _ in stub.ClassifyStream(requests, timeout=60):
                pass
        elif kind == "feedback":
            stub.Feedback(pb.FeedbackRequest(request_id=last_id, label=pb.LABEL_REAL), timeout=10)
        else:
            stub.Classify(pb.ClassifyRequest(image=data[str(rng.choice(["garbage", "tiny"]))]), timeout=10)

    while not stop.is_set():
        kind = str(rng.choice(kinds, p=weights))
        if kind == "feedback" and not last_id:
            continue  # nothing answered yet to give feedback on
        out.append((kind, *timed_call(send, kind)))


def main() -> None:
    parser = bench_parser(__doc__, show_defaults=True, out="soak.json")
    add_bundle_arg(parser)
    add_load_args(parser, clients=8, seconds=1800.0, phase="the soak")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds idle after SERVING before measuring")
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    args = parser.parse_args()

    serve_args = ["--bundle", args.bundle] if args.bundle else []
    with serve_process(args.out.with_suffix(".serve.log"), *serve_args) as served:
        server, target, started_s = served.process, f"127.0.0.1:{served.port}", served.serving_s
        time.sleep(args.settle)
        idle_total, idle_roles = rss_by_role(server.pid)
        print(f"SERVING after {started_s:.1f} s; idle tree RSS {idle_total / GIB:.2f} GiB", flush=True)
        data = payloads()
        stop = threading.Event()
        calls: list[tuple[str, str, float]] = []
        threads = [threading.Thread(target=client_loop, args=(target, data, stop, i, calls), daemon=True)
                   for i in range(args.clients)]
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        peak_roles: dict[str, int] = {}
        while time.monotonic() - t0 < args.seconds:
            time.sleep(args.sample_s)
            total, roles = rss_by_role(server.pid)
            samples.append((time.monotonic() - t0, total))
            if total >= max(s for _, s in samples):
                peak_roles = roles
            print(f"{samples[-1][0]:7.0f} s  tree RSS {total / GIB:.2f} GiB  calls {len(calls)}", flush=True)
        stop.set()
        for thread in threads:
            thread.join(90)
    tenth = max(1, len(samples) // 10)
    first = float(np.mean([s for _, s in samples[:tenth]]))
    last = float(np.mean([s for _, s in samples[-tenth:]]))
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    latency: dict[str, list[float]] = collections.defaultdict(list)
    errors = 0
    for kind, code, seconds in calls:
        by_kind[kind][code] += 1
        if code == "OK":
            latency[kind].append(seconds)
        if code not in EXPECTED.get(kind, OK_LIKE):
            errors += 1
    peak = max((s for _, s in samples), default=0)
    results = {
        "host": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
        "clients": args.clients, "seconds": args.seconds, "serving_after_s": round(started_s, 1),
        "idle_rss_gib": round(idle_total / GIB, 3),
        "idle_rss_by_role_mib": {k: round(v / 2**20) for k, v in sorted(idle_roles.items(), key=lambda kv: -kv[1])},
        "peak_rss_gib": round(peak / GIB, 3),
        "peak_rss_by_role_mib": {k: round(v / 2**20) for k, v in sorted(peak_roles.items(), key=lambda kv: -kv[1])},
        "rss_growth_pct": round(100.0 * (last - first) / first, 2) if first else None,
        "calls": len(calls), "unexpected_errors": errors,
        "codes_by_kind": {k: dict(v) for k, v in by_kind.items()},
        "p50_ms_by_kind": {k: round(float(np.percentile(v, 50)) * 1000, 1) for k, v in latency.items() if v},
        "p99_ms_by_kind": {k: round(float(np.percentile(v, 99)) * 1000, 1) for k, v in latency.items() if v},
        "rss_samples_gib": [(round(t, 1), round(s / GIB, 3)) for t, s in samples],
    }
    results["goals"] = {
        "idle_rss_le_2.5_gb": results["idle_rss_gib"] * GIB <= 2.5e9,
        "peak_rss_le_4_gb": results["peak_rss_gib"] * GIB <= 4e9,
        "growth_le_5_pct": results["rss_growth_pct"] is not None and results["rss_growth_pct"] <= 5.0,
        "no_errors": errors == 0,
    }
    write_json(args.out, results, echo=True, hide=("rss_samples_gib",))


if __name__ == "__main__":
    main()

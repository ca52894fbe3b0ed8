"""Hostile payloads, load and faults against a real detector server, in one run.

Starts the ensemble (real local Ray, loopback and token auth as `fakeface serve` runs it) and a
real gRPC server on 127.0.0.1, then:

* fuzz: every hostile payload kind ``--rounds`` times (malformed protobuf, truncated and
  oversized messages, invalid UTF-8, 1x1..7x7 images, 100000x8 images, PNG header bombs,
  progressive-JPEG scan bombs, undefined enum values, a 1 MiB feedback id, an over-long source):
  status codes by kind and latency p50/p99;
* bomb: other clients' latency while scan bombs with a 2 s deadline arrive;
* load: ``--clients`` clients classifying a face crop for ``--seconds``: codes, p50/p99;
* faults: the same load while the face detector's Serve replica is killed once and one agent's replica
  ``--agent-kills`` times (Serve replaces them, no cap): codes, p50/p99, replacements seen;
* burst: ``4 x max_in_flight`` calls at once plus health probes: refused calls and probes answered;
* RSS of this process and its Ray workers before and after.

Goals: 0 INTERNAL, 0 crashes, health answered during the burst, every request during faults
answered OK (degraded allowed), RSS growth < 20 %. Results go to benchmarks/results/fuzz.json.

    python benchmarks/bench_fuzz.py                       # default bundle
    python benchmarks/bench_fuzz.py --bundle DIR --seconds 20 --rounds 50
"""

from __future__ import annotations

import collections
import io
import os
import platform
import threading
import time
from concurrent import futures
from pathlib import Path

from harness import REPO, add_load_args, bench_parser, setup, timed_call, tree_rss, write_json

setup(tf_log_level="3")

import cv2  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402

from agents.command_line import add_bundle_arg  # noqa: E402
from blackboard.ray_runtime import local_ray_env  # noqa: E402
from tests.e2e.grpc_helpers import bomb_png  # noqa: E402  (one copy of the decompression-bomb PNG)

local_ray_env()


def png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", rgb)
    assert ok
    return buf.tobytes()


def scan_bomb(side: int = 6000, scans: int = 2000) -> bytes:
    """A flat ``side`` x ``side`` progressive JPEG with its last (59-byte) scan repeated: ~330 KB."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 128, dtype=np.uint8)).save(buf, "JPEG", progressive=True, quality=50)
    data = buf.getvalue()
    last, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * scans + data[end:]


def rss_mb(root: int) -> float:
    """Resident memory of ``root`` and every process below it, in MiB."""
    return sum(rss for _, rss in tree_rss(root)) / 2**20


def stats(codes: collections.Counter, latencies: list[float]) -> dict:
    lat = np.asarray(latencies or [0.0]) * 1000.0
    return {"codes": dict(codes), "n": int(sum(codes.values())), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def main() -> None:
    parser = bench_parser(__doc__, show_defaults=True, out="fuzz.json")
    add_bundle_arg(parser)
    parser.add_argument("--rounds", type=int, default=30, help="requests per hostile payload kind")
    add_load_args(parser, clients=16, seconds=20.0, phase="the load and fault phases")
    parser.add_argument("--agent-kills", type=int, default=4, help="kills of one agent's actor in the fault phase")
    args = parser.parse_args()

    import ray

    from blackboard.ensemble import Ensemble
    from blackboard.config import EnsembleConfig
    from blackboard.ray_runtime import init_ray
    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
    from fakeface.serve.server import ServerConfig, create_server
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from skimage import data as skdata

    init_ray(num_cpus=os.cpu_count())
    ensemble = Ensemble(args.bundle, EnsembleConfig(num_cpus_per_actor=0.25))
    import logging
    import tempfile

    logging.getLogger("fakeface").setLevel(logging.ERROR)  # thousands of refusals: keep the output readable
    feedback = Path(tempfile.mkdtemp(prefix="bench-fuzz-")) / "feedback.jsonl"
    config = ServerConfig(max_in_flight=32, feedback_path=str(feedback))
    server, port = create_server("127.0.0.1:0", ensemble, config)
    assert server.wait_until_serving(timeout=900)
    target = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.DetectorStub(channel)
    raw = channel.unary_unary("/fakeface.v1.Detector/Classify", request_serializer=None, response_deserializer=None)
    health = health_pb2_grpc.HealthStub(channel)
    photo = skdata.astronaut()[:, :, ::-1]
    crop = np.ascontiguousarray(cv2.resize(photo[30:250, 120:340], (224, 224)))
    crop_png, photo_png = png(crop), png(np.ascontiguousarray(photo))
    off = pb.ClassifyOptions(face_detection=pb.FACE_DETECTION_OFF)

    def ok_request() -> None:
        stub.Classify(pb.ClassifyRequest(image=crop_png, options=off), timeout=30)

    for _ in range(3):
        ok_request()
    rss_before = rss_mb(os.getpid())
    results: dict = {"host": platform.node(), "cpus": os.cpu_count(), "bundle": os.path.relpath(ensemble.bundle.path, REPO),
                     "bundle_version": ensemble.bundle_version, "rss_mb_before": round(rss_before, 1)}

    # -- fuzz ---------------------------------------------------------------------------------
    bad_utf8 = b"\x12\x05\x1a\x03\xff\xfe\xfd"
    nested = b"\x12" + b"\xff\xff\x03" + b"\x12\xfa\xff\x03" * 50
    kinds = {
        "garbage_protobuf": lambda i: raw(os.urandom(64 + i), timeout=10),
        "truncated_protobuf": lambda i: raw(pb.ClassifyRequest(image=crop_png).SerializeToString()[:40 + i], timeout=10),
        "oversized_length_prefix": lambda i: raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10),
        "invalid_utf8_source": lambda i: raw(bad_utf8, timeout=10),
        "deep_nesting": lambda i: raw(nested, timeout=10),
        "oversized_message": lambda i: raw(b"\x0a" + b"\xff" * (config.max_message_bytes + 16), timeout=10),
        "tiny_image": lambda i: stub.Classify(pb.ClassifyRequest(image=png(np.zeros((1 + i % 7, 1 + i % 7, 3), np.uint8))), timeout=10),
        "aspect_100000x8": lambda i: stub.Classify(pb.ClassifyRequest(image=png(np.zeros((8, 100_000, 3), np.uint8))), timeout=10),
        "aspect_8x100000": lambda i: stub.Classify(pb.ClassifyRequest(image=png(np.zeros((100_000, 8, 3), np.uint8))), timeout=10),
        "png_header_bomb": lambda i: stub.Classify(pb.ClassifyRequest(image=bomb_png()), timeout=10),
        "undefined_detect_mode": lambda i: stub.Classify(pb.ClassifyRequest(image=crop_png, options=pb.ClassifyOptions(face_detection=9)), timeout=10),
        "long_source": lambda i: stub.Classify(pb.ClassifyRequest(image=crop_png, options=pb.ClassifyOptions(source="s" * 100_000)), timeout=10),
        "feedback_undefined_label": lambda i: stub.Feedback(pb.FeedbackRequest(request_id="a" * 32, label=7), timeout=10),
        "feedback_1mib_id": lambda i: stub.Feedback(pb.FeedbackRequest(request_id="x" * 2**20, label=pb.LABEL_FAKE), timeout=10),
    }
    fuzz = {}
    all_codes: collections.Counter = collections.Counter()
    for kind, fn in kinds.items():
        codes: collections.Counter = collections.Counter()
        lat = []
        for i in range(args.rounds):
            code, seconds = timed_call(fn, i)
            codes[code] += 1
            lat.append(seconds)
        fuzz[kind] = stats(codes, lat)
        all_codes.update(codes)
        print(f"fuzz {kind:<26} {dict(codes)}", flush=True)
    results["fuzz"] = fuzz
    results["fuzz_total"] = dict(all_codes)

    # -- scan bomb next to normal clients -----------------------------------------------------
    bomb = scan_bomb()
    stop = threading.Event()
    normal: list[float] = []

    def steady() -> None:
        while not stop.is_set():
            code, seconds = timed_call(ok_request)
            if code == "OK":
                normal.append(seconds)

    with futures.ThreadPoolExecutor(3) as pool:
        workers = [pool.submit(steady) for _ in range(2)]
        time.sleep(3)
        baseline = list(normal)
        bomb_codes: collections.Counter = collections.Counter()
        bomb_lat = []
        for _ in range(5):
            code, seconds = timed_call(stub.Classify, pb.ClassifyRequest(image=bomb), timeout=2)
            bomb_codes[code] += 1
            bomb_lat.append(seconds)
        during = normal[len(baseline):]
        stop.set()
        for w in workers:
            w.result()
    results["scan_bomb"] = {"bytes": len(bomb), **stats(bomb_codes, bomb_lat),
                            "others_p50_ms_before": round(float(np.median(baseline or [0])) * 1000, 1),
                            "others_p50_ms_during": round(float(np.median(during or [0])) * 1000, 1)}
    print("scan bomb", results["scan_bomb"], flush=True)

    # -- load, then load with faults ----------------------------------------------------------
    def load(seconds: float, during=None) -> dict:
        codes: collections.Counter = collections.Counter()
        lat: list[float] = []
        lock = threading.Lock()
        end = time.monotonic() + seconds

        def client() -> None:
            with grpc.insecure_channel(target) as ch:
                s = pb_grpc.DetectorStub(ch)
                while time.monotonic() < end:
                    code, sec = timed_call(s.Classify, pb.ClassifyRequest(image=photo_png), timeout=30)
                    with lock:
                        codes[code] += 1
                        lat.append(sec)

        with futures.ThreadPoolExecutor(args.clients + 1) as pool:
            jobs = [pool.submit(client) for _ in range(args.clients)]
            if during is not None:
                during()
            for job in jobs:
                job.result()
        return stats(codes, lat)

    results["load"] = load(args.seconds)
    print("load", results["load"], flush=True)

    def faults() -> None:
        time.sleep(1.0)
        ray.kill(ensemble.actors("detector")[0])  # Serve replaces the replica
        agent = ensemble.agent_names[0]
        for _ in range(args.agent_kills):
            time.sleep(max(args.seconds / (args.agent_kills + 2), 0.5))
            ray.kill(ensemble.actors(agent)[0])

    results["faults"] = load(args.seconds + 10, during=faults)
    end = time.monotonic() + 120
    while not all(ensemble.component_status(timeout_s=5).values()) and time.monotonic() < end:
        time.sleep(1)
    results["faults"]["restarts_seen"] = ensemble.describe().restarts
    results["faults"]["all_up_after"] = all(ensemble.component_status(timeout_s=5).values())
    print("faults", results["faults"], flush=True)

    # -- burst past the bound, with health probes ---------------------------------------------
    burst_codes: collections.Counter = collections.Counter()
    health_codes: collections.Counter = collections.Counter()
    with futures.ThreadPoolExecutor(4 * config.max_in_flight + 8) as pool:
        jobs = [pool.submit(call, stub.Classify, pb.ClassifyRequest(image=photo_png), timeout=30)
                for _ in range(4 * config.max_in_flight)]
        probes = [pool.submit(call, health.Check, health_pb2.HealthCheckRequest(service=""), timeout=2)
                  for _ in range(28)]
        for job in jobs:
            burst_codes[job.result()[0]] += 1
        for probe in probes:
            health_codes[probe.result()[0]] += 1
    results["burst"] = {"calls": dict(burst_codes), "health_probes": dict(health_codes)}
    print("burst", results["burst"], flush=True)

    results["rss_mb_after"] = round(rss_mb(os.getpid()), 1)
    results["feedback_log_bytes"] = feedback.stat().st_size if feedback.exists() else 0
    results["server_alive"] = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == 1
    channel.close()
    server.drain(5)
    ensemble.shutdown()
    ray.shutdown()
    write_json(args.out, results, echo=True, hide=("fuzz",))


if __name__ == "__main__":
    main()

"""First answers after start-up: do calls made right after SERVING meet a short deadline?

Starts `fakeface serve` (a subprocess, web page on, so the page's heat-map warm-up runs) from a
checkout, waits for its ``SERVING`` line, then at once sends ``--calls`` Classify calls from
``--clients`` concurrent clients, each with a ``--deadline-s`` deadline, and counts the calls that
ran out of time (issue 26: 7 of 20 at 2 s while the warm-up ran after SERVING). Run it against
two checkouts to compare (``--repo``). Results go to benchmarks/results/first_answers.json.

    python benchmarks/bench_first_answers.py
    python benchmarks/bench_first_answers.py --repo OTHER_CHECKOUT --out first-main.json
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import tempfile
import time
from concurrent import futures

from harness import REPO, add_load_args, bench_parser, stop_server, timed_call, use_checkout, write_json

use_checkout()

from blackboard.ray_runtime import free_ports  # noqa: E402


def _image() -> tuple[bytes, str]:
    """A real frame with a face: the first DFDC test fake when the shared data is present."""
    import cv2

    from benchmarks.bench_server import first_dfdc_crop

    rgb, source = first_dfdc_crop()
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes(), source


def main() -> None:
    parser = bench_parser(__doc__, out="first_answers.json")
    parser.add_argument("--repo", default=str(REPO), help="checkout whose `fakeface serve` runs")
    parser.add_argument("--calls", type=int, default=20)
    add_load_args(parser, clients=4, phase="the burst of first calls")
    parser.add_argument("--deadline-s", type=float, default=2.0)
    args = parser.parse_args()

    import grpc

    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc

    image, source = _image()
    port, http_port = free_ports(2)
    env = {**os.environ, "PYTHONPATH": args.repo, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2",
           # A state folder of its own: no feedback log or controller state of another run.
           "XDG_STATE_HOME": tempfile.mkdtemp(prefix="bench-first-answers-")}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "fakeface.cli", "serve", "--port", str(port), "--http-port",
                             str(http_port)], cwd=args.repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        if "SERVING" not in line:
            raise SystemExit(f"serve did not start: {line!r}")
        serving_s = time.monotonic() - started
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.DetectorStub(channel)
        request = pb.ClassifyRequest(image=image, options=pb.ClassifyOptions(face_detection=pb.FACE_DETECTION_AUTO))
        lock, results = threading.Lock(), []
        t0 = time.monotonic()

        def call(i: int) -> None:
            sent_s = time.monotonic() - t0
            code, seconds = timed_call(stub.Classify, request, timeout=args.deadline_s)
            with lock:
                results.append({"i": i, "sent_s": round(sent_s, 3), "code": code, "latency_s": round(seconds, 3)})

        with futures.ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(call, range(args.calls)))
        channel.close()
    finally:
        stop_server(proc)
    late = [r for r in results if r["code"] == "DEADLINE_EXCEEDED"]
    latencies = sorted(r["latency_s"] for r in results if r["code"] == "OK")
    summary = {
        "repo": args.repo, "commit": subprocess.run(["git", "-C", args.repo, "rev-parse", "--short", "HEAD"],
                                                    capture_output=True, text=True).stdout.strip(),
        "calls": args.calls, "clients": args.clients, "deadline_s": args.deadline_s, "image": source,
        "serving_after_s": round(serving_s, 1), "past_deadline": len(late),
        "errors": sorted({r["code"] for r in results} - {"OK"}),
        "ok_p50_s": latencies[len(latencies) // 2] if latencies else None,
        "ok_max_s": latencies[-1] if latencies else None,
        "load_average_1m": os.getloadavg()[0], "host": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "calls_detail": sorted(results, key=lambda r: r["i"]),
    }
    write_json(args.out, summary, echo=True, hide=("calls_detail",))


if __name__ == "__main__":
    main()

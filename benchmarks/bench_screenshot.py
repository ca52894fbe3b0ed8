"""One person's request, as the product is used: a full-HD screenshot, and a crowd photo.

A real gRPC server on 127.0.0.1 around the Serve ensemble and the shipped bundle (an embedded
local Ray, as `make serve` starts), one client, one request at a time, face detection on
(``FACE_DETECTION_AUTO``, the page's default). Inputs:

* ``screenshot_png`` / ``screenshot_jpeg``: a 1920x1080 frame of a DFDC video
  (../shared/data/videos), encoded as the page receives a screenshot (PNG) or a photo (JPEG);
* ``crowd_jpeg``: 35 DFDC face crops tiled 7x5 (1568x1120), more faces than one micro-batch.

Before the fix of 2026-11-27 none of these was answered: Serve's 4 MiB cap between deployments
and its micro-batch limit made every such request end in DEADLINE_EXCEEDED.

    flock /tmp/bench.lock python benchmarks/bench_screenshot.py --repeats 8
"""

from __future__ import annotations

import os
import platform
import statistics
import time

from harness import REPO, add_repeats_arg, bench_parser, now, serving, setup, write_json

setup()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def inputs(frame_index: int = 60) -> dict[str, bytes]:
    """The encoded requests (see the module docstring)."""
    video = sorted((DATA / "videos").rglob("*.mp4"))[0]
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"could not read frame {frame_index} of {video}")
    crops = sorted((DATA / "dfdc-test" / "real").glob("*"))[:35]
    tiles = [cv2.resize(cv2.imread(str(p)), (224, 224)) for p in crops]
    crowd = np.vstack([np.hstack(tiles[row * 7:(row + 1) * 7]) for row in range(5)])
    return {"screenshot_png": cv2.imencode(".png", frame)[1].tobytes(),
            "screenshot_jpeg": cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(),
            "crowd_jpeg": cv2.imencode(".jpg", crowd, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()}


def main() -> None:
    parser = bench_parser(__doc__, out="screenshot.json")
    add_repeats_arg(parser, default=8, per="input (after one warm-up)")
    args = parser.parse_args()

    import grpc
    import ray

    from blackboard.ensemble import Ensemble
    from blackboard.config import EnsembleConfig
    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
    from fakeface.serve.server import ServerConfig

    requests = inputs()
    ray.init(address="local", include_dashboard=False, num_cpus=os.cpu_count(), log_to_driver=False)
    results: dict = {}
    try:
        with serving(Ensemble(None, EnsembleConfig(deadline_s=60.0)), ServerConfig(), grace_s=5) as (_, port), \
                grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DetectorStub(channel)
            for name, image in requests.items():
                request = pb.ClassifyRequest(image=image, options=pb.ClassifyOptions(source=name))
                stub.Classify(request, timeout=120)  # warm-up: first trace of this batch shape
                times, answer = [], None
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    answer = stub.Classify(request, timeout=120)
                    times.append((time.perf_counter() - start) * 1000.0)
                results[name] = {
                    "bytes": len(image), "size": [answer.image_width, answer.image_height],
                    "faces": len(answer.faces), "p50_ms": statistics.median(times), "max_ms": max(times),
                    "server_timings_ms": {k: round(v, 1) for k, v in answer.timings_ms.items()},
                }
                print(f"{name:>16}: {answer.image_width}x{answer.image_height}, {len(answer.faces)} faces, "
                      f"p50 {results[name]['p50_ms']:.0f} ms  {results[name]['server_timings_ms']}", flush=True)
    finally:
        ray.shutdown()
    record = {"benchmark": "one client, one request at a time: full-HD screenshot and a crowd, detection on",
              "date": now(),
              "machine": {"cpus": os.cpu_count(), "processor": platform.machine()},
              "bundle": "default (agents/default_bundle)", "repeats": args.repeats, "inputs": results}
    write_json(args.out, record, indent=1)


if __name__ == "__main__":
    main()

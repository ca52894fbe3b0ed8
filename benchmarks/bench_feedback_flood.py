"""1 000 wrong-label feedback posts from 50 anonymous clients against a real gRPC server: does any
answer change? (issue 25: "nothing a visitor posts changes what another visitor is told").

Serves the shipped bundle on a loopback gRPC port (agents in process, no Ray: the feedback path
is the service's and does not depend on how the agents run), classifies ``--probes`` dfdc-test
crops, then sends ``--posts`` Feedback calls, each from one of ``--clients`` bearer-token
identities, each saying the opposite of the answer it names, and classifies the probes again.
Reports how many posts were stored or rate-limited, the Feedback latency, and the largest change
of any probe's p_fake and controller version (both must be 0). Then asks the operator's promotion
to learn from the poisoned log and reports whether the replay guard let it through.

    python benchmarks/bench_feedback_flood.py [--posts 1000 --clients 50 --probes 20]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, bench_parser, serving, use_checkout

use_checkout()


def main() -> int:
    parser = bench_parser(__doc__, show_defaults=True)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--crops", default=str(REPO / "../shared/data/dfdc-test"))
    parser.add_argument("--burst", type=int, default=None,
                        help="per-client feedback burst (default: the server's); a large one stores every post")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import grpc
    import numpy as np

    from blackboard.feedback_promotion import PromotionRule
    from blackboard.inprocess import InProcessBoard
    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
    from fakeface.serve.server import ServerConfig

    files = sorted(Path(args.crops).glob("fake/*.jpg"))[: args.probes // 2] + \
        sorted(Path(args.crops).glob("real/*.jpg"))[: args.probes - args.probes // 2]
    if not files:
        print(f"no crops under {args.crops}", file=sys.stderr)
        return 2
    board = InProcessBoard()
    log_dir = Path(tempfile.mkdtemp(prefix="fakeface-flood-"))
    # The server's default per-client limit (burst 5 at 0.1/s) bounces most of a flood; --burst
    # lifts it to show that even stored posts change nothing.
    limits = {} if args.burst is None else {"feedback_burst": args.burst}
    try:
        with serving(board, ServerConfig(feedback_path=str(log_dir / "fb.jsonl"), **limits),
                     timeout_s=120) as (server, port):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.DetectorStub(channel)

                def ask():
                    return [stub.Classify(pb.ClassifyRequest(image=f.read_bytes(), options=pb.ClassifyOptions(
                        face_detection=pb.FACE_DETECTION_OFF)), timeout=60) for f in files]

                before = ask()
                stored = limited = 0
                latency = []
                for i in range(args.posts):
                    answer = before[i % len(before)]
                    wrong = pb.LABEL_REAL if answer.faces[0].p_fake >= answer.faces[0].threshold else pb.LABEL_FAKE
                    t0 = time.perf_counter()
                    try:
                        ack = stub.Feedback(pb.FeedbackRequest(request_id=answer.request_id, label=wrong), timeout=30,
                                            metadata=(("authorization", f"Bearer visitor-{i % args.clients}"),))
                        stored += int(ack.stored and not ack.applied)
                    except grpc.RpcError as err:
                        if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                            raise
                        limited += 1
                    latency.append(time.perf_counter() - t0)
                after = ask()
            drift = max(abs(a.faces[0].p_fake - b.faces[0].p_fake) for a, b in zip(after, before))
            versions = {a.controller_version for a in after} | {b.controller_version for b in before}
            promotion = server.service.admin.promote(PromotionRule(min_clients=5, min_cases=5))
            out = {"posts": args.posts, "clients": args.clients, "probes": len(files), "stored": stored,
                   "rate_limited": limited, "feedback_ms_p50": round(1000 * float(np.median(latency)), 2),
                   "max_p_fake_change": drift, "controller_versions_seen": sorted(versions),
                   "distinct_request_ids_in_log": server.service.feedback_log.cases,
                   "operator_promotion_of_the_poisoned_log": promotion.to_dict()}
    finally:
        board.shutdown()
    print(json.dumps(out, indent=2))
    return 0 if out["max_p_fake_change"] == 0 and len(out["controller_versions_seen"]) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())

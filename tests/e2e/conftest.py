"""Fixtures of the end-to-end tier: a real gRPC server (one per module) on the session's ensemble."""

from __future__ import annotations

import grpc
import pytest
from grpc_helpers import png_bytes, start

from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def served(ensemble, tmp_path_factory):
    feedback = tmp_path_factory.mktemp("feedback") / "feedback.jsonl"
    server, port = start(ensemble, feedback_path=str(feedback))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield {"server": server, "port": port, "channel": channel, "stub": pb_grpc.DetectorStub(channel),
               "feedback": feedback}
    finally:
        channel.close()
        server.stop(0).wait()


@pytest.fixture(scope="module")
def face_png(face_rgb):
    return png_bytes(face_rgb)


@pytest.fixture(scope="module")
def crop_png(face_crop):
    return png_bytes(face_crop)

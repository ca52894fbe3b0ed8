"""Helpers of the gRPC end-to-end tests: request builders, image payloads, a server on the session ensemble."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.serve.server import ServerConfig, create_server
from fakeface.rpc_convert import SERVICE_NAME

AGENTS = {"custom", "lenet", "vgg16"}
MAX_MESSAGE = 2 * 1024 * 1024


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header claiming 3.6 gigapixels with a tiny body (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def start(ensemble, **overrides):
    config = ServerConfig(max_message_bytes=MAX_MESSAGE, workers=24, **overrides)
    server, port = create_server("127.0.0.1:0", ensemble, config)
    assert server.wait_until_serving(timeout=300)
    return server, port


def classify_request(image: bytes, *, detect=pb.FACE_DETECTION_AUTO, source: str = "", seq: int = 0):
    options = pb.ClassifyOptions(face_detection=detect)
    if source:
        options.source = source
    return pb.ClassifyRequest(image=image, options=options, sequence_id=seq)


def health_status(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status

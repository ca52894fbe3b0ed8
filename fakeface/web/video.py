"""The page's videos: telling a clip from an image, and its sampled frames through the service."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc_convert import case_to_proto
from fakeface.service import ClassifyOptions, DetectorService
from fakeface.service_calls import Caller

VIDEO_SUFFIX = {"mp4": ".mp4", "ebml": ".webm", "avi": ".avi"}
IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"avif", b"avis", b"mif1", b"msf1")  # ISO-BMFF still images


def sniff_video(head: bytes) -> str | None:
    """The video container of a file from its first bytes ("mp4", "ebml", "avi"), or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] not in IMAGE_BRANDS:
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "ebml"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


class ServiceBackend:
    """Lets `fakeface.classify.Runner` sample a video through the service (its in-process backend API).

    Each frame is PNG-encoded (lossless) and classified as one image call of the service, so video
    frames meet the same limits, deadlines, logs and metrics as images. It remembers the request
    id of the frame with the most-fake face, which is the frame the page shows and the one
    feedback on the clip refers to.

    Args:
        service: the running `DetectorService`.
        caller: the visitor who sent the clip.
        on_frame: called with the number of frames done after each frame.
    """

    def __init__(self, service: DetectorService, caller: Caller,
                 on_frame: Callable[[int], Any] | None = None) -> None:
        self.service = service
        self.caller = caller
        self.on_frame = on_frame
        self.frames = 0
        self.top: tuple[float, str] = (-1.0, "")  # (largest p_fake, its request id)
        self.last_request_id = ""

    def classify_rgb(self, rgb: np.ndarray, *, detect: str = "auto", heatmaps: bool = False, source: str = "",
                     timeout_s: float = 60.0) -> pb.ClassifyResponse:
        """One frame as one image call (``timeout_s`` is the Runner's; the service's deadline applies)."""
        from vision.media import encode_frame

        options = ClassifyOptions(detect=detect, heatmaps=heatmaps, source=source)
        with self.service.call("Classify", self.caller) as call:
            answer = self.service.classify(call, encode_frame(rgb, self.service.max_image_bytes), options)
        resp = case_to_proto(answer.case, heatmaps=answer.heatmaps)
        self.frames += 1
        self.last_request_id = resp.request_id
        top = max((f.p_fake for f in resp.faces if f.label != pb.LABEL_UNSPECIFIED), default=-1.0)
        if top > self.top[0]:
            self.top = (float(top), resp.request_id)
        if self.on_frame is not None:
            self.on_frame(self.frames)
        return resp

    def close(self) -> None:
        return None

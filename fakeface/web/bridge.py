"""The web page's way into the detector: the gRPC servicer's own methods, called in process.

Every request from the page runs through `DetectorServicer.Classify`, `Feedback` and
`GetModelInfo` with a `LocalContext` standing in for the gRPC call context, so the page gets the
same decoding, limits, deadlines, metrics, feedback log and controller safeguards as a gRPC
client. A refusal (``context.abort``) comes back as `WebRefusal`, carrying the gRPC status code
and the HTTP status the page answers with.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Iterable, NoReturn

import grpc
import numpy as np

from blackboard.board import NO_FACE_HINT
from fakeface.serve.servicer import DetectorServicer
from fakeface.rpc.fakeface.v1 import detector_pb2 as pb

# gRPC status -> HTTP status for the page's JSON refusals.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
DETECT_ENUMS = {"auto": pb.FACE_DETECTION_AUTO, "on": pb.FACE_DETECTION_ON, "off": pb.FACE_DETECTION_OFF}
LABEL_ENUMS = {"real": pb.LABEL_REAL, "fake": pb.LABEL_FAKE}


class WebRefusal(Exception):
    """A request the page must refuse, with a message meant for the person using it.

    Args:
        status: HTTP status code of the answer.
        message: one or two plain sentences: what was wrong and what to do.
        code: the gRPC status name when the refusal came from the servicer.
    """

    def __init__(self, status: int, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class LocalContext(grpc.ServicerContext):
    """A `grpc.ServicerContext` for calls made in this process (no network, no peer).

    Args:
        metadata: invocation metadata, e.g. ``(("authorization", "Bearer ..."),)``.
        timeout_s: the caller's deadline; None lets the servicer use its default.
        peer: the HTTP client in gRPC's peer form (``ipv4:1.2.3.4:0``), so per-client limits see
            each visitor of the page, not one shared "web" client.
    """

    def __init__(self, metadata: Iterable[tuple[str, str]] = (), timeout_s: float | None = None,
                 peer: str = "web:local") -> None:
        self._metadata = tuple(metadata)
        self._peer = peer
        self._end = None if timeout_s is None else time.monotonic() + float(timeout_s)
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._callbacks: list[Any] = []

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self._code, self._details = code, details
        raise WebRefusal(HTTP_STATUS.get(code, 500), details, code=code.name)

    def abort_with_status(self, status: Any) -> NoReturn:
        self.abort(status.code, status.details)

    def time_remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, Any]:
        return {}

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        return None

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        return None

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def is_active(self) -> bool:
        return self._end is None or time.monotonic() < self._end

    def cancel(self) -> None:
        self._end = time.monotonic()

    def add_callback(self, callback: Any) -> bool:
        self._callbacks.append(callback)
        return True


def classify(servicer: DetectorServicer, image: bytes, *, detect: str = "auto", heatmaps: bool = False,
             source: str = "") -> pb.ClassifyResponse:
    """One encoded image through `DetectorServicer.Classify`.

    Raises:
        WebRefusal: bad detection mode, or whatever the servicer refuses (bad image, deadline,
            models loading, ...).
    """
    if detect not in DETECT_ENUMS:
        raise WebRefusal(400, f"detect must be one of {sorted(DETECT_ENUMS)}, received {detect!r}.")
    options = pb.ClassifyOptions(face_detection=DETECT_ENUMS[detect], want_heatmaps=heatmaps)
    if source:
        options.source = source
    return servicer.Classify(pb.ClassifyRequest(image=image, options=options), LocalContext())


def http_peer(host: str | None) -> str:
    """An HTTP client's address in gRPC's peer form (``ipv4:HOST:0`` / ``ipv6:[HOST]:0``)."""
    if not host:
        return "web:local"
    return f"ipv6:[{host}]:0" if ":" in host else f"ipv4:{host}:0"


def feedback(servicer: DetectorServicer, request_id: str, label: str, *, client: str | None = None
             ) -> pb.FeedbackResponse:
    """The true label of an earlier answer through `DetectorServicer.Feedback`.

    Args:
        client: the HTTP client's host: the servicer's per-client rate limit keys on it.

    Raises:
        WebRefusal: a label other than "real"/"fake", or the servicer's refusal (no feedback
            log, empty request id, ...).
    """
    enum = LABEL_ENUMS.get(str(label).lower())
    if enum is None:
        raise WebRefusal(400, f"label must be 'real' or 'fake', received {label!r}.")
    return servicer.Feedback(pb.FeedbackRequest(request_id=request_id, label=enum), LocalContext(peer=http_peer(client)))


def model_info(servicer: DetectorServicer) -> pb.ModelInfo:
    """`DetectorServicer.GetModelInfo` (raises `WebRefusal` while the models load)."""
    return servicer.GetModelInfo(pb.GetModelInfoRequest(), LocalContext())


# --------------------------------------------------------------------------- JSON views


def label_name(label: int) -> str:
    """``LABEL_FAKE`` -> ``"fake"``; any label added to the contract later maps the same way."""
    try:
        name = pb.Label.Name(label)
    except ValueError:
        return "undecided"
    name = name.removeprefix("LABEL_").lower()
    return "undecided" if name == "unspecified" else name


def _reason(face: pb.Face) -> str:
    """The face's explanation text, from any string field whose name mentions a reason."""
    for field in face.DESCRIPTOR.fields:
        if "reason" in field.name and field.type == field.TYPE_STRING:
            value = getattr(face, field.name)
            if value:
                return str(value)
    return ""


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in a page or a report."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def face_view(face_dict: dict[str, Any], face: pb.Face | None) -> dict[str, Any]:
    """The page's view of one face, built on `classify_cli.face_to_dict` (heatmaps as data URIs).

    Args:
        face_dict: `face_to_dict` of the face.
        face: the wire face, for its label and reason; None keeps ``face_dict["verdict"]``.
    """
    out = {k: v for k, v in face_dict.items() if k != "heatmaps"}
    out["box"] = [float(v) for v in face_dict["box"]]
    out["label"] = face_dict.get("verdict", "undecided") if face is None else label_name(face.label)
    out["reason"] = str(face_dict.get("reason", "")) if face is None else _reason(face)
    out["heatmaps"] = {agent: png_data_uri(png) for agent, png in sorted(face_dict.get("heatmaps", {}).items())}
    return out


def response_view(resp: pb.ClassifyResponse) -> dict[str, Any]:
    """The page's JSON for one image answer."""
    from fakeface.classify import face_to_dict, response_meta

    return {
        **response_meta(resp),
        "width": int(resp.image_width),
        "height": int(resp.image_height),
        # The board's hint names the CLI and gRPC switches; the page offers its own button instead.
        "no_face_reason": resp.no_face_reason.replace(NO_FACE_HINT, ""),
        "faces": [face_view(face_to_dict(f), f) for f in resp.faces],
    }


# --------------------------------------------------------------------------- videos


class ServicerBackend:
    """Lets `classify_cli.Runner` sample a video through the servicer (its in-process backend API).

    Each frame is PNG-encoded (lossless) and sent to `DetectorServicer.Classify`, so video frames
    meet the same limits as images. It remembers the request id of the frame with the most-fake
    face, which is the frame the page shows and the one feedback on the clip refers to.

    Args:
        servicer: the running `DetectorServicer`.
        on_frame: called with the number of frames done after each frame.
    """

    def __init__(self, servicer: DetectorServicer, on_frame: Any = None) -> None:
        self.servicer = servicer
        self.on_frame = on_frame
        self.frames = 0
        self.top: tuple[float, str] = (-1.0, "")  # (largest p_fake, its request id)
        self.last_request_id = ""

    def classify_rgb(self, rgb: np.ndarray, *, detect: str = "auto", heatmaps: bool = False, source: str = "",
                     timeout_s: float = 60.0) -> pb.ClassifyResponse:
        from vision.media import encode_png

        resp = classify(self.servicer, encode_png(rgb), detect=detect, heatmaps=heatmaps, source=source)
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

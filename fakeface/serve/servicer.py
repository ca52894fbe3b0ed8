"""`fakeface.v1.Detector` over gRPC: wire messages in and out of the `DetectorService`.

Each method turns its request into the service's plain arguments (`fakeface.rpc_convert`), runs
it inside one service call (which writes the log line and counts the metrics), converts the
answer back and maps a `ServiceRefusal` to a status code here, at the edge, so a bad request
never takes the server down and no traceback travels on the wire. The service's `Status` names
are gRPC's canonical codes; the table of what ends with which is in `fakeface.service_calls`. A
protobuf that does not parse (`fakeface.serve.admission.Malformed`) and an undefined enum value
are INVALID_ARGUMENT.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from typing import Any, Iterable, Iterator

import grpc

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
from fakeface.rpc_convert import DETECT_MODES, case_to_proto, feedback_label, model_info_to_proto
from fakeface.serve.admission import Malformed
from fakeface.serve.ratelimit import client_key
from fakeface.service import ClassifyOptions, DetectorService
from fakeface.service_calls import Call, Caller, ServiceRefusal, Status

log = logging.getLogger("fakeface.server")

# The service's statuses are named after gRPC's codes.
GRPC_CODES = {status: grpc.StatusCode[status.value] for status in Status}


def caller_of(context: grpc.ServicerContext) -> Caller:
    """The service's view of a gRPC client: its address, rate-limit key, deadline and liveness."""
    try:
        peer = context.peer() or ""
    except (AttributeError, NotImplementedError, RuntimeError):
        peer = ""
    return Caller(peer=peer, client=client_key(peer, context.invocation_metadata()),
                  time_remaining=context.time_remaining, is_active=context.is_active)


@contextlib.contextmanager
def _aborts(context: grpc.ServicerContext) -> Iterator[None]:
    """Ends the call with the refusal's status code and message."""
    try:
        yield
    except ServiceRefusal as err:
        context.abort(GRPC_CODES[err.status], err.message)


def _client_requests(requests: Iterable[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """The stream's requests; a client that cancels, or whose deadline passes, mid-stream ends the
    call as CANCELLED or DEADLINE_EXCEEDED (gRPC raises a bare RpcError there, which the edge
    would otherwise count and log as an internal error)."""
    iterator = iter(requests)
    while True:
        try:
            request = next(iterator)
        except StopIteration:
            return
        except grpc.RpcError:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise ServiceRefusal(Status.DEADLINE_EXCEEDED, "the stream's deadline passed before its last frame",
                                     "stream deadline") from None
            raise ServiceRefusal(Status.CANCELLED, "the client cancelled the stream", "client cancelled") from None
        yield request


def _parsed(request: Any) -> Any:
    """The request, or INVALID_ARGUMENT when its bytes were not a valid protobuf message."""
    if isinstance(request, Malformed):
        raise ServiceRefusal(Status.INVALID_ARGUMENT, request.reason, "malformed request")
    return request


def _options(request: pb.ClassifyRequest) -> ClassifyOptions:
    """The service's options of a request (INVALID_ARGUMENT for an undefined face_detection value)."""
    mode = DETECT_MODES.get(request.options.face_detection)
    if mode is None:
        raise ServiceRefusal(Status.INVALID_ARGUMENT, f"unknown face_detection value {request.options.face_detection}")
    source = request.options.source if request.options.HasField("source") else ""
    return ClassifyOptions(detect=mode, heatmaps=bool(request.options.want_heatmaps), source=source)


class DetectorServicer(pb_grpc.DetectorServicer):
    """Implements `fakeface.v1.Detector` on a `DetectorService`.

    Args:
        service: the service every front door calls.
    """

    def __init__(self, service: DetectorService) -> None:
        self.service = service

    def _classify(self, call: Call, request: Any, *, stream_item: bool = False) -> pb.ClassifyResponse:
        request = _parsed(request)
        options = _options(request)
        # A stream holds one call slot for all its items; a single request takes its own.
        run = self.service.classify_item if stream_item else self.service.classify
        answer = run(call, request.image, options)
        resp = case_to_proto(answer.case, heatmaps=answer.heatmaps)
        resp.sequence_id = request.sequence_id
        return resp

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        with _aborts(context), self.service.call("Classify", caller_of(context)) as call:
            return self._classify(call, request)

    def ClassifyStream(self, request_iterator: Iterable[Any],
                       context: grpc.ServicerContext) -> Iterator[pb.ClassifyResponse]:
        # Per-item failures (a bad frame) come back in the item's response so the stream goes on;
        # deadline, overload and availability failures end the stream.
        counts: collections.Counter[str] = collections.Counter()
        with _aborts(context), self.service.call("ClassifyStream", caller_of(context), what="stream",
                                                 retry="the remaining frames in a few seconds") as stream:
            stream.extra = {"items": counts}
            try:
                with self.service.stream():
                    for request in _client_requests(request_iterator, context):
                        self.service.require_running()
                        item = stream.item()
                        try:
                            resp = self._classify(item, request, stream_item=True)
                        except ServiceRefusal as err:
                            if err.status != Status.INVALID_ARGUMENT:
                                raise
                            counts[err.status.value] += 1
                            log.info("stream item refused", extra={"fields": {
                                **item.fields(0.0), "reason": err.reason, "code": err.status.value}})
                            yield self._item_error(request, err)
                            continue
                        counts["OK"] += 1
                        yield resp
            finally:
                stream.extra = {"items": dict(counts)}

    def _item_error(self, request: Any, err: ServiceRefusal) -> pb.ClassifyResponse:
        malformed = isinstance(request, Malformed)
        return pb.ClassifyResponse(
            sequence_id=0 if malformed else request.sequence_id,
            source="" if malformed else request.options.source[:self.service.limits.max_source_chars],
            error_code=err.status.value,
            error_message=err.message,
        )

    def Feedback(self, request: pb.FeedbackRequest, context: grpc.ServicerContext) -> pb.FeedbackResponse:
        with _aborts(context), self.service.call("Feedback", caller_of(context)) as call:
            request = _parsed(request)
            face = request.face_index if request.HasField("face_index") else None
            ack = self.service.feedback(call, request.request_id, feedback_label(request.label), face)
            # Feedback is evidence: the live controller before and after the call is the same one.
            return pb.FeedbackResponse(stored=ack.stored, controller_version=ack.controller_version,
                                       previous_controller_version=ack.controller_version, applied=ack.applied,
                                       detail=ack.detail)

    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        with _aborts(context), self.service.call("GetModelInfo", caller_of(context)):
            _parsed(request)
            info = self.service.model_info()
            return model_info_to_proto(info.ensemble, feedback_records=info.feedback_records)

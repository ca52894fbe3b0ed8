"""`fakeface.v1.Detector` on an `Ensemble`: request checks, status mapping, logs and metrics.

Every error is mapped to a status code here, at the edge, so a bad request never takes the
server down and no traceback travels on the wire:

=============================================  ===================
malformed protobuf, bad image (empty, not an   INVALID_ARGUMENT
image, too many pixels, < 8 px, too
elongated, too many JPEG scans), field too
long, undefined enum value
too many calls or decoded pixels in flight     RESOURCE_EXHAUSTED
client deadline too short for the agents       DEADLINE_EXCEEDED
models loading or server draining              UNAVAILABLE (retry)
anything else                                  INTERNAL (short message; traceback in the log)
=============================================  ===================

Every call writes one JSON log line with its method, status, duration, request id and peer;
refusals add the reason.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import grpc
import numpy as np

from fakeface.serve.admission import Admission, InputLimits, Malformed, Refused, inspect_image
from blackboard.case import Case
from blackboard.ensemble import DeadlineExceeded
from vision.media import ImageError, decode_image
from blackboard.feedback_log import FeedbackLog
from fakeface.serve.metrics import ServerMetrics
from fakeface.serve.ratelimit import RateLimitConfig, RateLimiter, client_key, hashed_client
from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
from fakeface.rpc_convert import DETECT_MODES, LABELS, case_to_proto, enum_name, model_info_to_proto

log = logging.getLogger("fakeface.server")

# Time kept back from the client's deadline so the answer can still travel back.
DEADLINE_MARGIN_S = 0.02
# A client deadline further away than this (a year) means the client set none.
NO_CLIENT_DEADLINE_S = 365 * 24 * 3600.0
# How often a call waiting on the ensemble looks whether the server is stopping.
STOP_POLL_S = 0.1


class RpcRefusal(Exception):
    """A request ends with this status code and message (raised inside handlers)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or message


class Stopping(Exception):
    """The server is stopping and its grace period is over."""


@dataclass
class CallLog:
    """What one call's log line says (filled as the call goes)."""

    method: str  # RPC name
    peer: str  # the client's address
    request_id: str  # the server's id for this call (echoed in ClassifyResponse.request_id)
    code: grpc.StatusCode = grpc.StatusCode.OK  # final status
    reason: str = ""  # why the call was refused, if it was
    extra: dict[str, Any] | None = None  # method-specific fields (items of a stream, source)

    def fields(self, elapsed_s: float) -> dict[str, Any]:
        out = {"method": self.method, "code": self.code.name, "ms": round(elapsed_s * 1000, 2),
               "request_id": self.request_id, "peer": self.peer}
        if self.reason:
            out["reason"] = self.reason
        out.update(self.extra or {})
        return out


class DetectorServicer(pb_grpc.DetectorServicer):
    """Implements `fakeface.v1.Detector` on an `Ensemble`.

    Args:
        ensemble: a started `blackboard.ensemble.Ensemble`.
        config: a `fakeface.serve.server.ServerConfig` (limits, deadline, feedback settings).
        metrics: where to count requests.
        feedback_log: durable feedback store, or None to refuse Feedback.
        heatmaps: zero-argument factory of a `GradCamRenderer` (built on the first request that
            wants heatmaps), or None when this server cannot render them.
        admission: the in-flight bounds (a new one from ``config`` when None).
    """

    def __init__(self, ensemble: Any, config: Any, *, metrics: ServerMetrics, feedback_log: FeedbackLog | None,
                 heatmaps: Callable[[], Any] | None = None, admission: Admission | None = None) -> None:
        self.ensemble = ensemble
        self.config = config
        self.limits: InputLimits = config.input_limits
        self.metrics = metrics
        self.feedback_log = feedback_log
        self.admin: Any = None  # a `ControllerAdmin` when feedback may be promoted by an operator
        self._heatmap_factory = heatmaps
        self._heatmap_renderer: Any = None
        self._heatmap_lock = threading.Lock()
        self.admission = admission or Admission(config.max_in_flight, config.max_pixels_in_flight,
                                                on_change=self._gauges)
        self.accepting = threading.Event()  # set while SERVING
        self.stopping = threading.Event()  # set when the drain's grace is over: calls still waiting end
        # Ensemble calls run here so a waiting handler can give up when the server stops.
        self._work = ThreadPoolExecutor(max_workers=int(config.max_in_flight), thread_name_prefix="fakeface-work")
        self._recent: collections.OrderedDict[str, list[dict[str, Any]]] = collections.OrderedDict()
        self._recent_lock = threading.Lock()
        # One client must not flood the feedback log (promotion also needs distinct clients).
        self.feedback_limiter = RateLimiter(RateLimitConfig(rate_per_s=float(config.feedback_rate_per_s),
                                                            burst=int(config.feedback_burst)))

    # -- helpers --------------------------------------------------------------------------

    def _gauges(self, calls: int, pixels: int) -> None:
        self.metrics.in_flight.set(calls)
        self.metrics.pixels_in_flight.set(pixels)

    def _call_log(self, method: str, context: grpc.ServicerContext) -> CallLog:
        try:
            peer = context.peer()
        except (AttributeError, NotImplementedError, RuntimeError):
            peer = ""
        return CallLog(method=method, peer=peer or "", request_id=uuid.uuid4().hex)

    def _finish(self, call: CallLog, start: float) -> None:
        elapsed = time.perf_counter() - start
        self.metrics.requests.labels(method=call.method, code=call.code.name).inc()
        self.metrics.latency.labels(method=call.method).observe(elapsed)
        if call.code != grpc.StatusCode.OK:
            self.metrics.refused.labels(reason=call.code.name).inc()
        level = logging.INFO if call.code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT) else logging.WARNING
        log.log(level, "rpc", extra={"fields": call.fields(elapsed)})

    @contextlib.contextmanager
    def _edge(self, call: CallLog, context: grpc.ServicerContext, *, what: str, retry: str) -> Iterator[None]:
        """Maps every failure below it to a status code with a short message, never a traceback.

        Args:
            call: the call's log record (its code and reason are set here).
            context: the call's context (aborted with the mapped status).
            what: "request" or "stream", for the messages.
            retry: what the client should retry when the server stops under it.
        """
        try:
            yield
        except Refused as err:
            call.code, call.reason = grpc.StatusCode.RESOURCE_EXHAUSTED, err.reason
            context.abort(call.code, err.message)
        except RpcRefusal as err:
            call.code, call.reason = err.code, err.reason
            context.abort(err.code, err.message)
        except Stopping:
            call.code, call.reason = grpc.StatusCode.UNAVAILABLE, f"server stopped during the {what}"
            context.abort(call.code, f"the server is shutting down; retry {retry}")
        except Exception as err:  # the edge: nothing below may crash the server or leak a traceback
            call.code, call.reason = grpc.StatusCode.INTERNAL, type(err).__name__
            log.exception(f"{what} failed", extra={"fields": {"method": call.method, "request_id": call.request_id,
                                                              "peer": call.peer}})
            context.abort(call.code, f"internal error ({type(err).__name__}) in {what} {call.request_id}; "
                                     "the server log has the details")

    def _unary(self, method: str, request: Any, context: grpc.ServicerContext,
               body: Callable[[Any, CallLog, grpc.ServicerContext], Any], *, admit: bool = True) -> Any:
        """Runs a unary handler body with admission, status mapping, metrics and one log line."""
        start = time.perf_counter()
        call = self._call_log(method, context)
        try:
            with self._edge(call, context, what="request", retry="(another replica or in a few seconds)"):
                if isinstance(request, Malformed):
                    raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT, request.reason, "malformed request")
                if not admit:
                    return body(request, call, context)
                with self.admission.call():
                    return body(request, call, context)
        finally:
            self._finish(call, start)

    def _require_serving(self) -> None:
        if not self.accepting.is_set():
            raise RpcRefusal(grpc.StatusCode.UNAVAILABLE,
                             "the detector is loading its models or shutting down; retry in a few seconds",
                             "not serving")

    def _deadline(self, context: grpc.ServicerContext) -> float:
        remaining = context.time_remaining()
        # grpcio reports a call without a deadline as ~9.2e18 s left (not None): waiting on that
        # overflows every timer below it and the call would hang. Such a call gets the default.
        if remaining is None or remaining > NO_CLIENT_DEADLINE_S:
            return float(self.config.default_deadline_s)
        # The client's deadline wins over the default, in both directions.
        budget = float(remaining) - DEADLINE_MARGIN_S
        if budget <= 0:
            raise RpcRefusal(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline too short ({remaining * 1000:.0f} ms left)")
        return budget

    def _renderer(self) -> Any:
        with self._heatmap_lock:
            if self._heatmap_renderer is None and self._heatmap_factory is not None:
                self._heatmap_renderer = self._heatmap_factory()
            return self._heatmap_renderer

    def warm_heatmaps(self, size: int = 224) -> bool:
        """Builds the heat-map renderer and renders one blank crop, so the first request that asks
        for heat maps (the web page asks for every image) pays no model load and no graph trace:
        measured on 2 cores, that first answer took 4.6 s, the next ones 0.4-0.5 s.

        Returns:
            False when this server cannot render heat maps.
        """
        renderer = self._renderer()
        if renderer is None:
            return False
        renderer.render_png([np.zeros((size, size, 3), dtype=np.uint8)])
        return True

    def _wait(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        """Runs ``fn`` on the work pool; gives up with `Stopping` once the drain's grace is over."""
        future = self._work.submit(fn)
        end = time.monotonic() + timeout_s
        while True:
            try:
                return future.result(timeout=max(min(STOP_POLL_S, end - time.monotonic()), 0.001))
            except FutureTimeout:
                if self.stopping.is_set():
                    future.cancel()
                    raise Stopping() from None
                # The ensemble honours the deadline itself; this bound only catches a hang.
                if time.monotonic() > end + 5.0:
                    future.cancel()
                    raise DeadlineExceeded("the ensemble did not return after its deadline") from None

    def _classify_one(self, request: pb.ClassifyRequest, deadline_s: float, call: CallLog,
                      context: grpc.ServicerContext) -> pb.ClassifyResponse:
        """Checks, decodes, classifies and converts one request; raises `RpcRefusal` for known failures."""
        start = time.perf_counter()
        if isinstance(request, Malformed):
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT, request.reason, "malformed request")
        source = request.options.source if request.options.HasField("source") else ""
        if len(source) > self.limits.max_source_chars:
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT,
                             f"options.source is {len(source)} characters; the limit is {self.limits.max_source_chars}")
        mode = DETECT_MODES.get(request.options.face_detection)
        if mode is None:
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT,
                             f"unknown face_detection value {request.options.face_detection}")
        try:
            header = inspect_image(request.image, self.limits)
        except ImageError as err:
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT, f"bad image: {err}") from err
        end = time.monotonic() + deadline_s
        with self.admission.pixels_of(header.pixels, deadline_s):
            try:
                rgb = decode_image(request.image, max_pixels=self.limits.max_pixels)
            except ImageError as err:
                raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT, f"bad image: {err}") from err
            decode_ms = (time.perf_counter() - start) * 1000.0
            budget = end - time.monotonic()
            if budget <= 0:
                raise RpcRefusal(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while decoding the image")
            if not context.is_active():
                raise RpcRefusal(grpc.StatusCode.CANCELLED, "the client went away", "client cancelled")
            try:
                case = self._wait(lambda: self.ensemble.classify(rgb, detect=mode, deadline_s=budget, source=source,
                                                                 request_id=call.request_id), budget)
            except TimeoutError as err:  # DeadlineExceeded
                raise RpcRefusal(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded: {str(err)[:200]}") from err
            except ValueError as err:  # an image the ensemble cannot use
                raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT, f"bad image: {str(err)[:200]}") from err
            heatmaps = None
            if request.options.want_heatmaps and case.faces:
                renderer = self._renderer()
                if renderer is None:
                    raise RpcRefusal(grpc.StatusCode.FAILED_PRECONDITION, "this server cannot render heatmaps")
                t0 = time.perf_counter()
                heatmaps = renderer.render_png([f.crop for f in case.faces])
                case.timings_ms["heatmaps"] = (time.perf_counter() - t0) * 1000.0
        case.timings_ms["decode"] = decode_ms
        case.timings_ms["server_total"] = (time.perf_counter() - start) * 1000.0
        self._record(case)
        resp = case_to_proto(case, heatmaps=heatmaps)
        resp.sequence_id = request.sequence_id
        return resp

    def _record(self, case: Case) -> None:
        """Metrics per face, and the votes kept for feedback records (bounded LRU)."""
        faces = []
        for face in case.faces:
            if face.degraded:
                self.metrics.degraded.inc()
            if face.decision is not None:
                self.metrics.faces.labels(label=face.decision.label).inc()
            for vote in face.votes.values():
                self.metrics.agent_latency.labels(agent=vote.agent).observe(vote.latency_ms / 1000.0)
            faces.append({
                "index": face.index,
                "p_fake": None if face.decision is None else face.decision.p_fake,
                "votes": {a: v.p_fake for a, v in face.votes.items()},
                "missing_agents": list(face.missing_agents),
            })
        with self._recent_lock:
            self._recent[case.request_id] = faces
            while len(self._recent) > self.config.recent_cases:
                self._recent.popitem(last=False)

    # -- RPCs -----------------------------------------------------------------------------

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        def body(req: pb.ClassifyRequest, call: CallLog, ctx: grpc.ServicerContext) -> pb.ClassifyResponse:
            self._require_serving()
            return self._classify_one(req, self._deadline(ctx), call, ctx)

        return self._unary("Classify", request, context, body)

    def ClassifyStream(self, request_iterator: Iterable[Any],
                       context: grpc.ServicerContext) -> Iterator[pb.ClassifyResponse]:
        # Per-item failures (a bad frame) come back in the item's response so the stream goes on;
        # deadline, overload and availability failures end the stream.
        start = time.perf_counter()
        call = self._call_log("ClassifyStream", context)
        counts: collections.Counter[str] = collections.Counter()
        call.extra = {"items": counts}
        try:
            with self._edge(call, context, what="stream", retry="the remaining frames in a few seconds"), \
                    self.admission.call():
                self._require_serving()
                for request in request_iterator:
                    if self.stopping.is_set():
                        raise Stopping()
                    item = CallLog(method="ClassifyStream", peer=call.peer, request_id=uuid.uuid4().hex)
                    try:
                        resp = self._classify_one(request, self._deadline(context), item, context)
                    except RpcRefusal as err:
                        if err.code != grpc.StatusCode.INVALID_ARGUMENT:
                            raise
                        counts[err.code.name] += 1
                        log.info("stream item refused", extra={"fields": {**item.fields(0.0), "reason": err.reason,
                                                                          "code": err.code.name}})
                        malformed = isinstance(request, Malformed)
                        yield pb.ClassifyResponse(
                            sequence_id=0 if malformed else request.sequence_id,
                            source="" if malformed else request.options.source[:self.limits.max_source_chars],
                            error_code=err.code.name,
                            error_message=err.message,
                        )
                        continue
                    counts["OK"] += 1
                    yield resp
        finally:
            call.extra = {"items": dict(counts)}
            self._finish(call, start)

    def Feedback(self, request: pb.FeedbackRequest, context: grpc.ServicerContext) -> pb.FeedbackResponse:
        return self._unary("Feedback", request, context, self._feedback)

    def _feedback(self, request: pb.FeedbackRequest, call: CallLog, context: grpc.ServicerContext) -> pb.FeedbackResponse:
        """Checks and stores one user verdict (durably, with the case's votes)."""
        if self.feedback_log is None:
            raise RpcRefusal(grpc.StatusCode.FAILED_PRECONDITION, "this server runs without a feedback log")
        client = client_key(context.peer(), context.invocation_metadata())
        if not self.feedback_limiter.allow(client):
            raise RpcRefusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"feedback rate limit for this client; retry in "
                             f"{self.feedback_limiter.retry_after_s(client):.1f} s")
        request_id = request.request_id
        if not request_id:
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT, "request_id is empty")
        if len(request_id) > self.limits.max_request_id_chars or not request_id.isprintable():
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT,
                             f"request_id must be at most {self.limits.max_request_id_chars} printable characters "
                             f"(the id of an earlier answer); received {len(request_id)} characters")
        call.extra = {"feedback_for": request_id}
        label = LABELS.get(request.label)
        if label is None:
            raise RpcRefusal(grpc.StatusCode.INVALID_ARGUMENT,
                             f"label must be LABEL_REAL or LABEL_FAKE, received {enum_name(pb.Label, request.label)}")
        version = str(self.ensemble.controller_version)
        # Evidence, not a live update: the label and the votes are stored; the live controller
        # changes only when an operator promotes the log (blackboard.controller_admin).
        evidence = getattr(self.ensemble, "case_evidence", lambda _: None)(request_id)
        with self._recent_lock:
            faces = self._recent.get(request_id)
        count = self.feedback_log.append({
            "request_id": request_id, "label": label, "client": hashed_client(client), "faces": faces,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "controller_version": version, "evidence": evidence,
        })
        detail = ("stored as evidence; it changes no answer until an operator reviews the feedback"
                  if evidence is not None else "stored; the answer's votes are no longer held, so it is kept as a note")
        log.info("feedback stored", extra={"fields": {"request_id": request_id, "records": count}})
        return pb.FeedbackResponse(stored=True, controller_version=version, previous_controller_version=version,
                                   applied=False, detail=detail)

    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        def body(req: pb.GetModelInfoRequest, call: CallLog, ctx: grpc.ServicerContext) -> pb.ModelInfo:
            self._require_serving()
            records = 0 if self.feedback_log is None else self.feedback_log.records
            return model_info_to_proto(self.ensemble.describe(), feedback_records=records)

        return self._unary("GetModelInfo", request, context, body, admit=False)

    def close(self) -> None:
        """Releases the work pool (after the gRPC server has stopped)."""
        self._work.shutdown(wait=False, cancel_futures=True)

"""The gRPC detector service: servicer, security, health, metrics, feedback log and drain.

`create_server` binds a `grpc.Server` around an `Ensemble`, starts it at once (health answers
NOT_SERVING while the models load) and flips health to SERVING when `Ensemble.ready` returns.
Every error is mapped to a status code at the servicer edge, so a bad request never takes the
server down:

=========================================  ===================
bad input (empty, undecodable, too many    INVALID_ARGUMENT
pixels) or unknown label
message above ``max_message_bytes``        RESOURCE_EXHAUSTED (grpc's own limit)
more than ``max_in_flight`` calls          RESOURCE_EXHAUSTED (grpc's own limit)
client deadline too short for the agents   DEADLINE_EXCEEDED
models loading or server draining          UNAVAILABLE
missing or wrong bearer token              UNAUTHENTICATED
anything else                              INTERNAL (logged with traceback)
=========================================  ===================
"""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agents.labels import FAKE, REAL
from blackboard.case import Case
from blackboard.faces import ImageError, decode_image
from blackboard.rpc.fakeface.v1 import detector_pb2 as pb
from blackboard.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc

log = logging.getLogger("fakeface.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Detector"].full_name
# Methods that stay open without a token: load balancers and orchestrators probe health.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
DETECT_MODES = {
    pb.FACE_DETECTION_UNSPECIFIED: "auto",
    pb.FACE_DETECTION_AUTO: "auto",
    pb.FACE_DETECTION_ON: "on",
    pb.FACE_DETECTION_OFF: "off",
}
LABELS = {pb.LABEL_REAL: REAL, pb.LABEL_FAKE: FAKE}
LABEL_ENUMS = {REAL: pb.LABEL_REAL, FAKE: pb.LABEL_FAKE}
# Time kept back from the client's deadline so the answer can still travel back.
DEADLINE_MARGIN_S = 0.02


@dataclass(frozen=True)
class ServerConfig:
    """How the gRPC server runs (the models' batching lives in `EnsembleConfig`)."""

    max_message_bytes: int = 8 * 1024 * 1024  # largest request/response; bigger -> RESOURCE_EXHAUSTED
    max_pixels: int = 40_000_000  # decoded image size limit (decompression-bomb guard)
    max_in_flight: int = 64  # concurrent calls admitted (running + queued); more -> RESOURCE_EXHAUSTED
    workers: int = 32  # handler threads; each blocks on the ensemble while its request runs
    tokens: tuple[str, ...] = ()  # accepted bearer tokens; empty = no authentication
    tls_cert: str | None = None  # PEM certificate chain path; with tls_key turns TLS on
    tls_key: str | None = None  # PEM private key path
    feedback_path: str | None = None  # append-only JSONL feedback log; None = Feedback refused
    default_deadline_s: float = 10.0  # ensemble deadline when the client sets none (a client's own wins)
    ready_timeout_s: float = 600.0  # how long to wait for the models before giving up
    drain_grace_s: float = 10.0  # in-flight calls get this long to finish on SIGTERM
    recent_cases: int = 4096  # recent answers remembered so feedback records carry the votes

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_pixels", "max_in_flight", "workers", "recent_cases"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ServerConfig.{name} must be >= 1, received {getattr(self, name)!r}.")
        for name in ("default_deadline_s", "ready_timeout_s"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"ServerConfig.{name} must be > 0, received {getattr(self, name)!r}.")
        if float(self.drain_grace_s) < 0:
            raise ValueError(f"ServerConfig.drain_grace_s must be >= 0, received {self.drain_grace_s!r}.")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "TLS needs both a certificate and a key; received "
                f"tls_cert={self.tls_cert!r}, tls_key={self.tls_key!r}."
            )
        if any(not t for t in self.tokens):
            raise ValueError("tokens must be non-empty strings; received an empty token.")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


# --------------------------------------------------------------------------- logging


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Routes the ``fakeface`` loggers to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("fakeface")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# --------------------------------------------------------------------------- metrics


class ServerMetrics:
    """Prometheus metrics in a registry of their own (several servers may share a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fakeface_requests", "RPCs by method and status code.", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "fakeface_request_latency_seconds", "RPC latency by method.", ["method"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.agent_latency = Histogram(
            "fakeface_agent_latency_seconds", "Per-face agent latency.", ["agent"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.in_flight = Gauge("fakeface_in_flight", "RPCs being handled now.", registry=self.registry)
        self.degraded = Counter(
            "fakeface_degraded_decisions", "Face decisions made with some agent missing.", registry=self.registry
        )
        self.faces = Counter("fakeface_faces", "Faces classified, by label.", ["label"], registry=self.registry)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> None:
        """Exposes ``/metrics`` on ``host:port`` (a daemon thread)."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)


# --------------------------------------------------------------------------- feedback log


class FeedbackLog:
    """Append-only JSON-lines file; every record is fsynced before the call is acknowledged.

    A record torn by a crash (no trailing newline) is skipped when counting and a newline is
    written before the next record, so one bad line never corrupts the rest.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.records = 0
        needs_newline = False
        if self.path.exists():
            data = self.path.read_bytes()
            needs_newline = bool(data) and not data.endswith(b"\n")
            for line in data.splitlines():
                try:
                    json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    log.warning("skipping a torn feedback record", extra={"fields": {"path": str(self.path)}})
                    continue
                self.records += 1
        if needs_newline:
            self._write(b"\n")

    def _write(self, data: bytes) -> None:
        # O_APPEND makes each write land at the end even with several writers.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, record: dict[str, Any]) -> int:
        """Writes one record durably; returns the number of records now in the log."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            self._write(line)
            self.records += 1
            return self.records


# --------------------------------------------------------------------------- conversion


def case_to_proto(case: Case, *, heatmaps: Sequence[dict[str, bytes]] | None = None) -> pb.ClassifyResponse:
    """Converts a blackboard `Case` into the wire answer.

    Args:
        case: the decided case.
        heatmaps: optional per-face dicts agent -> PNG bytes (same order as ``case.faces``).
    """
    resp = pb.ClassifyResponse(
        request_id=case.request_id,
        bundle_version=str(case.bundle_version),
        controller_version=str(case.controller_version),
        no_face_reason=case.no_face_reason,
        source=case.source,
    )
    if len(case.image_shape) >= 2:
        resp.image_height, resp.image_width = int(case.image_shape[0]), int(case.image_shape[1])
    for stage, ms in case.timings_ms.items():
        resp.timings_ms[stage] = float(ms)
    for i, rec in enumerate(case.faces):
        face = resp.faces.add(
            index=int(rec.index),
            degraded=bool(rec.degraded),
            missing_agents=list(rec.missing_agents),
            detector_confidence=float(rec.confidence),
        )
        x, y, w, h = (float(v) for v in rec.box)
        face.box.CopyFrom(pb.Box(x=x, y=y, width=w, height=h))
        for px, py in rec.landmarks:
            face.landmarks.add(x=float(px), y=float(py))
        if rec.decision is not None:
            face.label = LABEL_ENUMS.get(rec.decision.label, pb.LABEL_UNSPECIFIED)
            face.p_fake = float(rec.decision.p_fake)
            face.threshold = float(rec.decision.threshold)
            face.combiner = rec.decision.combiner
        for vote in rec.votes.values():
            face.votes.add(
                agent=vote.agent, p_fake=float(vote.p_fake), weight=float(vote.weight),
                latency_ms=float(vote.latency_ms), model_sha=vote.model_sha,
            )
        if heatmaps is not None and i < len(heatmaps):
            for agent, png in heatmaps[i].items():
                face.heatmaps.add(agent=agent, png=png)
    return resp


def model_info_to_proto(info: dict[str, Any], *, feedback_records: int = 0) -> pb.ModelInfo:
    """Converts `Ensemble.model_info()` into the wire message (unknown keys stay in info_json).

    Accepted shapes: ``manifest`` (dict), ``agents`` (name -> manifest entry, or a list of dicts
    with ``name``), ``trust`` / ``trust_table`` / ``controller.trust`` (agent -> class ->
    weight), ``thresholds`` (name -> float) and/or ``threshold`` (the ensemble's float),
    ``bundle_version``, ``controller_version``. Each agent's own threshold is added as
    ``agent:<name>``.
    """
    manifest = info.get("manifest") or info.get("bundle_manifest") or {}
    out = pb.ModelInfo(
        bundle_version=str(info.get("bundle_version", "")),
        controller_version=str(info.get("controller_version", "")),
        manifest_json=json.dumps(manifest, sort_keys=True, default=str),
        info_json=json.dumps(info, sort_keys=True, default=str),
        feedback_records=int(feedback_records),
    )
    agents = info.get("agents") or manifest.get("agents") or {}
    if isinstance(agents, dict):
        agents = [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in agents.items()]
    for entry in agents:
        if isinstance(entry, str):
            entry = {"name": entry, **manifest.get("agents", {}).get(entry, {})}
        pp = entry.get("preprocessing") or {}
        out.agents.add(
            name=str(entry.get("name", "")),
            model_sha=str(entry.get("sha256", entry.get("model_sha", ""))),
            threshold=float(entry.get("threshold", 0.5)),
            temperature=float(entry.get("temperature", 1.0)),
            input_height=int(pp.get("height", 0)),
            input_width=int(pp.get("width", 0)),
            input_channels=int(pp.get("channels", 0)),
            input_scale=str(pp.get("scale", "")),
        )
    controller = info.get("controller") if isinstance(info.get("controller"), dict) else {}
    trust = info.get("trust") or info.get("trust_table") or controller.get("trust") or {}
    if isinstance(trust, dict):
        for agent, weights in trust.items():
            entry = out.trust.add(agent=str(agent))
            if isinstance(weights, dict):
                for cls, w in weights.items():
                    entry.weights[str(cls)] = float(w)
            else:
                entry.weights["all"] = float(weights)
    thresholds = info.get("thresholds")
    if isinstance(thresholds, dict):
        for name, value in thresholds.items():
            if isinstance(value, (int, float)):
                out.thresholds[str(name)] = float(value)
    if isinstance(info.get("threshold"), (int, float)):
        if "ensemble" not in out.thresholds:
            out.thresholds["ensemble"] = float(info["threshold"])
    for agent in out.agents:
        if f"agent:{agent.name}" not in out.thresholds:
            out.thresholds[f"agent:{agent.name}"] = agent.threshold
    return out


# --------------------------------------------------------------------------- servicer


class _Refusal(Exception):
    """A request ends with this status code and message (raised inside handlers)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _deadline_error_types() -> tuple[type[BaseException], ...]:
    try:
        from blackboard.ensemble import DeadlineExceeded
    except ImportError:  # the ensemble module is optional for conversion-only users
        return (TimeoutError,)
    return (DeadlineExceeded, TimeoutError)


class DetectorServicer(pb_grpc.DetectorServicer):
    """Implements `fakeface.v1.Detector` on an `Ensemble`.

    Args:
        ensemble: a started `blackboard.ensemble.Ensemble` (or anything with its methods).
        config: server limits.
        metrics: where to count requests.
        feedback_log: durable feedback store, or None to refuse Feedback.
        heatmaps: a `GradCamRenderer`-like object, or a zero-argument factory for one (built
            lazily on the first request that wants heatmaps).
    """

    def __init__(
        self,
        ensemble: Any,
        config: ServerConfig,
        *,
        metrics: ServerMetrics,
        feedback_log: FeedbackLog | None,
        heatmaps: Any = None,
    ) -> None:
        self.ensemble = ensemble
        self.config = config
        self.metrics = metrics
        self.feedback_log = feedback_log
        self._heatmaps = heatmaps
        self._heatmap_lock = threading.Lock()
        self.accepting = threading.Event()  # set while SERVING
        self._recent: collections.OrderedDict[str, list[dict[str, Any]]] = collections.OrderedDict()
        self._recent_lock = threading.Lock()
        self._deadline_errors = _deadline_error_types()

    # -- helpers --------------------------------------------------------------------------

    def _observe(self, method: str, fn: Callable[[], Any], context: grpc.ServicerContext) -> Any:
        """Runs a unary handler body: metrics, structured log and status mapping."""
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        code = grpc.StatusCode.OK
        try:
            return fn()
        except _Refusal as err:
            code = err.code
            context.abort(err.code, err.message)
        except Exception as err:  # the edge: nothing below may crash the server
            code = grpc.StatusCode.INTERNAL
            log.exception("request failed", extra={"fields": {"method": method}})
            context.abort(code, f"internal error: {type(err).__name__}: {err}")
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(method=method, code=code.name).inc()
            self.metrics.latency.labels(method=method).observe(elapsed)
            log.info("rpc", extra={"fields": {"method": method, "code": code.name, "ms": round(elapsed * 1000, 2)}})

    def _require_serving(self) -> None:
        if not self.accepting.is_set():
            raise _Refusal(grpc.StatusCode.UNAVAILABLE, "the detector is loading its models or shutting down; retry")

    def _deadline(self, context: grpc.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            return self.config.default_deadline_s
        # The client's deadline wins over the default, in both directions.
        budget = float(remaining) - DEADLINE_MARGIN_S
        if budget <= 0:
            raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline too short ({remaining * 1000:.0f} ms left)")
        return budget

    def _renderer(self) -> Any:
        with self._heatmap_lock:
            if callable(self._heatmaps) and not hasattr(self._heatmaps, "render_png"):
                self._heatmaps = self._heatmaps()
            return self._heatmaps

    def _classify_one(self, request: pb.ClassifyRequest, deadline_s: float) -> pb.ClassifyResponse:
        """Decodes, classifies and converts one request; raises `_Refusal` for known failures."""
        start = time.perf_counter()
        source = request.options.source if request.options.HasField("source") else ""
        try:
            rgb = decode_image(request.image, max_pixels=self.config.max_pixels)
        except ImageError as err:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"bad image: {err}") from err
        decode_ms = (time.perf_counter() - start) * 1000.0
        mode = DETECT_MODES.get(request.options.face_detection)
        if mode is None:
            raise _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown face_detection value {request.options.face_detection}"
            )
        budget = deadline_s - decode_ms / 1000.0
        if budget <= 0:
            raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while decoding the image")
        try:
            case = self.ensemble.classify(rgb, detect=mode, deadline_s=budget, source=source)
        except self._deadline_errors as err:
            raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded: {err}") from err
        except ImageError as err:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"bad image: {err}") from err
        heatmaps = None
        if request.options.want_heatmaps and case.faces:
            renderer = self._renderer()
            if renderer is None:
                raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION, "this server cannot render heatmaps")
            crops = [f.crop for f in case.faces]
            if any(c is None for c in crops):
                raise _Refusal(grpc.StatusCode.INTERNAL, "the ensemble returned faces without crops")
            t0 = time.perf_counter()
            heatmaps = renderer.render_png(crops)
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
        def body() -> pb.ClassifyResponse:
            self._require_serving()
            return self._classify_one(request, self._deadline(context))

        return self._observe("Classify", body, context)

    def ClassifyStream(
        self, request_iterator: Iterable[pb.ClassifyRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ClassifyResponse]:
        # Per-item failures (a bad frame) come back in the item's response so the stream goes on;
        # deadline and availability failures end the stream.
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        code = grpc.StatusCode.OK
        try:
            self._require_serving()
            for request in request_iterator:
                try:
                    yield self._classify_one(request, self._deadline(context))
                except _Refusal as err:
                    if err.code != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    yield pb.ClassifyResponse(
                        sequence_id=request.sequence_id,
                        source=request.options.source,
                        error_code=err.code.name,
                        error_message=err.message,
                    )
        except _Refusal as err:
            code = err.code
            context.abort(err.code, err.message)
        except Exception as err:  # the edge: a failing stream must not crash the server
            code = grpc.StatusCode.INTERNAL
            log.exception("stream failed", extra={"fields": {"method": "ClassifyStream"}})
            context.abort(code, f"internal error: {type(err).__name__}: {err}")
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(method="ClassifyStream", code=code.name).inc()
            self.metrics.latency.labels(method="ClassifyStream").observe(elapsed)

    def Feedback(self, request: pb.FeedbackRequest, context: grpc.ServicerContext) -> pb.FeedbackResponse:
        def body() -> pb.FeedbackResponse:
            if self.feedback_log is None:
                raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION, "this server runs without a feedback log")
            if not request.request_id:
                raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "request_id is empty")
            label = LABELS.get(request.label)
            if label is None:
                raise _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"label must be LABEL_REAL or LABEL_FAKE, received {pb.Label.Name(request.label)}",
                )
            before = str(self.ensemble.controller_version)
            applied, detail = True, ""
            # The online update runs first because the record carries the version after it; the
            # label is stored even when the ensemble cannot use it (e.g. after a restart).
            try:
                after = str(self.ensemble.feedback(request.request_id, label))
            except (KeyError, ValueError, LookupError) as err:
                applied, detail, after = False, f"not applied online: {err}", before
            with self._recent_lock:
                faces = self._recent.get(request.request_id)
            self.feedback_log.append({
                "request_id": request.request_id,
                "label": label,
                "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                "controller_version_before": before,
                "controller_version_after": after,
                "applied": applied,
                "detail": detail,
                "faces": faces,
            })
            return pb.FeedbackResponse(
                stored=True, controller_version=after, previous_controller_version=before,
                applied=applied, detail=detail,
            )

        return self._observe("Feedback", body, context)

    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        def body() -> pb.ModelInfo:
            self._require_serving()
            info = dict(self.ensemble.model_info())
            info.setdefault("bundle_version", self.ensemble.bundle_version)
            info.setdefault("controller_version", self.ensemble.controller_version)
            records = 0 if self.feedback_log is None else self.feedback_log.records
            return model_info_to_proto(info, feedback_records=records)

        return self._observe("GetModelInfo", body, context)


# --------------------------------------------------------------------------- security


def _abort_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that refuses with UNAUTHENTICATED."""

    def refuse(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def refuse_stream(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this a generator, abort raises first

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` metadata on every method except health checks.

    Args:
        tokens: accepted tokens (compared in constant time).
        metrics: counts refusals as UNAUTHENTICATED requests.
    """

    def __init__(self, tokens: Sequence[str], metrics: ServerMetrics | None = None) -> None:
        if not tokens:
            raise ValueError("BearerTokenInterceptor needs at least one token.")
        self._tokens = [t.encode() for t in tokens]
        self._metrics = metrics

    def _valid(self, metadata: Sequence[tuple[str, Any]] | None) -> bool:
        for key, value in metadata or ():
            if key.lower() != "authorization":
                continue
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer":
                return False
            given = token.strip().encode()
            # Check every token so timing does not reveal which one nearly matched.
            return any([hmac.compare_digest(given, t) for t in self._tokens])
        return False

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_METHOD_PREFIXES) or self._valid(handler_call_details.invocation_metadata):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if self._metrics is not None:
            self._metrics.requests.labels(method=method.rsplit("/", 1)[-1], code="UNAUTHENTICATED").inc()
        log.warning("unauthenticated call refused", extra={"fields": {"method": method}})
        return _abort_handler(handler, "missing or invalid bearer token (send `authorization: Bearer <token>`)")


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- server


class DetectorServer(grpc.Server):
    """A started `grpc.Server` plus the detector's health, readiness and drain controls.

    Every `grpc.Server` method is delegated to the wrapped server.
    """

    def __init__(self, server: grpc.Server, servicer: DetectorServicer, health_servicer: health.HealthServicer,
                 metrics: ServerMetrics, config: ServerConfig) -> None:
        self._server = server
        self.servicer = servicer
        self.health = health_servicer
        self.metrics = metrics
        self.config = config
        self.serving = threading.Event()
        self.ready_error: str | None = None
        self._ready_done = threading.Event()

    # grpc.Server interface ---------------------------------------------------------------
    def add_generic_rpc_handlers(self, generic_rpc_handlers):
        return self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name, method_handlers):
        return self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address):
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address, server_credentials):
        return self._server.add_secure_port(address, server_credentials)

    def start(self):
        return self._server.start()

    def stop(self, grace):
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.servicer.accepting.clear()
        return self._server.stop(grace)

    def wait_for_termination(self, timeout=None):
        return self._server.wait_for_termination(timeout=timeout)

    # detector controls -------------------------------------------------------------------
    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def _await_ready(self) -> None:
        try:
            ok = self.servicer.ensemble.ready(timeout_s=self.config.ready_timeout_s)
            if ok is False:
                raise TimeoutError(f"models not ready within {self.config.ready_timeout_s:.0f} s")
        except Exception as err:  # reported through ready_error and the log; health stays NOT_SERVING
            self.ready_error = f"{type(err).__name__}: {err}"
            log.exception("ensemble failed to become ready")
        else:
            self.servicer.accepting.set()
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            self.serving.set()
            log.info("serving", extra={"fields": {"service": SERVICE_NAME}})
        finally:
            self._ready_done.set()

    def wait_until_serving(self, timeout: float | None = None) -> bool:
        """Blocks until health is SERVING (True), the models failed (RuntimeError) or timeout (False)."""
        self._ready_done.wait(timeout)
        if self.ready_error is not None:
            raise RuntimeError(f"the detector could not load its models: {self.ready_error}")
        return self.serving.is_set()

    def drain(self, grace_s: float | None = None) -> None:
        """Health -> NOT_SERVING, refuse new calls, let in-flight ones finish, then stop."""
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        log.info("draining", extra={"fields": {"grace_s": grace}})
        self.stop(grace).wait()
        log.info("stopped")


def create_server(
    address: str,
    ensemble: Any,
    config: ServerConfig | None = None,
    *,
    heatmaps: Any = None,
    metrics: ServerMetrics | None = None,
) -> tuple[DetectorServer, int]:
    """Builds, binds and starts the detector server.

    Health answers NOT_SERVING at once and SERVING when ``ensemble.ready`` returns (a background
    thread waits for it; `DetectorServer.wait_until_serving` blocks on it).

    Args:
        address: ``host:port`` to bind; port 0 picks a free port.
        ensemble: a `blackboard.ensemble.Ensemble`.
        config: server limits, security and feedback settings.
        heatmaps: a `GradCamRenderer`, a factory returning one, or None to build one from
            ``ensemble.bundle`` on the first request that asks for heatmaps.
        metrics: metrics to update (a new registry when None).

    Returns:
        The started server and the bound port.

    Raises:
        ValueError: unreadable TLS files or an address that cannot be bound.
    """
    config = config or ServerConfig()
    metrics = metrics or ServerMetrics()
    credentials = None
    if config.tls:
        try:
            cert = Path(config.tls_cert).read_bytes()
            key = Path(config.tls_key).read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read TLS file {err.filename}: {err.strerror}; pass PEM files to --tls-cert/--tls-key") from err
        credentials = grpc.ssl_server_credentials([(key, cert)])
    if not _is_loopback(address) and not (config.tls and config.tokens):
        log.warning(
            "binding a non-loopback address without TLS and a token: anyone on the network can use "
            "(and read the answers of) this detector; pass --tls-cert/--tls-key and --token",
            extra={"fields": {"address": address, "tls": config.tls, "auth": bool(config.tokens)}},
        )
    if heatmaps is None:
        heatmaps = functools.partial(_default_renderer, ensemble)
    feedback_log = FeedbackLog(config.feedback_path) if config.feedback_path else None
    servicer = DetectorServicer(ensemble, config, metrics=metrics, feedback_log=feedback_log, heatmaps=heatmaps)
    interceptors = [BearerTokenInterceptor(config.tokens, metrics)] if config.tokens else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="fakeface-rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),  # two servers must never share a port by accident
        ],
        # Bounds memory: calls beyond this are refused with RESOURCE_EXHAUSTED, not queued.
        maximum_concurrent_rpcs=config.max_in_flight,
    )
    pb_grpc.add_DetectorServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:
        raise ValueError(f"cannot bind {address}: {err}; is the port in use?") from err
    wrapped = DetectorServer(server, servicer, health_servicer, metrics, config)
    wrapped._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    threading.Thread(target=wrapped._await_ready, name="fakeface-ready", daemon=True).start()
    return wrapped, port


def _default_renderer(ensemble: Any) -> Any:
    """A Grad-CAM renderer on the ensemble's bundle (imported lazily: TensorFlow is heavy)."""
    from blackboard.gradcam import GradCamRenderer

    return GradCamRenderer(getattr(ensemble, "bundle", None))

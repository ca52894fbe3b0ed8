"""The detector service both front doors call: the gRPC servicer and the web page's API.

`DetectorService` owns what `fakeface.serve.servicer` (gRPC) and `fakeface.web.app` (HTTP)
share: image checks before any pixel is decoded and the bounds on work in flight
(`fakeface.serve.admission`), deadlines, the ensemble call and its heat maps, feedback (the
durable log, a per-client rate limit, each request id counted once), model info, one log line
and the metrics of every call, and the recent answers feedback refers to. It speaks plain
Python (bytes and strings in, a `Case` out) and knows no wire format.

Every operation runs inside `DetectorService.call`, which writes the call's log line, counts it
and turns any failure into a `ServiceRefusal` (`fakeface.service_calls`: the statuses, and which
failure ends with which).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from cachetools import LRUCache

from agents.labels import FAKE, REAL
from blackboard.board import DeadlineExceeded
from blackboard.case import Case
from blackboard.feedback_log import FeedbackLog
from blackboard.model_info import EnsembleInfo
from fakeface.serve.admission import Admission, InputLimits, Refused, inspect_image
from fakeface.serve.metrics import ServerMetrics
from fakeface.serve.ratelimit import RateLimitConfig, RateLimiter, hashed_client
from fakeface.service_calls import (BAD_IMAGE, IMAGE_TOO_LARGE, RATE_LIMITED, Call, Caller, ServiceRefusal, Status,
                                    Stopping, face_index_problem, request_id_problem)
from vision.faces import DETECT_MODES
from vision.heatmap_quality import AgentMap
from vision.media import ImageError, decode_image

log = logging.getLogger("fakeface.server")

# How long past its deadline a call whose ensemble work has not returned is answered DEADLINE_EXCEEDED.
HANG_GRACE_S = 0.5
# Time kept back from the client's deadline so the answer can still travel back.
DEADLINE_MARGIN_S = 0.02
# A client deadline further away than this (a year) means the client set none.
NO_CLIENT_DEADLINE_S = 365 * 24 * 3600.0
# How often a call waiting on the ensemble looks whether the service is stopping.
STOP_POLL_S = 0.1


@dataclass(frozen=True)
class ClassifyOptions:
    """How to classify one image."""

    detect: str = "auto"  # face detection: "auto", "on" or "off" (vision.faces.DETECT_MODES)
    heatmaps: bool = False  # render a heat-map tile per face and agent (or say why it is withheld)
    source: str = ""  # the caller's name for the image (a file name, "clip.mp4@12"), echoed back


@dataclass
class Answer:
    """A decided case and, when asked for, its heat maps (per face: agent -> `AgentMap`)."""

    case: Case
    heatmaps: list[dict[str, AgentMap]] | None = None


@dataclass(frozen=True)
class FeedbackAck:
    """What a stored feedback record changed: nothing served (it is evidence for an operator)."""

    stored: bool
    controller_version: str  # the live controller, unchanged by feedback
    applied: bool  # always False: the live controller changes only when an operator promotes
    detail: str  # one sentence on what happened to the label
    records: int  # records in the feedback log now


@dataclass(frozen=True)
class ServiceInfo:
    """The ensemble's description and the size of the feedback log."""

    ensemble: EnsembleInfo
    feedback_records: int


class DetectorService:
    """The detector behind every front door.

    Every operation runs inside `call`, which writes the call's log line, counts it and turns
    every failure into a `ServiceRefusal`.

    Args:
        ensemble: a started `blackboard.ensemble.Ensemble` (or any `blackboard.board.Board`).
        config: a `fakeface.serve.server.ServerConfig` (limits, deadline, feedback settings).
        metrics: where to count calls.
        feedback_log: durable feedback store, or None to refuse feedback.
        heatmaps: zero-argument factory of a `GradCamRenderer` (built on the first request that
            wants heat maps), or None when this service cannot render them.
        admission: the in-flight bounds (a new one from ``config`` when None).
    """

    def __init__(self, ensemble: Any, config: Any, *, metrics: ServerMetrics, feedback_log: FeedbackLog | None,
                 heatmaps: Callable[[], Any] | None = None, admission: Admission | None = None) -> None:
        self.ensemble = ensemble
        self.config = config
        self.limits: InputLimits = config.input_limits
        self.max_image_bytes = int(config.max_message_bytes)  # the gRPC message limit, for every door
        self.metrics = metrics
        self.feedback_log = feedback_log
        self.admin: Any = None  # a `ControllerAdmin` when feedback may be promoted by an operator
        self._heatmap_factory = heatmaps
        self._heatmap_renderer: Any = None
        self._heatmap_lock = threading.Lock()
        self.admission = admission or Admission(config.max_in_flight, config.max_pixels_in_flight,
                                                on_change=self._gauges)
        self.accepting = threading.Event()  # set while serving
        self.stopping = threading.Event()  # set when the drain's grace is over: calls still waiting end
        # Ensemble calls run here so a waiting call can give up when the service stops.
        self._work = ThreadPoolExecutor(max_workers=int(config.max_in_flight), thread_name_prefix="fakeface-work")
        # The votes of recent answers, for feedback records (least recently used forgotten first).
        self._recent: LRUCache[str, list[dict[str, Any]]] = LRUCache(maxsize=int(config.recent_cases))
        self._recent_lock = threading.Lock()
        # One client must not flood the feedback log (promotion also needs distinct clients).
        self.feedback_limiter = RateLimiter(RateLimitConfig(rate_per_s=float(config.feedback_rate_per_s),
                                                            burst=int(config.feedback_burst)))

    # -- calls ----------------------------------------------------------------------------

    def _gauges(self, calls: int, pixels: int) -> None:
        self.metrics.in_flight.set(calls)
        self.metrics.pixels_in_flight.set(pixels)

    def _finish(self, call: Call, start: float) -> None:
        elapsed = time.perf_counter() - start
        code = call.status.value
        self.metrics.requests.labels(method=call.method, code=code).inc()
        self.metrics.latency.labels(method=call.method).observe(elapsed)
        if call.status != Status.OK:
            self.metrics.refused.labels(reason=code).inc()
        level = logging.INFO if call.status in (Status.OK, Status.INVALID_ARGUMENT) else logging.WARNING
        log.log(level, "rpc", extra={"fields": call.fields(elapsed)})

    @contextlib.contextmanager
    def call(self, method: str, caller: Caller, *, what: str = "request",
             retry: str = "(another replica or in a few seconds)") -> Iterator[Call]:
        """One call: its log line and metrics, and every failure below it as a `ServiceRefusal`.

        Args:
            method: the operation's name in logs and metrics ("Classify", "Feedback", ...).
            caller: who calls.
            what: "request" or "stream", for the messages.
            retry: what the client should retry when the service stops under it.

        Raises:
            ServiceRefusal: whatever went wrong, with a short message and never a traceback.
        """
        start = time.perf_counter()
        call = Call(method=method, caller=caller)
        try:
            yield call
        except Refused as err:
            raise self._refused(call, ServiceRefusal(Status.RESOURCE_EXHAUSTED, err.message, err.reason)) from None
        except ServiceRefusal as err:
            raise self._refused(call, err)
        except Stopping:
            raise self._refused(call, ServiceRefusal(Status.UNAVAILABLE, f"the server is shutting down; retry {retry}",
                                                     f"server stopped during the {what}")) from None
        except Exception as err:  # the edge: nothing below may crash the server or leak a traceback
            log.exception(f"{what} failed", extra={"fields": {"method": method, "request_id": call.request_id,
                                                              "peer": caller.peer}})
            raise self._refused(call, ServiceRefusal(
                Status.INTERNAL, f"internal error ({type(err).__name__}) in {what} {call.request_id}; "
                                 "the server log has the details", type(err).__name__)) from None
        finally:
            self._finish(call, start)

    @staticmethod
    def _refused(call: Call, err: ServiceRefusal) -> ServiceRefusal:
        call.status, call.reason, call.detail = err.status, err.reason, err.message
        return err

    def require_serving(self) -> None:
        """Raises UNAVAILABLE while the models load or the service drains."""
        if not self.accepting.is_set():
            raise ServiceRefusal(Status.UNAVAILABLE,
                                 "the detector is loading its models or shutting down; retry in a few seconds",
                                 "not serving")

    def require_running(self) -> None:
        """Raises `Stopping` once the drain's grace is over (between the items of a stream)."""
        if self.stopping.is_set():
            raise Stopping()

    @contextlib.contextmanager
    def stream(self) -> Iterator[None]:
        """Holds one call slot for a whole stream of images, refused unless serving."""
        with self.admission.call():
            self.require_serving()
            yield

    def deadline(self, caller: Caller) -> float:
        """Seconds the ensemble may take for ``caller``: its own deadline, else the default."""
        remaining = caller.time_remaining()
        # grpcio reports a call without a deadline as ~9.2e18 s left (not None): waiting on that
        # overflows every timer below it and the call would hang. Such a call gets the default.
        if remaining is None or remaining > NO_CLIENT_DEADLINE_S:
            return float(self.config.default_deadline_s)
        # The client's deadline wins over the default, in both directions.
        budget = float(remaining) - DEADLINE_MARGIN_S
        if budget <= 0:
            raise ServiceRefusal(Status.DEADLINE_EXCEEDED, f"deadline too short ({remaining * 1000:.0f} ms left)")
        return budget

    # -- heat maps ------------------------------------------------------------------------

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
            False when this service cannot render heat maps.
        """
        renderer = self._renderer()
        if renderer is None:
            return False
        renderer.render_png([np.zeros((size, size, 3), dtype=np.uint8)])
        return True

    # -- classify -------------------------------------------------------------------------

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
                # The ensemble honours the deadline itself; this bound only catches a hang, and
                # answers it within a second of the deadline (issue 26: no call past deadline + 1 s).
                if time.monotonic() > end + HANG_GRACE_S:
                    future.cancel()
                    raise DeadlineExceeded("the ensemble did not return after its deadline") from None

    def check_options(self, options: ClassifyOptions) -> None:
        """Refuses options no image could be classified with (INVALID_ARGUMENT)."""
        if len(options.source) > self.limits.max_source_chars:
            raise ServiceRefusal(Status.INVALID_ARGUMENT, f"options.source is {len(options.source)} characters; "
                                                          f"the limit is {self.limits.max_source_chars}")
        if options.detect not in DETECT_MODES:
            raise ServiceRefusal(Status.INVALID_ARGUMENT, f"detect must be one of {sorted(DETECT_MODES)}, "
                                                          f"received {options.detect[:40]!r}")

    def classify(self, call: Call, image: bytes, options: ClassifyOptions) -> Answer:
        """One encoded image, in a call slot of its own (refused unless serving)."""
        with self.admission.call():
            self.require_serving()
            return self.classify_item(call, image, options)

    def classify_item(self, call: Call, image: bytes, options: ClassifyOptions) -> Answer:
        """Checks, decodes and classifies one encoded image (a call, or one item of a stream).

        The header is checked before any pixel is decoded, and the decoded pixels count against
        the budget in flight until the answer is made.
        """
        start = time.perf_counter()
        deadline_s = self.deadline(call.caller)
        self.check_options(options)
        if len(image) > self.max_image_bytes:
            raise ServiceRefusal(Status.RESOURCE_EXHAUSTED, f"the image is {len(image)} bytes; the limit is "
                                                            f"{self.max_image_bytes}", IMAGE_TOO_LARGE)
        try:
            header = inspect_image(image, self.limits)
        except ImageError as err:
            raise ServiceRefusal(Status.INVALID_ARGUMENT, f"bad image: {err}", BAD_IMAGE) from err
        end = time.monotonic() + deadline_s
        with self.admission.pixels_of(header.pixels, deadline_s):
            try:
                rgb = decode_image(image, max_pixels=self.limits.max_pixels)
            except ImageError as err:
                raise ServiceRefusal(Status.INVALID_ARGUMENT, f"bad image: {err}", BAD_IMAGE) from err
            decode_ms = (time.perf_counter() - start) * 1000.0
            budget = end - time.monotonic()
            if budget <= 0:
                raise ServiceRefusal(Status.DEADLINE_EXCEEDED, "deadline passed while decoding the image")
            if not call.caller.is_active():
                raise ServiceRefusal(Status.CANCELLED, "the client went away", "client cancelled")
            try:
                # The face crops stay with the workers unless heat maps are to be drawn on them.
                case = self._wait(lambda: self.ensemble.classify(rgb, detect=options.detect, deadline_s=budget,
                                                                 source=options.source, request_id=call.request_id,
                                                                 keep_crops=options.heatmaps),
                                  budget)
            except TimeoutError as err:  # DeadlineExceeded
                raise ServiceRefusal(Status.DEADLINE_EXCEEDED, f"deadline exceeded: {str(err)[:200]}") from err
            except ValueError as err:  # an image the ensemble cannot use
                raise ServiceRefusal(Status.INVALID_ARGUMENT, f"bad image: {str(err)[:200]}", BAD_IMAGE) from err
            heatmaps = None
            if options.heatmaps and case.faces:
                renderer = self._renderer()
                if renderer is None:
                    raise ServiceRefusal(Status.FAILED_PRECONDITION, "this server cannot render heatmaps")
                t0 = time.perf_counter()
                heatmaps = renderer.render_png([f.crop for f in case.faces])
                case.timings_ms["heatmaps"] = (time.perf_counter() - t0) * 1000.0
        case.timings_ms["decode"] = decode_ms
        case.timings_ms["server_total"] = (time.perf_counter() - start) * 1000.0
        self._record(case)
        return Answer(case=case, heatmaps=heatmaps)

    def _record(self, case: Case) -> None:
        """Metrics per face, and the votes kept for feedback records."""
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

    # -- feedback and model info ----------------------------------------------------------

    def feedback(self, call: Call, request_id: str, label: str, face_index: int | None = None) -> FeedbackAck:
        """Checks and stores one person's label for an earlier answer (durably, with its votes).

        Args:
            call: the call in progress (its caller's key is rate limited).
            request_id: the request id of the answer the label is for.
            label: "real" or "fake" (any case); anything else is refused and named in the message.
            face_index: the answer's face (``Face.index``) the label is for; None: the whole picture.
        """
        with self.admission.call():
            if self.feedback_log is None:
                raise ServiceRefusal(Status.FAILED_PRECONDITION, "this server runs without a feedback log")
            client = call.caller.key
            if not self.feedback_limiter.allow(client):
                raise ServiceRefusal(Status.RESOURCE_EXHAUSTED, f"feedback rate limit for this client; retry in "
                                     f"{self.feedback_limiter.retry_after_s(client):.1f} s", RATE_LIMITED)
            problem = request_id_problem(request_id, self.limits.max_request_id_chars)
            if problem:
                raise ServiceRefusal(Status.INVALID_ARGUMENT, problem)
            call.extra = {"feedback_for": request_id}
            if str(label).lower() not in (REAL, FAKE):
                raise ServiceRefusal(Status.INVALID_ARGUMENT,
                                     f"label must be {REAL!r} or {FAKE!r}, received {str(label)[:40]!r}")
            version = str(self.ensemble.controller_version)
            # Evidence, not a live update: the label and the votes are stored; the live controller
            # changes only when an operator promotes the log (blackboard.controller_admin).
            evidence = getattr(self.ensemble, "case_evidence", lambda _: None)(request_id)
            with self._recent_lock:
                faces = self._recent.get(request_id)
            problem = face_index_problem(face_index, faces)
            if problem:
                raise ServiceRefusal(Status.INVALID_ARGUMENT, problem)
            # The log marks a second label for the same answer as a repeat: it counts once.
            count = self.feedback_log.append({
                "request_id": request_id, "label": str(label).lower(), "face_index": face_index,
                "client": hashed_client(client), "faces": faces,
                "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                "controller_version": version, "evidence": evidence,
            })
        detail = ("stored as evidence; it changes no answer until an operator reviews the feedback"
                  if evidence is not None else "stored; the answer's votes are no longer held, so it is kept as a note")
        log.info("feedback stored", extra={"fields": {"request_id": request_id, "records": count}})
        return FeedbackAck(stored=True, controller_version=version, applied=False, detail=detail, records=count)

    def model_info(self) -> ServiceInfo:
        """The bundle, controller, thresholds and health (no call slot: it is cheap)."""
        self.require_serving()
        records = 0 if self.feedback_log is None else self.feedback_log.records
        return ServiceInfo(ensemble=self.ensemble.describe(), feedback_records=records)

    def close(self) -> None:
        """Releases the work pool (after the front doors have stopped)."""
        self._work.shutdown(wait=False, cancel_futures=True)

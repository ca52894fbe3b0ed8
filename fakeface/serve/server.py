"""The gRPC detector server: configuration, the factory, health, readiness and drain.

`create_server` binds a `grpc.Server` around an `Ensemble`, starts it at once (health answers
NOT_SERVING while the models load) and flips health to SERVING when `Ensemble.ready` returns.
The pieces live in modules of one concern: `fakeface.service` (what the gRPC server and the
web page share: checks, deadlines, the ensemble call, feedback, logs and metrics),
`fakeface.serve.servicer` (the RPCs and their status codes), `fakeface.serve.admission`
(request checks and in-flight bounds), `fakeface.serve.auth` (bearer tokens),
`fakeface.rpc_convert` (wire messages), `fakeface.serve.metrics`, `fakeface.logs` and
`blackboard.feedback_log`. Their public names are re-exported here for existing imports.

Health (``grpc.health.v1``): service ``""`` and ``fakeface.v1.Detector`` say SERVING while the
face detector and at least one agent answer; each component also has its own entry
(``fakeface.v1.Detector/detector``, ``fakeface.v1.Detector/agent/<name>``) that turns
NOT_SERVING while its actor is down or restarting. Health checks never count against the
in-flight bound, so probes are answered under overload.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from pathlib import Path
from typing import Annotated, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator
from pydantic.dataclasses import dataclass

from fakeface.serve.admission import InputLimits, tolerant_deserializer
from fakeface.serve.auth import BearerTokenInterceptor, is_loopback
from blackboard.feedback_log import FeedbackLog
from fakeface.serve.metrics import ServerMetrics
from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc_convert import SERVICE_NAME
from fakeface.serve.servicer import DetectorServicer
from fakeface.service import DetectorService
from fakeface.service_calls import DEFAULT_MESSAGE_BYTES

__all__ = [
    "SERVICE_NAME",
    "BearerTokenInterceptor",
    "DetectorServer",
    "DetectorServicer",
    "FeedbackLog",
    "ServerConfig",
    "ServerMetrics",
    "create_server",
    "format_address",
]

log = logging.getLogger("fakeface.server")

# Handler threads kept free of detector calls, for health checks and quick refusals.
SPARE_THREADS = 8
# gRPC's own bound on calls (queued + running) is this many times max_in_flight: far enough
# above the servicer's bound that health probes get through a burst, low enough to cap memory.
GRPC_BOUND_FACTOR = 4
# Seconds between health probes of the detector and agent actors.
HEALTH_PERIOD_S = 2.0


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ServerConfig:
    """How the gRPC server runs (the models' batching lives in `EnsembleConfig`)."""

    max_message_bytes: PositiveInt = DEFAULT_MESSAGE_BYTES  # largest request/response; bigger -> RESOURCE_EXHAUSTED
    max_pixels: PositiveInt = 40_000_000  # decoded size limit of one image (decompression-bomb guard)
    max_pixels_in_flight: PositiveInt = 64_000_000  # decoded pixels of all images being handled; more waits, then RESOURCE_EXHAUSTED
    max_in_flight: PositiveInt = 64  # detector calls handled at once; more -> RESOURCE_EXHAUSTED (health not counted)
    workers: PositiveInt = 32  # handler threads at least (max_in_flight + a few spare are always provided)
    # Accepted bearer tokens, each non-empty; no tokens = no authentication.
    tokens: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    tls_cert: str | None = None  # PEM certificate chain path; with tls_key turns TLS on
    tls_key: str | None = None  # PEM private key path
    feedback_path: str | None = None  # append-only JSONL feedback log; None = Feedback refused
    default_deadline_s: PositiveFloat = 10.0  # ensemble deadline when the client sets none (a client's own wins)
    ready_timeout_s: PositiveFloat = 600.0  # how long to wait for the models before giving up
    drain_grace_s: NonNegativeFloat = 10.0  # in-flight calls get this long to finish on SIGTERM/SIGINT
    recent_cases: PositiveInt = 4096  # recent answers remembered so feedback records carry the votes
    feedback_rate_per_s: PositiveFloat = 0.1  # sustained Feedback calls per second per client (token or peer host)
    feedback_burst: PositiveInt = 5  # Feedback calls a client may make at once; beyond the bucket -> RESOURCE_EXHAUSTED
    health_period_s: PositiveFloat = HEALTH_PERIOD_S  # how often the detector and agent actors are probed
    # Load and trace the heat maps while the replicas load, and say SERVING only after: warmed
    # after SERVING, they competed with the first answers for the CPU (issue 26).
    warm_heatmaps: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> "ServerConfig":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "TLS needs both a certificate and a key; received "
                f"tls_cert={self.tls_cert!r}, tls_key={self.tls_key!r}."
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def input_limits(self) -> InputLimits:
        return InputLimits(max_pixels=self.max_pixels)


def format_address(host: str, port: int) -> str:
    """``host:port`` with an IPv6 host in brackets (``[::]:50051``)."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class DetectorServer:
    """A started `grpc.Server` plus the detector's health, readiness and drain controls.

    Attributes:
        server: the underlying `grpc.Server`.
        servicer: the `DetectorServicer` (the gRPC edge).
        service: the `DetectorService` behind it (and behind the web page).
        health: the gRPC health servicer.
        metrics: the server's metrics.
    """

    def __init__(self, server: grpc.Server, servicer: DetectorServicer, health_servicer: health.HealthServicer,
                 metrics: ServerMetrics, config: ServerConfig) -> None:
        self.server = server
        self.servicer = servicer
        self.service = servicer.service
        self.health = health_servicer
        self.metrics = metrics
        self.config = config
        self.serving = threading.Event()
        self.ready_error: str | None = None
        self._ready_done = threading.Event()
        self._closed = threading.Event()
        self.components: dict[str, bool] = {}

    # grpc.Server controls used by callers --------------------------------------------------
    def stop(self, grace: float | None) -> threading.Event:
        """Health NOT_SERVING, refuse new calls, then `grpc.Server.stop` (returns its event)."""
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.service.accepting.clear()
        self._closed.set()
        done = self.server.stop(grace)
        self.service.close()
        return done

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout=timeout)

    # health --------------------------------------------------------------------------------
    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def _watch_components(self) -> None:
        """Probes the actors every ``health_period_s``: per-component health, gauges and overall health."""
        while not self._closed.wait(self.config.health_period_s):
            if not self.serving.is_set() or not self.service.accepting.is_set():
                continue
            try:
                status = self.service.ensemble.component_status(timeout_s=self.config.health_period_s)
            except Exception:  # noqa: BLE001 - a failed probe must not stop the watcher; logged
                log.exception("health probe failed")
                continue
            self._apply_components(status)

    def _apply_components(self, status: dict[str, bool]) -> None:
        changed = {name: up for name, up in status.items() if self.components.get(name) != up}
        self.components = dict(status)
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for name, up in status.items():
            self.metrics.component_up.labels(component=name).set(1 if up else 0)
            self.health.set(f"{SERVICE_NAME}/{name}", serving if up else not_serving)
        if changed:
            level = logging.INFO if all(status.values()) else logging.WARNING
            log.log(level, "components changed", extra={"fields": {"components": status, "changed": changed}})
        agents_up = any(up for name, up in status.items() if name.startswith("agent/"))
        if self.service.accepting.is_set():
            self._set_health(serving if status.get("detector", True) and agents_up else not_serving)

    def _warm_heatmaps(self) -> None:
        try:
            self.service.warm_heatmaps()
        except Exception:  # noqa: BLE001 - heat maps then load on first use, which reports any error
            log.exception("heat-map warm-up failed")

    def _await_ready(self) -> None:
        warm = None
        if self.config.warm_heatmaps:  # in this process, alongside the replicas loading theirs
            warm = threading.Thread(target=self._warm_heatmaps, name="fakeface-heatmap-warmup", daemon=True)
            warm.start()
        try:
            ok = self.service.ensemble.ready(timeout_s=self.config.ready_timeout_s)
            if ok is False:
                raise TimeoutError(f"models not ready within {self.config.ready_timeout_s:.0f} s")
            if warm is not None:
                warm.join(self.config.ready_timeout_s)
        except Exception as err:  # reported through ready_error and the log; health stays NOT_SERVING
            self.ready_error = f"{type(err).__name__}: {err}"
            log.exception("ensemble failed to become ready")
        else:
            self.service.accepting.set()
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            self.serving.set()
            log.info("serving", extra={"fields": {"service": SERVICE_NAME}})
            threading.Thread(target=self._watch_components, name="fakeface-health", daemon=True).start()
        finally:
            self._ready_done.set()

    def wait_until_serving(self, timeout: float | None = None) -> bool:
        """Blocks until health is SERVING (True), the models failed (RuntimeError) or timeout (False)."""
        self._ready_done.wait(timeout)
        if self.ready_error is not None:
            raise RuntimeError(f"the detector could not load its models: {self.ready_error}")
        return self.serving.is_set()

    def drain(self, grace_s: float | None = None) -> None:
        """Stops in order: health NOT_SERVING and new calls refused (UNAVAILABLE, retry), calls in
        flight get ``grace_s`` to finish, calls still waiting then end with UNAVAILABLE, then stop."""
        grace = self.config.drain_grace_s if grace_s is None else float(grace_s)
        in_flight = self.service.admission.calls
        log.info("draining", extra={"fields": {"grace_s": grace, "in_flight": in_flight}})
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.service.accepting.clear()
        if not self.service.admission.wait_idle(grace):
            log.warning("grace period over; ending the calls still in flight with UNAVAILABLE",
                        extra={"fields": {"in_flight": self.service.admission.calls}})
        self.service.stopping.set()
        # Handlers notice `stopping` within STOP_POLL_S and answer UNAVAILABLE; give them a moment.
        self.service.admission.wait_idle(1.0)
        self.stop(0.5).wait()
        log.info("stopped")


def _method_handlers(servicer: DetectorServicer) -> dict[str, grpc.RpcMethodHandler]:
    """The Detector's handlers, each with a deserializer that turns bad bytes into `Malformed`."""
    def ser(message: Any) -> bytes:
        return message.SerializeToString()

    methods = {  # name -> (how it streams, its request message)
        "Classify": (grpc.unary_unary_rpc_method_handler, pb.ClassifyRequest),
        "ClassifyStream": (grpc.stream_stream_rpc_method_handler, pb.ClassifyRequest),
        "Feedback": (grpc.unary_unary_rpc_method_handler, pb.FeedbackRequest),
        "GetModelInfo": (grpc.unary_unary_rpc_method_handler, pb.GetModelInfoRequest),
    }
    return {name: handler(getattr(servicer, name), request_deserializer=tolerant_deserializer(request),
                          response_serializer=ser)
            for name, (handler, request) in methods.items()}


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
        address: ``host:port`` to bind (IPv6 hosts in brackets, see `format_address`); port 0
            picks a free port.
        ensemble: a `blackboard.ensemble.Ensemble`.
        config: server limits, security and feedback settings.
        heatmaps: zero-argument factory of a `GradCamRenderer`; None takes the ensemble's
            replicas' (`Ensemble.heatmap_renderer`), or builds one from ``ensemble.bundle``, on
            the first request that asks for heatmaps.
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
    host = address.rsplit(":", 1)[0]
    if not is_loopback(host) and not (config.tls and config.tokens):
        log.warning(
            "binding a non-loopback address without TLS and a token: anyone on the network can use "
            "(and read the answers of) this detector; pass --tls-cert/--tls-key and --token",
            extra={"fields": {"address": address, "tls": config.tls, "auth": bool(config.tokens)}},
        )
    feedback_log = FeedbackLog(config.feedback_path) if config.feedback_path else None
    service = DetectorService(ensemble, config, metrics=metrics, feedback_log=feedback_log,
                              heatmaps=heatmaps if heatmaps is not None else (lambda: _default_renderer(ensemble)))
    if feedback_log is not None and getattr(ensemble, "controller", None) is not None:
        from blackboard.controller_admin import ControllerAdmin

        service.admin = ControllerAdmin(ensemble, feedback_log.path)
        service.admin.restore()  # a promoted version survives the restart
    servicer = DetectorServicer(service)
    interceptors = [BearerTokenInterceptor(config.tokens, metrics)] if config.tokens else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max(config.workers, config.max_in_flight) + SPARE_THREADS,
                                   thread_name_prefix="fakeface-rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),  # two servers must never share a port by accident
        ],
        maximum_concurrent_rpcs=GRPC_BOUND_FACTOR * config.max_in_flight + SPARE_THREADS,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, _method_handlers(servicer)),))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:
        raise ValueError(f"cannot bind {address}: {err}; is the port in use? (IPv6 hosts need brackets: "
                         "[::]:50051)") from err
    wrapped = DetectorServer(server, servicer, health_servicer, metrics, config)
    wrapped._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    threading.Thread(target=wrapped._await_ready, name="fakeface-ready", daemon=True).start()
    return wrapped, port


def _default_renderer(ensemble: Any) -> Any:
    """The ensemble's own heat maps when it renders them in its replicas (`Ensemble.heatmap_renderer`:
    this process then never loads TensorFlow), else a Grad-CAM renderer here on its bundle."""
    remote = getattr(ensemble, "heatmap_renderer", None)
    if remote is not None:
        return remote()
    from vision.gradcam import GradCamRenderer  # lazily: TensorFlow is heavy

    return GradCamRenderer(ensemble.bundle)

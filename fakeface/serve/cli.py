"""`fakeface serve`: run the gRPC detector on a model bundle until SIGTERM/SIGINT.

Prints one line ``fakeface serve: SERVING on HOST:PORT ...; web page on URL`` on stdout once the
models are loaded and health says SERVING (the page, `fakeface.web`, runs in the same process
on the same ensemble; ``--http-port 0`` turns it off); logs go to stderr as JSON lines. On
SIGTERM or SIGINT the server turns health to NOT_SERVING, refuses new calls, lets in-flight ones
finish within the grace period, then stops.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

from agents.command_line import add_bundle_arg, add_config_options, command_parser, config_values
from blackboard.config import EnsembleConfig
from fakeface.service_calls import MIB

TOKEN_ENV = "FAKEFACE_TOKEN"
# `EnsembleConfig` fields the command line sets as they are, with their help (each option's
# name, type and default are the field's).
ENSEMBLE_OPTIONS = {
    "replicas": "Ray Serve replicas of the agent set, or of each agent (the minimum when autoscaling)",
    "max_replicas": "autoscale each agent up to this many replicas on load (default: fixed --replicas)",
    "max_batch_size": "faces per agent batch",
    "max_wait_ms": "how long a micro-batch waits to fill under load, in ms (a lone request never waits)",
    "deadline_s": "deadline when a client sets none",
}


def default_feedback_log() -> Path:
    """``$XDG_STATE_HOME/fakeface/feedback.jsonl`` (``~/.local/state`` when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "fakeface" / "feedback.jsonl"


def build_parser(prog: str = "fakeface serve") -> argparse.ArgumentParser:
    parser = command_parser(prog, __doc__)
    add_bundle_arg(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=50051, help="port to bind; 0 picks a free one")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster (None: start a loopback-only local Ray with token auth)")
    # The Ray deployment's options default to EnsembleConfig's own values (a light import).
    parser.add_argument("--layout", choices=["sets", "agents"], default=EnsembleConfig.layout,
                        help="sets: every agent in each Serve replica, one call per case (fastest on a few cores); "
                             "agents: one Serve application per agent (faults and scaling per agent)")
    add_config_options(parser, EnsembleConfig, ENSEMBLE_OPTIONS)
    parser.add_argument("--token", action="append", default=None,
                        help=f"accepted bearer token (repeatable; default: ${TOKEN_ENV}); none = no auth")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate chain; with --tls-key enables TLS")
    parser.add_argument("--tls-key", default=None, help="PEM private key")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port; 0 = off")
    parser.add_argument("--http-port", type=int, default=8080,
                        help="port of the web page on --host (same ensemble, same guards); 0 = off")
    parser.add_argument("--max-video-mb", type=float, default=64.0, help="largest video the web page takes in MiB")
    parser.add_argument("--feedback-log", default=None,
                        help=f"append-only feedback JSONL (None: {default_feedback_log()})")
    parser.add_argument("--max-message-mb", type=float, default=8.0, help="largest request in MiB")
    parser.add_argument("--max-in-flight", type=int, default=64, help="concurrent calls admitted")
    parser.add_argument("--workers", type=int, default=32, help="handler threads")
    parser.add_argument("--drain-grace-s", type=float, default=10.0, help="grace for in-flight calls on stop")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _fail(message: str) -> int:
    print(f"fakeface serve: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    """Runs the server; returns 0 after a clean drain, 2 on a configuration error."""
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be 0..65535, received {args.port}.")
    if not 0 <= args.metrics_port <= 65535:
        return _fail(f"--metrics-port must be 0..65535, received {args.metrics_port}.")
    if not 0 <= args.http_port <= 65535:
        return _fail(f"--http-port must be 0..65535 (0 turns the web page off), received {args.http_port}.")
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail("TLS needs both --tls-cert and --tls-key.")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not os.path.isfile(path):
            return _fail(f"{flag} {path}: no such file; pass a PEM file.")
    tokens = tuple(args.token or ([os.environ[TOKEN_ENV]] if os.environ.get(TOKEN_ENV) else []))

    from agents.bundle import BundleError, load_bundle
    from fakeface.logs import configure_json_logging

    configure_json_logging(getattr(logging, args.log_level))
    try:  # signature, files, checksums: before the slow imports and Ray, so a refusal takes ~1 s
        bundle = load_bundle(args.bundle)
    except BundleError as err:
        return _fail(str(err))
    from agents.config_errors import one_line
    from fakeface.serve.server import ServerConfig, create_server, format_address
    from fakeface.serve.metrics import ServerMetrics
    from blackboard.feedback_log import FeedbackLog
    for flag, mib in (("--max-message-mb", args.max_message_mb), ("--max-video-mb", args.max_video_mb)):
        if not math.isfinite(mib) or mib * MIB < 1:
            return _fail(f"{flag} must be a positive number of MiB, received {mib}.")
    try:
        config = ServerConfig(
            max_message_bytes=int(args.max_message_mb * MIB),
            max_in_flight=args.max_in_flight,
            workers=args.workers,
            tokens=tokens,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            feedback_path=str(args.feedback_log or default_feedback_log()),
            default_deadline_s=args.deadline_s,
            drain_grace_s=args.drain_grace_s,
        )
        if config.feedback_path:  # a log it could not write would fail only at the first feedback
            FeedbackLog(config.feedback_path)
        from blackboard.ensemble import Ensemble

        ens_config = EnsembleConfig(
            layout=args.layout, **config_values(args, ENSEMBLE_OPTIONS),
            # The page asks for heat maps with every image: traced by the agent replicas (which
            # render them) before SERVING, not on the first visitor's image (4.6 s -> 0.5 s for
            # that answer, measured on 2 cores).
            warm_heatmaps=bool(args.http_port),
        )
    except ValueError as err:  # a ServerConfig or EnsembleConfig field out of range, an unusable feedback log
        return _fail(one_line(err))

    stop = threading.Event()
    # Installed before the slow start so a SIGTERM during model loading still stops cleanly.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    ensemble = None
    server = None
    web = None
    try:
        try:
            ensemble = Ensemble(bundle, ens_config, ray_address=args.ray_address)  # loaded and verified once
        except (ValueError, ConnectionError) as err:  # too few CPUs in the cluster, Ray unreachable
            return _fail(str(err))
        # ray.init installs a native SIGTERM handler that dumps a stack trace; ours drains instead.
        for sig in previous:
            signal.signal(sig, lambda *_: stop.set())
        metrics = ServerMetrics()
        try:
            server, port = create_server(format_address(args.host, args.port), ensemble, config, metrics=metrics)
        except ValueError as err:
            return _fail(str(err))
        if args.http_port:  # up while the models load: the page says so until SERVING
            from fakeface.web.app import WebConfig, create_app
            from fakeface.web.serve import WebServer
            from fakeface.web.serve import warn_if_exposed

            try:
                app = create_app(server.service, WebConfig(max_video_bytes=int(args.max_video_mb * MIB)))
                warn_if_exposed(args.host, tls=config.tls, auth=bool(tokens))
                web = WebServer(app, args.host, args.http_port, tls_cert=args.tls_cert, tls_key=args.tls_key,
                                limit_concurrency=args.max_in_flight).start()
            except (OSError, ValueError) as err:
                return _fail(f"{err}; pass another --http-port, or 0 to turn the web page off.")
        if args.metrics_port:
            try:
                metrics.serve_http(args.metrics_port, host=args.host)
            except OSError as err:
                return _fail(f"cannot serve metrics on {args.host}:{args.metrics_port}: {err.strerror}.")
        while not stop.is_set():
            try:
                if server.wait_until_serving(timeout=0.5):
                    break
            except RuntimeError as err:
                return _fail(str(err))
        if stop.is_set():
            return 0
        print(
            f"fakeface serve: SERVING on {format_address(args.host, port)} (bundle {bundle.version}, "
            f"tls {'on' if config.tls else 'off'}, auth {'on' if tokens else 'off'}, "
            f"metrics {args.metrics_port or 'off'}, feedback log {config.feedback_path})"
            + (f"; web page on {web.url}" if web is not None else "; web page off"),
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        if web is not None:
            web.stop(args.drain_grace_s)
        if server is not None:
            server.drain(args.drain_grace_s)
        if ensemble is not None:
            ensemble.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""`fakeface serve`: run the gRPC detector on a model bundle until SIGTERM/SIGINT.

Prints one line ``fakeface serve: SERVING on HOST:PORT ...`` on stdout once the models are
loaded and health says SERVING; logs go to stderr as JSON lines. On SIGTERM or SIGINT the
server turns health to NOT_SERVING, refuses new calls, lets in-flight ones finish within the
grace period, then stops.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

TOKEN_ENV = "FAKEFACE_TOKEN"


def default_feedback_log() -> Path:
    """``$XDG_STATE_HOME/fakeface/feedback.jsonl`` (``~/.local/state`` when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "fakeface" / "feedback.jsonl"


def build_parser(prog: str = "fakeface serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="model bundle directory (default: the shipped bundle)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50051, help="port to bind; 0 picks a free one (default 50051)")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    parser.add_argument("--replicas", type=int, default=1, help="actor replicas per agent (default 1)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="faces per agent batch (default 16)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batching wait in ms (default 5)")
    parser.add_argument("--deadline-s", type=float, default=10.0, help="deadline when a client sets none (default 10)")
    parser.add_argument("--token", action="append", default=None,
                        help=f"accepted bearer token (repeatable; default: ${TOKEN_ENV}); none = no auth")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate chain; with --tls-key enables TLS")
    parser.add_argument("--tls-key", default=None, help="PEM private key")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port; 0 = off (default)")
    parser.add_argument("--feedback-log", default=None,
                        help=f"append-only feedback JSONL (default {default_feedback_log()})")
    parser.add_argument("--max-message-mb", type=float, default=8.0, help="largest request in MiB (default 8)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="concurrent calls admitted (default 64)")
    parser.add_argument("--workers", type=int, default=32, help="handler threads (default 32)")
    parser.add_argument("--drain-grace-s", type=float, default=10.0, help="grace for in-flight calls on stop (default 10)")
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
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail("TLS needs both --tls-cert and --tls-key.")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not os.path.isfile(path):
            return _fail(f"{flag} {path}: no such file; pass a PEM file.")
    tokens = tuple(args.token or ([os.environ[TOKEN_ENV]] if os.environ.get(TOKEN_ENV) else []))

    from agents.bundle import BundleError, load_bundle
    from blackboard.server import ServerConfig, ServerMetrics, configure_json_logging, create_server

    configure_json_logging(getattr(logging, args.log_level))
    try:
        bundle = load_bundle(args.bundle)
    except BundleError as err:
        return _fail(str(err))
    try:
        config = ServerConfig(
            max_message_bytes=int(args.max_message_mb * 1024 * 1024),
            max_in_flight=args.max_in_flight,
            workers=args.workers,
            tokens=tokens,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            feedback_path=str(args.feedback_log or default_feedback_log()),
            default_deadline_s=args.deadline_s,
            drain_grace_s=args.drain_grace_s,
        )
        from blackboard.ensemble import Ensemble, EnsembleConfig

        ens_config = EnsembleConfig(
            replicas=args.replicas, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
            deadline_s=args.deadline_s,
        )
    except ValueError as err:
        return _fail(str(err))

    stop = threading.Event()
    # Installed before the slow start so a SIGTERM during model loading still stops cleanly.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    ensemble = None
    server = None
    try:
        try:
            ensemble = Ensemble(bundle.path, ens_config, ray_address=args.ray_address)
        except (ValueError, ConnectionError) as err:  # too few CPUs in the cluster, Ray unreachable
            return _fail(str(err))
        # ray.init installs a native SIGTERM handler that dumps a stack trace; ours drains instead.
        for sig in previous:
            signal.signal(sig, lambda *_: stop.set())
        metrics = ServerMetrics()
        try:
            server, port = create_server(f"{args.host}:{args.port}", ensemble, config, metrics=metrics)
        except ValueError as err:
            return _fail(str(err))
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
        shown_host = f"[{args.host}]" if ":" in args.host else args.host
        print(
            f"fakeface serve: SERVING on {shown_host}:{port} (bundle {bundle.version}, "
            f"tls {'on' if config.tls else 'off'}, auth {'on' if tokens else 'off'}, "
            f"metrics {args.metrics_port or 'off'}, feedback log {config.feedback_path})",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        if server is not None:
            server.drain(args.drain_grace_s)
        if ensemble is not None:
            ensemble.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

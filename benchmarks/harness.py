"""What every benchmark script shares: its process settings, the checkout it measures, the
options several scripts take (each defined once here), and how it writes its result.

The scripts run by path (``python benchmarks/bench_x.py``), so this folder is first on
``sys.path`` and they reach this module as ``harness``; :func:`setup` then puts the checkout's
root on ``sys.path``, so the packages measured are this checkout's (as ``python -m`` from its
root would), whatever is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Iterator, NamedTuple

if TYPE_CHECKING:
    import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def use_checkout() -> None:
    """Puts this checkout first on ``sys.path`` (for a script that only starts others, or sets
    its own environment); call it before importing the project's packages."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def setup(*, tf_log_level: str = "2") -> None:
    """Sets the process defaults the measured code reads at import (Keras on TensorFlow, quiet
    TensorFlow logs, no Ray usage reports) and puts this checkout first on ``sys.path``.

    Call it before importing numpy, TensorFlow, Ray or the project's packages; a variable the
    caller's environment already sets is kept.

    Args:
        tf_log_level: TF_CPP_MIN_LOG_LEVEL default ("2": errors only, "3": none).
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", tf_log_level)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    use_checkout()


def bench_parser(doc: str, *, show_defaults: bool = False, out: str | None = None) -> argparse.ArgumentParser:
    """A benchmark script's argument parser, described by the first line of its docstring.

    Args:
        doc: the script's ``__doc__``.
        show_defaults: print each option's default in ``--help``.
        out: the name of the script's result file in benchmarks/results/, which ``--out`` (a
            `Path`) replaces (None: the script declares its own ``--out``, or has none).
    """
    from agents.command_line import command_parser  # after setup(): this checkout's package

    parser = command_parser(None, doc, show_defaults=show_defaults)
    if out is not None:
        # With show_defaults the formatter adds the (absolute) default itself.
        parser.add_argument("--out", type=Path, default=RESULTS / out,
                            help="JSON result" if show_defaults else f"JSON result (default: benchmarks/results/{out})")
    return parser


def add_repeats_arg(parser: argparse.ArgumentParser, *, default: int, per: str) -> None:
    """``--repeats``: how many times a benchmark times each of its measurements.

    Args:
        parser: the script's parser.
        default: the default count.
        per: what one measurement is (and how the runs are summed up), as the help names it.
    """
    parser.add_argument("--repeats", type=int, default=default, help=f"timed runs per {per}")


def add_load_args(parser: argparse.ArgumentParser, *, clients: int, seconds: float | None = None,
                  phase: str = "the load") -> None:
    """``--clients``, the concurrent clients a load benchmark drives a server with, and (given a
    default length) ``--seconds``, how long it does.

    Args:
        parser: the script's parser.
        clients: the default number of clients.
        seconds: the default length in seconds (None: the script runs no timed load, no option).
        phase: what the clients and the length are of, as the help names it.
    """
    parser.add_argument("--clients", type=int, default=clients, help=f"concurrent clients in {phase}")
    if seconds is not None:
        parser.add_argument("--seconds", type=float, default=seconds, help=f"length of {phase}")


@contextmanager
def serving(service: Any, config: Any, *, timeout_s: float = 600.0, grace_s: float = 0.0) -> Iterator[tuple[Any, int]]:
    """Runs `fakeface serve`'s gRPC server in this process on a free loopback port.

    Args:
        service: what answers the calls (an ``Ensemble``, an ``InProcessBoard``...).
        config: its ``fakeface.serve.server.ServerConfig``.
        timeout_s: how long the models may take to load before the run is given up.
        grace_s: how long calls still running may finish when the block ends.

    Yields:
        (server, port), once the server reports SERVING; it is stopped when the block ends.
    """
    from fakeface.serve.server import create_server  # after setup(): this checkout's package

    server, port = create_server("127.0.0.1:0", service, config)
    try:
        if not server.wait_until_serving(timeout=timeout_s):
            raise RuntimeError(f"server not SERVING within {timeout_s:.0f} s")
        yield server, port
    finally:
        server.stop(grace_s).wait()


def machine() -> str:
    """The processor and CPU count, as a result records where it was measured."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def machine_and_load(load_before: tuple[float, ...]) -> dict[str, Any]:
    """The machine and its load average (1, 5, 15 min) before and after a run: a throughput
    result is read against how busy the machine was."""
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def tree_rss(root: int) -> list[tuple[Any, int]]:
    """(process, resident bytes) of ``root`` and of every process below it, as a memory result
    counts a server with its Ray workers; a process that ends while being read is left out, and
    a ``root`` that is gone gives an empty list."""
    import psutil

    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    out = []
    for proc in procs:
        try:
            out.append((proc, proc.memory_info().rss))
        except psutil.Error:
            continue
    return out


def now() -> str:
    """The current UTC time to the second, ISO 8601, as a result records when it was measured."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stop_server(proc: subprocess.Popen, *, timeout_s: float = 60.0) -> None:
    """Stops a `fakeface serve` child: SIGTERM (it drains and exits), then SIGKILL if it has not
    exited within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Served(NamedTuple):
    """A `fakeface serve` child started by :func:`serve_process`."""

    process: subprocess.Popen
    port: int  # gRPC
    http_port: int  # the web page
    serving_s: float  # from its start to SERVING


@contextmanager
def serve_process(log: Path, *args: str, timeout_s: float = 600.0) -> Iterator[Served]:
    """Starts `fakeface serve` as a user does: a child process from this checkout, gRPC and the
    web page on free loopback ports, its output to ``log``; waits until its health service
    reports SERVING.

    Args:
        log: the file the server's stdout and stderr go to.
        *args: more ``fakeface serve`` arguments (``--bundle DIR``...).
        timeout_s: how long the models may take to load before the run is given up.

    Yields:
        The server, once SERVING; it is stopped (:func:`stop_server`) when the block ends.

    Raises:
        SystemExit: the server exited, or was not SERVING within ``timeout_s``.
    """
    from blackboard.ray_runtime import free_ports  # after setup(): this checkout's package

    port, http_port = free_ports(2)
    # A benchmark's feedback (and the controller state kept beside it) never lands in the user's
    # own state folder; the throwaway one goes when the server does.
    with tempfile.TemporaryDirectory(prefix="fakeface-bench-state-") as state, open(log, "w") as out:
        if "--feedback-log" not in args:
            args = (*args, "--feedback-log", str(Path(state) / "feedback.jsonl"))
        proc = subprocess.Popen([sys.executable, "-m", "fakeface.cli", "serve", "--port", str(port),
                                 "--http-port", str(http_port), *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            serving_s = _wait_serving(proc, port, log=log, timeout_s=timeout_s)
            yield Served(proc, port, http_port, serving_s)
        finally:
            stop_server(proc)


def _wait_serving(proc: subprocess.Popen, port: int, *, log: Path, timeout_s: float) -> float:
    """Polls the health service of the server ``proc`` on ``port`` until SERVING; returns the
    seconds it took. Gives up (SystemExit naming ``log``) when the process exits first or
    ``timeout_s`` passes."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    start = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - start <= timeout_s:
            if proc.poll() is not None:
                raise SystemExit(f"fakeface serve exited with {proc.returncode} before SERVING; see {log}")
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - start
            except grpc.RpcError:
                pass  # not listening yet
            time.sleep(0.5)
    raise SystemExit(f"fakeface serve not SERVING after {timeout_s:.0f} s; see {log}")


def timed_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, float]:
    """Makes one gRPC call; returns its status name ("OK" when it returned, else the code the
    RpcError carries, such as "DEADLINE_EXCEEDED") and its wall time in seconds."""
    import grpc

    start = time.perf_counter()
    try:
        fn(*args, **kwargs)
        code = "OK"
    except grpc.RpcError as err:
        code = err.code().name
    return code, time.perf_counter() - start


def face_crop(candidates: Iterable[Path] = ()) -> tuple[np.ndarray, str]:
    """(RGB face crop, where it came from): the first candidate image that reads, else a 224x224
    crop of scikit-image's astronaut, so a benchmark still runs where the shared data is absent."""
    import cv2

    for path in candidates:
        bgr = cv2.imread(str(path))
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), str(path)
    from skimage import data

    crop = data.astronaut()[30:250, 120:340]
    return cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA), "skimage astronaut crop"


def stamp(argv: list[str] | None = None) -> dict[str, str]:
    """Where and when a result was measured ("machine", "date") and, given the script's
    arguments, the command that measured it ("command")."""
    out = {"machine": machine(), "date": now()}
    if argv is not None:
        out["command"] = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *argv])
    return out


def write_json(path: str | os.PathLike[str], result: Any, *, indent: int = 2, echo: bool = False,
               hide: Collection[str] = (), markdown: str | None = None) -> Path:
    """Writes a result as JSON (its folder made when missing; written then renamed, so a reader
    never sees half a file) and prints where.

    Args:
        path: the result file.
        result: anything ``json.dumps`` takes.
        indent: JSON indentation.
        echo: also print the JSON itself, before the path.
        hide: top-level keys echo leaves out (long per-call tables).
        markdown: a table to write beside it, as the same name with suffix ``.md``.

    Returns:
        The path written.
    """
    from agents.atomic import atomic_write_text  # after setup(): this checkout's package

    text = json.dumps(result, indent=indent)
    path = atomic_write_text(path, text + "\n", parents=True)
    if markdown is not None:
        atomic_write_text(path.with_suffix(".md"), markdown + "\n")
    if echo:
        print(text if not hide else json.dumps({k: v for k, v in result.items() if k not in hide}, indent=indent))
    print(f"wrote {path}")
    return path


def add_vote_args(parser: argparse.ArgumentParser, *, manifest: str) -> None:
    """The arguments of a benchmark fed by the agents' votes on a manifest's val split.

    Args:
        parser: the script's parser.
        manifest: the default manifest.
    """
    from agents.command_line import add_bundle_arg  # after setup(): this checkout's package

    add_bundle_arg(parser)
    parser.add_argument("--manifest", default=manifest, help="manifest with a val split")
    parser.add_argument("--cache-dir", default=None, help="vote cache folder")


def val_votes(args: argparse.Namespace) -> tuple[Any, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(bundle, paths, labels, groups, votes) of the val split named by :func:`add_vote_args`'
    arguments: the bundle's agents' p_fake per face, from the vote cache where it has them."""
    from agents.bundle import load_bundle
    from training.votes import collect_votes, read_manifest_split

    bundle = load_bundle(args.bundle)
    paths, labels, groups = read_manifest_split(args.manifest, "val", with_groups=True)
    votes = collect_votes(bundle, paths, progress=False, cache_dir=args.cache_dir)
    return bundle, paths, labels, groups, votes

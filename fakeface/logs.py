"""Structured logs for the service, and the switch that keeps third-party chatter off stderr.

Every service line is one JSON object (time, level, logger, message and the call's fields:
request id, peer, method, status, reason). Commands print only the project's own output by
default; `quiet_third_party` silences TensorFlow/absl/CUDA start-up lines, Ray's auth notice and
deprecation warnings unless ``--verbose`` asks for them.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import os
import re
import sys
import threading
import warnings
from typing import Any

# Lines native libraries (TensorFlow's absl logging, CUDA probes, gRPC's C core) write straight
# to file descriptor 2, past every Python setting: absl INFO/WARNING lines, absl's "before
# InitializeLog" notice, and GPU-library registration errors on machines without a GPU.
NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    rb"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] .*(cuda|cuDNN|cuBLAS|cuFFT|TensorRT|GPU))"
)
# Loggers of libraries whose INFO/WARNING start-up lines are not the project's output.
NOISY_LOGGERS = ("ray", "absl", "tensorflow", "h5py", "matplotlib", "urllib3", "PIL", "filelock")


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


def quiet_third_party(verbose: bool = False) -> None:
    """Keeps library start-up noise off stderr unless ``verbose``.

    Sets the environment variables TensorFlow, gRPC's C core and Ray read at import (so call it
    before importing them; values a user exported are kept) and raises the level of the
    libraries' Python loggers. With ``verbose`` nothing is silenced.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO/WARNING/ERROR lines of TensorFlow
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # grpc C-core start-up lines (absl "WARNING: All log messages")
    os.environ.setdefault("GLOG_minloglevel", "2")  # glog-based native libraries
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Never TF_ENABLE_ONEDNN_OPTS=0 to hide oneDNN's start-up notice: without oneDNN, bf16
    # training falls back to Eigen's emulated kernels and runs 10-20x slower on this CPU.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*[Dd]eprecat.*")
    filter_native_stderr()
    try:  # absl's Python handler: INFO lines from TensorFlow's Python side
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quiet
        return


_filter_lock = threading.Lock()
_filter_installed = False


def filter_native_stderr() -> None:
    """Drops `NATIVE_NOISE` lines written to file descriptor 2 by native code; the rest passes.

    Descriptor 2 becomes a pipe read by a daemon thread that forwards every other line to the
    original stderr; at exit the descriptor is restored and the pipe drained. Idempotent.
    """
    global _filter_installed
    with _filter_lock:
        if _filter_installed:
            return
        _filter_installed = True
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                keep = b"".join(line + b"\n" for line in lines if not NATIVE_NOISE.match(line))
                if keep:
                    os.write(original, keep)
            if pending and not NATIVE_NOISE.match(pending):
                os.write(original, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the pump drains and ends
        thread.join(timeout=2.0)

    atexit.register(restore)

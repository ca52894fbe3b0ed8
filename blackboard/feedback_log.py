"""The durable feedback store: an append-only JSON-lines file, one fsynced record per call."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("fakeface.server")


class FeedbackLog:
    """Append-only JSON-lines file; every record is fsynced before the call is acknowledged.

    A record torn by a crash (no trailing newline) is skipped when counting and a newline is
    written before the next record, so one bad line never corrupts the rest. The request ids
    already in the log are remembered: a second label for the same answer is stored (the last
    word counts when feedback is promoted) but marked as a repeat, so it counts once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.records = 0
        self._ids: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Checked now, so a path that cannot take a record fails at start-up rather than at
            # the first person's feedback (a new log is created by that first record).
            if self.path.exists():
                data = self.path.read_bytes()
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
            else:
                data = b""
                if not os.access(self.path.parent, os.W_OK | os.X_OK):
                    raise PermissionError(13, "Permission denied", str(self.path.parent))
        except OSError as err:
            raise ValueError(f"the feedback log {self.path} cannot be used ({err.strerror or err}); "
                             "choose a file in a folder this user can write") from err
        needs_newline = bool(data) and not data.endswith(b"\n")
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("skipping a torn feedback record", extra={"fields": {"path": str(self.path)}})
                continue
            self.records += 1
            if isinstance(record, dict) and record.get("request_id"):
                self._ids.add(str(record["request_id"]))
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

    @property
    def cases(self) -> int:
        """Distinct request ids in the log (what promotion counts)."""
        with self._lock:
            return len(self._ids)

    def append(self, record: dict[str, Any]) -> int:
        """Writes one record durably; returns the number of records now in the log.

        The record gets ``"repeat": True`` when its request id is already in the log.
        """
        with self._lock:
            request_id = str(record.get("request_id", ""))
            record = {**record, "repeat": request_id in self._ids}
            self._write((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
            self._ids.add(request_id)
            self.records += 1
            return self.records

"""A process's descendants, the sockets they listen on, and waiting for them to be gone (/proc, psutil):
for the tests that start `fakeface serve` and check what its Ray left running; and which libraries a
fresh process imports (the cold-start tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from blackboard.ray_reaper import descendants as _below
from blackboard.ray_reaper import process_table

# /proc/net/tcp{,6} spelling of the loopback addresses: 127.0.0.1, ::1 and ::ffff:127.0.0.1.
LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (not ``pid`` itself)."""
    return _below({pid}, process_table()) - {pid}


def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    """Waits up to ``timeout_s`` for ``pids`` to exit; returns those still alive."""
    end = time.monotonic() + timeout_s
    while True:
        alive = {p for p in pids if p in process_table()}
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.2)


def listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses (/proc hex) of the TCP sockets the processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # gone meanwhile
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                found.add(fields[1].rsplit(":", 1)[0])
    return found


def imported_by(modules: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a fresh Python process has in ``sys.modules`` after importing ``modules``."""
    probe = (f"import sys, json\nimport {', '.join(modules)}\n"
             f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])

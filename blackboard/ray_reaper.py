"""Kills an embedded Ray's processes once the process that started them is gone.

Run as a plain script (it imports nothing from the project):
``python ray_reaper.py PARENT_PID [OLD_CHILD_PID...]``, started just *before* ``ray.init`` so
that a signal during start-up leaves nothing behind either. Its stdin is a pipe from the parent;
end of file means the parent exited, however it died (SIGKILL included). The roots are the
parent's children other than the old ones listed (the Ray processes ``ray.init`` starts: GCS,
raylet, dashboard, monitors); every second the reaper
notes their descendants (agents and workers, which Ray does not tie to the parent's life), and
when the parent is gone or every root has exited it sends SIGTERM, then SIGKILL, to those still
alive. Processes are matched by pid and creation time (psutil), so a reused pid is never touched.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

import psutil

TERM_GRACE_S = 2.0


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, creation time) for every process."""
    table: dict[int, tuple[int, float]] = {}
    for proc in psutil.process_iter(["ppid", "create_time"]):
        if proc.info["ppid"] is not None and proc.info["create_time"] is not None:
            table[proc.pid] = (int(proc.info["ppid"]), float(proc.info["create_time"]))
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, float]]) -> set[int]:
    """``roots`` still alive plus every process below them."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = {pid for pid in roots if pid in table}
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def reap(known: dict[int, float]) -> None:
    """SIGTERM then SIGKILL every known process that is still the same process."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        table = process_table()
        alive = [pid for pid, start in known.items() if table.get(pid, (0, -1))[1] == start]
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                continue
        if sig == signal.SIGTERM:
            time.sleep(TERM_GRACE_S)


def main(argv: list[str]) -> int:
    parent, old = int(argv[0]), {int(pid) for pid in argv[1:]}
    me = os.getpid()
    known: dict[int, float] = {}
    roots: set[int] = set()
    while True:
        table = process_table()
        roots |= {pid for pid, (ppid, _) in table.items() if ppid == parent} - old - {me}
        for pid in descendants(roots | set(known), table) - {me, parent}:
            known.setdefault(pid, table[pid][1])
        known = {pid: start for pid, start in known.items() if table.get(pid, (0, -1))[1] == start}
        if roots and not any(pid in known for pid in roots):
            break  # Ray was shut down: only stragglers may be left
        ready, _, _ = select.select([sys.stdin], [], [], 1.0)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # end of file: the parent is gone
    reap(known)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the parent, not for us
    sys.exit(main(sys.argv[1:]))

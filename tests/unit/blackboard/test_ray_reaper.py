"""`blackboard.ray_reaper`: what an embedded Ray's starter leaves behind when it dies by SIGKILL.

Stand-ins for Ray: the parent starts the reaper as `blackboard.ray_runtime.init_ray` does (just
before ``ray.init``), then a "raylet" in a session of its own that starts a "worker" in another
(Ray does not tie either to the parent's life). A child the parent had before the reaper is not
Ray's and must be left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import descendants, wait_gone

REPO = Path(__file__).resolve().parents[3]
SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]
PARENT = f"""
import subprocess, sys, time
from blackboard.ray_runtime import _children, _start_reaper

before = subprocess.Popen({SLEEP!r})
_start_reaper(_children())
raylet = subprocess.Popen([sys.executable, "-c",
    "import subprocess, time; subprocess.Popen({SLEEP!r}, start_new_session=True); time.sleep(120)"],
    start_new_session=True)
print(before.pid, raylet.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper runs where /proc does (Linux)")
def test_sigkill_of_the_starter_takes_its_ray_down_and_leaves_older_children_alone():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    before = None
    try:
        before, raylet = map(int, parent.stdout.readline().split())
        end = time.monotonic() + 30
        while not descendants(raylet):  # the "worker" is up
            assert time.monotonic() < end, "the stand-in raylet started no worker"
            time.sleep(0.1)
        ray_side = {raylet} | descendants(raylet)
        time.sleep(4.0)  # the reaper notes the processes below Ray's roots once a second
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(ray_side, 15) == set()  # SIGTERM, then SIGKILL after its grace
        assert wait_gone({before}, 0) == {before}  # not Ray's: still alive
    finally:
        if parent.poll() is None:
            parent.kill()
        if before is not None:
            try:
                os.kill(before, signal.SIGKILL)
            except OSError:
                pass

"""`fakeface serve`'s flags: a value it cannot use is refused in one line, before Ray starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize("flags, words", [
    (["--feedback-log", "{tmp}"], "the feedback log {tmp} cannot be used (Is a directory)"),
    (["--max-video-mb", "inf"], "--max-video-mb must be a positive number of MiB, received inf"),
    (["--max-message-mb", "0"], "--max-message-mb must be a positive number of MiB, received 0.0"),
], ids=["feedback-log-folder", "video-inf", "message-zero"])
def test_a_flag_it_cannot_use_is_one_line_before_ray_starts(tiny_bundle, tmp_path, flags, words):
    flags = [f.format(tmp=tmp_path) for f in flags]
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "fakeface.cli", "serve", "--bundle", str(tiny_bundle), "--port", "0",
                           "--http-port", "0", *flags], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words.format(tmp=tmp_path) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "ray" not in proc.stderr.lower()  # refused before a Ray was started

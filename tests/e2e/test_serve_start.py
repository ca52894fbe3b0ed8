"""`fakeface serve` start-up as a user runs it (a subprocess with its own local Ray).

* A signed bundle whose model does not load (nothing before Ray can tell) ends `serve` with the
  replica's error within seconds of the replica's failure: no retries of the replica, no wait.
* Ray takes no fixed port (the autoscaler's and the dashboard's metrics servers took 44217 and
  44227 on every start before; neither process runs now): the user's ``--http-port``/``--metrics-port``
  serve, and Ray logs the ports it took; everything listens on loopback only, with token auth on,
  and SIGTERM leaves no Ray process behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from ports import bindable
from processes import LOOPBACK_HEX, descendants, listening_addresses, wait_gone

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path)}
    for key in ("RAY_AUTH_TOKEN", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS",
                "AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT"):
        env.pop(key, None)  # as a user runs it: the command makes its own choices
    return env


def _serve(bundle: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fakeface.cli", "serve", "--bundle", str(bundle), "--port", "0",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
                            cwd=REPO)


def _replica_pids(pid: int) -> set[int]:
    """Serve replica processes under ``pid`` (their title names them: ``ray::ServeReplica:...``)."""
    out = set()
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:  # the server is gone
        return out
    for child in children:
        try:
            if "ServeReplica" in " ".join(child.cmdline()[:1]):
                out.add(child.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return out


def test_a_signed_bundle_whose_model_does_not_load_ends_serve_fast_with_the_reason(tiny_bundle, tmp_path):
    from agents.bundle import sign_bundle
    from agents.signing import SIGNING_KEY_ENV, load_private_key

    bundle = tmp_path / "broken"
    shutil.copytree(tiny_bundle, bundle)
    # The file a replica votes with: the agent's ONNX export (agents/onnx_model.py).
    (bundle / "vgg16.onnx").write_bytes(b"this is not an ONNX file" * 100)
    digest = hashlib.sha256((bundle / "vgg16.onnx").read_bytes()).hexdigest()
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["agents"]["vgg16"]["onnx"]["sha256"] = manifest["files"]["vgg16.onnx"] = digest
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    # Signed by a trusted key (the suite's): nothing before Ray can tell that the model is broken.
    sign_bundle(bundle, load_private_key(os.environ[SIGNING_KEY_ENV]))
    started = time.monotonic()
    proc = _serve(bundle, tmp_path, "--http-port", "0")
    replicas, replica_gone = set(), None
    try:
        while proc.poll() is None and time.monotonic() - started < 300:
            alive = _replica_pids(proc.pid)
            if replicas and not alive and replica_gone is None:
                replica_gone = time.monotonic()  # Serve stopped the replica that failed to start
            replicas |= alive
            time.sleep(0.2)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    ended = time.monotonic()
    print(f"serve ended {ended - started:.1f} s after start, "
          f"{ended - (replica_gone or ended):.1f} s after its failed replica was stopped")
    assert proc.returncode == 2, err[-3000:]
    assert "SERVING" not in out and "without a valid signature" not in err
    # The replica's own error, named: which component, which file, what ONNX Runtime said.
    assert "agents failed to start" in err and "vgg16.onnx does not load as an ONNX model" in err, err[-3000:]
    assert replicas, "no Serve replica was ever started"
    # No retries of the replica and no wait after it: out within 10 s of the failure.
    assert replica_gone is None or ended - replica_gone <= 10.0


def test_user_ports_loopback_only_token_auth_then_sigterm_drains_and_leaves_no_ray(tiny_bundle, tmp_path):
    """One `serve` as a user runs it, on IPv6 loopback: the user's ports serve; Ray takes no fixed
    port and every process under `serve` listens on loopback only; Ray is the lean head with token
    auth on; SIGTERM drains (exit 0) and no Ray process is left. (SIGKILL: tests/unit/blackboard/
    test_ray_reaper.py.)"""
    import random

    # Ports below the OS's ephemeral range, where (docs/usage/serve-classify.md) no Ray port can
    # ever be: Ray's metrics servers no longer take fixed ones (44217, 44227 before, checked
    # below). 44217/44227 themselves are not used here: on a shared machine an older Ray holds them.
    rng = random.Random()
    http_port, metrics_port = rng.sample([p for p in rng.sample(range(20000, 32000), 200) if bindable(p)][:10], 2)
    env = _env(tmp_path)
    env.pop("RAY_AUTH_MODE", None)  # as a user runs it: token auth is the command's own choice
    proc = subprocess.Popen([sys.executable, "-m", "fakeface.cli", "serve", "--bundle", str(tiny_bundle), "--port",
                             "0", "--http-port", str(http_port), "--metrics-port", str(metrics_port), "--host", "::1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        if not line:
            proc.wait(30)
        assert "SERVING on [::1]:" in line and f"web page on http://[::1]:{http_port}/" in line, (
            line + (proc.stderr.read()[-3000:] if proc.poll() is not None else ""))
        with urllib.request.urlopen(f"http://[::1]:{http_port}/api/health", timeout=10) as resp:
            assert json.loads(resp.read())["serving"] is True
        with urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=10) as resp:
            assert resp.status == 200
        tree = descendants(proc.pid)
        listening = listening_addresses(tree | {proc.pid})
        assert listening and listening <= LOOPBACK_HEX, listening
        # The lean head (issue 26): no autoscaler monitor, log monitor or dashboard head.
        cmdlines = {pid: psutil.Process(pid).cmdline() for pid in tree if psutil.pid_exists(pid)}
        joined = [" ".join(c) for c in cmdlines.values()]
        assert any("gcs_server" in c for c in joined) and any("raylet" in c for c in joined), joined
        skipped = ("autoscaler/_private/monitor.py", "autoscaler/v2/monitor.py", "log_monitor.py",
                   "dashboard/dashboard.py")
        assert not [c for c in joined if any(name in c for name in skipped)], joined
        # Ray's processes were started with token auth on and a token of their own.
        raylet = next(pid for pid, c in cmdlines.items() if c and "raylet" in c[0])
        environ = psutil.Process(raylet).environ()
        assert environ.get("RAY_AUTH_MODE") == "token" and environ.get("RAY_AUTH_TOKEN"), sorted(environ)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        ports = [json.loads(line)["ports"] for line in err.splitlines()
                 if line.startswith("{") and '"local Ray started"' in line]
        assert ports and {"gcs", "raylet"} <= set(ports[0]), err[-3000:]
        assert not {44217, 44227, http_port, metrics_port} & set(ports[0].values()), ports[0]
        assert wait_gone(tree, 30) == set()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

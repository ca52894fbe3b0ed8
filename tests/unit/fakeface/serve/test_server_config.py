"""ServerConfig's rule across fields: TLS needs a certificate and a key together."""

from __future__ import annotations

import pytest

from fakeface.serve.server import ServerConfig


def test_tls_needs_both_halves_and_says_what_it_received():
    with pytest.raises(ValueError, match="TLS needs both a certificate and a key; received tls_cert='c.pem', tls_key=None"):
        ServerConfig(tls_cert="c.pem")
    assert ServerConfig(tls_cert="c.pem", tls_key="k.pem").tls
    assert ServerConfig(tokens=["t"]).tokens == ("t",)  # a list (JSON, argparse) reads as the tuple


def test_the_server_and_its_ensemble_import_no_scikit_learn():
    # `serve`'s own process only decides (controller, calibration: plain arithmetic); scikit-learn and
    # SciPy (~1.5 s on one core) load where a fit runs, and in the agent replicas for the forensic agent.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys, json\n"
             "import fakeface.serve.server, fakeface.serve.cli, blackboard.ensemble, fakeface.web.app\n"
             "print(json.dumps(sorted(m for m in ('sklearn', 'scipy', 'tensorflow') if m in sys.modules)))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[4])}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                          check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []

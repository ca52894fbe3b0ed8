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
    from processes import imported_by

    modules = ("fakeface.serve.server", "fakeface.serve.cli", "blackboard.ensemble", "fakeface.web.app")
    assert imported_by(modules, ("sklearn", "scipy", "tensorflow")) == []

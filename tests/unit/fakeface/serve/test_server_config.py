"""ServerConfig's rule across fields: TLS needs a certificate and a key together."""

from __future__ import annotations

import pytest

from fakeface.serve.server import ServerConfig


def test_tls_needs_both_halves_and_says_what_it_received():
    with pytest.raises(ValueError, match="TLS needs both a certificate and a key; received tls_cert='c.pem', tls_key=None"):
        ServerConfig(tls_cert="c.pem")
    assert ServerConfig(tls_cert="c.pem", tls_key="k.pem").tls
    assert ServerConfig(tokens=["t"]).tokens == ("t",)  # a list (JSON, argparse) reads as the tuple

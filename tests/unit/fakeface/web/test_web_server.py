"""The page's web server (`fakeface.web.serve`): bound on the caller's thread so a busy port is an
error naming the address, serving until stopped, and a warning when exposed without TLS and a token."""

from __future__ import annotations

import logging
import socket
import urllib.request

import pytest
from fastapi import FastAPI

from fakeface.web.serve import WebServer, warn_if_exposed


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def test_it_serves_on_a_free_port_until_stopped():
    web = WebServer(_app(), "127.0.0.1", 0).start()
    try:
        assert web.port > 0 and web.url == f"http://127.0.0.1:{web.port}/"
        with urllib.request.urlopen(web.url + "ping", timeout=10) as answer:
            assert answer.status == 200 and answer.read() == b'{"pong":"yes"}'
    finally:
        web.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(web.url + "ping", timeout=2)


def test_a_busy_port_is_an_error_naming_the_address():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve the web page on 127.0.0.1:{port}.*port in use"):
            WebServer(_app(), "127.0.0.1", port).start()


def test_an_ipv6_host_is_bracketed_in_the_url():
    assert WebServer(_app(), "::1", 8443, tls_cert="c.pem", tls_key="k.pem").url == "https://[::1]:0/"


@pytest.mark.parametrize("host, tls, auth, warned", [
    ("127.0.0.1", False, False, False), ("localhost", False, False, False), ("::1", False, False, False),
    ("0.0.0.0", False, False, True), ("0.0.0.0", True, False, True), ("0.0.0.0", False, True, True),
    ("0.0.0.0", True, True, False), ("::", False, True, True),
])
def test_exposure_without_tls_and_a_token_is_warned(host, tls, auth, warned, caplog):
    with caplog.at_level(logging.WARNING, logger="fakeface.web"):
        assert warn_if_exposed(host, tls=tls, auth=auth) is warned
    assert any("non-loopback" in r.getMessage() for r in caplog.records) is warned

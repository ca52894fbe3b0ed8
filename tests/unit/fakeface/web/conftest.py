"""The page's unit tests share one way to stand it up: a real gRPC server on 127.0.0.1 over an
in-process board (no Ray), and FastAPI's TestClient on the page made for that server's service."""

from __future__ import annotations

import contextlib

import pytest


@pytest.fixture(scope="module")
def page_client(session_bundle):
    """``page_client(web_config=None, **server_config)``: a TestClient of the page, open until the module ends."""
    from fastapi.testclient import TestClient

    from blackboard.inprocess import InProcessBoard
    from fakeface.serve.server import ServerConfig, create_server
    from fakeface.web.app import create_app

    with contextlib.ExitStack() as stack:
        board = stack.enter_context(InProcessBoard(session_bundle))

        def make(web_config=None, **server_config):
            server, _ = create_server("127.0.0.1:0", board, ServerConfig(**server_config))
            stack.callback(lambda: server.stop(0).wait())
            assert server.wait_until_serving(timeout=60)
            return stack.enter_context(TestClient(create_app(server.service, web_config)))

        yield make

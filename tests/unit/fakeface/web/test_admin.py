"""The operator's endpoints (`fakeface.web.admin`): only with the server's token, bodies checked
before anything runs, promotion refused without enough clients, rollback to a known version.

The page's app on the gRPC server's own service, over the suite's tiny bundle in process
(`InProcessBoard`: no Ray); FastAPI's TestClient sends the requests.
"""

from __future__ import annotations

import contextlib

import pytest

from fakeface.serve.server import ServerConfig, create_server
from fakeface.web.admin import MAX_BODY
from fakeface.web.app import create_app
from vision.media import encode_png

TOKEN = "s3cret-admin-token"
OK = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def board(session_bundle):
    from blackboard.inprocess import InProcessBoard

    with InProcessBoard(session_bundle) as ens:
        yield ens


@contextlib.contextmanager
def _page(board, **config):
    """A test client of the page on a gRPC server of its own (its config: ``config``)."""
    from fastapi.testclient import TestClient

    server, _ = create_server("127.0.0.1:0", board, ServerConfig(**config))
    try:
        assert server.wait_until_serving(timeout=60)
        with TestClient(create_app(server.service)) as client:
            yield client
    finally:
        server.stop(0).wait()


@pytest.fixture
def restores_controller(board):
    """Promotions and rollbacks change the board's live controller: put the bundle's back."""
    before = board.controller
    yield
    board.set_controller(before)


def test_admin_endpoints_need_a_server_with_a_token_and_that_token(board):
    with _page(board) as c:
        off = c.post("/api/admin/promote", json={})
        assert off.status_code == 403 and "--token" in off.json()["error"]
    with _page(board, tokens=(TOKEN,)) as c:
        assert c.post("/api/admin/promote", json={}).status_code == 401
        assert c.get("/api/admin/controllers", headers={"authorization": "Bearer nope"}).status_code == 401
        no_log = c.post("/api/admin/promote", json={}, headers=OK)
        assert no_log.status_code == 409 and "no feedback log" in no_log.json()["error"]


@pytest.mark.parametrize("body, status, words", [
    (b"x" * (MAX_BODY + 1), 413, "at most"),
    (b"{not json", 400, "JSON object"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"min_clients": 0}', 400, "min_clients must be a whole number"),
    (b'{"min_cases": true}', 400, "min_cases must be a whole number"),
    (b'{"min_clients": "all"}', 400, "received 'all'"),
])
def test_a_bad_promotion_body_is_refused_with_what_was_wrong(board, tmp_path, body, status, words):
    with _page(board, tokens=(TOKEN,), feedback_path=str(tmp_path / "fb.jsonl")) as c:
        answer = c.post("/api/admin/promote", content=body, headers=OK)
    assert answer.status_code == status and words in answer.json()["error"], answer.text


def test_promotion_needs_enough_clients_and_rollback_a_known_version(board, face_crop, tmp_path, restores_controller):
    with _page(board, tokens=(TOKEN,), feedback_path=str(tmp_path / "fb.jsonl")) as c:
        answer = c.post("/api/classify?detect=off&name=crop.png", content=encode_png(face_crop), headers=OK).json()
        assert c.post("/api/feedback", json={"request_id": answer["request_id"], "label": "fake"},
                      headers=OK).status_code == 200
        result = c.post("/api/admin/promote", json={"min_clients": 2, "min_cases": 1}, headers=OK).json()
        assert not result["promoted"] and "1 distinct client(s), at least 2" in result["detail"]
        listed = c.get("/api/admin/controllers", headers=OK).json()
        assert listed["live"] == answer["controller_version"] and listed["versions"][0]["active"]
        missing = c.post("/api/admin/rollback", json={"version": "9-deadbeef"}, headers=OK)
        assert missing.status_code == 404 and "Unknown controller version" in missing.json()["error"]
        for bad in ({}, {"version": 7}, {"version": "v" * 101}):
            assert c.post("/api/admin/rollback", json=bad, headers=OK).status_code == 400
        same = c.post("/api/admin/rollback", json={"version": listed["live"]}, headers=OK)
        assert same.status_code == 200 and same.json()["live"] == listed["live"]

"""`fakeface feedback` against a real server on 127.0.0.1 (in-process board, no Ray): the label
reaches the log for the face it names, and every refusal is one line with the right exit code."""

from __future__ import annotations

import json
import socket

import pytest

from fakeface import feedback_cli
from fakeface.serve.server import ServerConfig, create_server
from vision.media import encode_png


@pytest.fixture(scope="module")
def served(session_bundle, face_crop, tmp_path_factory):
    """(address, feedback log path, request id of one answered crop)."""
    from blackboard.inprocess import InProcessBoard
    from fakeface.client import DetectorClient

    log = tmp_path_factory.mktemp("feedback-cli") / "feedback.jsonl"
    with InProcessBoard(session_bundle) as board:
        server, port = create_server("127.0.0.1:0", board, ServerConfig(feedback_path=str(log), feedback_burst=20))
        assert server.wait_until_serving(timeout=60)
        try:
            address = f"127.0.0.1:{port}"
            with DetectorClient(address) as client:
                answer = client.classify(encode_png(face_crop), detect="off", timeout_s=60)
            yield address, log, answer.request_id
        finally:
            server.stop(grace=None).wait(10)


def test_a_label_for_one_face_is_stored_and_said(served, capsys):
    address, log, request_id = served
    assert feedback_cli.main([request_id, "FAKE", "--face", "0", "--server", address]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{request_id}: fake for face #0 stored as evidence") and "controller" in out
    record = json.loads(log.read_text().splitlines()[-1])
    assert (record["request_id"], record["label"], record["face_index"]) == (request_id, "fake", 0)
    assert feedback_cli.main([request_id, "real", "--server", address, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored"] is True
    assert json.loads(log.read_text().splitlines()[-1])["face_index"] is None  # the whole picture


def test_refusals_are_one_line_with_their_exit_code(served, capsys):
    address, log, request_id = served
    before = log.read_text()
    assert feedback_cli.main([request_id, "fake", "--face", "3", "--server", address]) == 2
    assert "face_index 3 is not a face of that answer (its faces: 0)" in capsys.readouterr().err
    assert feedback_cli.main([request_id, "fake", "--face", "-1", "--server", address]) == 2
    assert "--face: face_index must be a face number (0, 1, ...) or None, received -1" in capsys.readouterr().err
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    assert feedback_cli.main([request_id, "fake", "--server", closed, "--timeout", "5"]) == 1
    assert "is `fakeface serve` running?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        feedback_cli.main([request_id, "maybe", "--server", address])
    assert exit_info.value.code == 2 and "invalid choice: 'maybe'" in capsys.readouterr().err
    assert log.read_text() == before  # nothing refused was written

"""The web page's API against a real ensemble and the gRPC server's own service, through FastAPI's
TestClient (the page itself in headless Chromium: `test_web_browser.py`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from html import escape

import cv2
import numpy as np
import pytest
from grpc_helpers import AGENTS, png_bytes
from web_helpers import MAX_IMAGE, MAX_VIDEO, TOKEN, check_face, page_client, web_server

from fakeface.web.serve import WebServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(page_served):
    from fastapi.testclient import TestClient

    with TestClient(page_served["app"]) as c:
        yield c


def test_page_is_self_contained(client):
    resp = client.get("/")
    assert resp.status_code == 200
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    # Nothing is fetched from elsewhere: no remote script, style, font or image.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", resp.text)
    assert "@import" not in resp.text and "url(" not in resp.text


def test_image_answer_has_votes_threshold_and_heatmaps(client, face_png):
    resp = client.post("/api/classify?name=astronaut.png", content=face_png, headers={"content-type": "image/png"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == "image" and body["sha256"] == hashlib.sha256(face_png).hexdigest()
    assert (body["width"], body["height"]) == (512, 512)
    assert len(body["faces"]) >= 1
    face = body["faces"][0]
    check_face(face)
    # Every agent has its map or a line saying why not (the registered CNNs' maps show no location).
    assert set(face["heatmaps"]) | set(face["heatmap_notes"]) == AGENTS
    assert not set(face["heatmaps"]) & set(face["heatmap_notes"])
    assert all(uri.startswith("data:image/png;base64,") for uri in face["heatmaps"].values())
    assert all("not shown" in note for note in face["heatmap_notes"].values())
    x, y, w, h = face["box"]
    assert 0 <= x < 512 and 0 <= y < 512 and w > 20 and h > 20


def test_no_face_says_why_and_whole_image_classifies(client):
    grey = np.full((360, 640, 3), 128, np.uint8)
    body = client.post("/api/classify?detect=on", content=png_bytes(grey)).json()
    assert body["faces"] == [] and "no face" in body["no_face_reason"]
    assert "--detect" not in body["no_face_reason"] and "gRPC" not in body["no_face_reason"]  # page advice only
    whole = client.post("/api/classify?detect=off", content=png_bytes(grey)).json()
    assert len(whole["faces"]) == 1
    check_face(whole["faces"][0])


def test_refusals_are_clear(client, face_png):
    not_image = client.post("/api/classify?name=notes.png", content=b"these are my notes, not a picture\n" * 10)
    assert not_image.status_code == 415
    assert "neither an image nor a video" in not_image.json()["error"]
    too_big = client.post("/api/classify", content=face_png + b"\0" * (MAX_IMAGE + 1 - len(face_png)))
    assert too_big.status_code == 413 and "limited to 2.0 MiB" in too_big.json()["error"]
    huge = client.post("/api/classify", content=b"\0" * (MAX_VIDEO + 10))
    assert huge.status_code == 413 and huge.json()["code"] == "RESOURCE_EXHAUSTED"
    assert client.post("/api/classify", content=b"").status_code == 400
    bad_mode = client.post("/api/classify?detect=maybe", content=face_png)
    assert bad_mode.status_code == 400 and "detect must be one of" in bad_mode.json()["error"]
    assert client.get("/api/report/no-such-id").status_code == 404
    bad_label = client.post("/api/feedback", json={"request_id": "x", "label": "blue"})
    assert bad_label.status_code == 400 and "'real' or 'fake'" in bad_label.json()["error"]


def test_feedback_goes_through_the_grpc_path_and_keeps_the_upload(client, page_served, face_png, ensemble):
    answer = client.post("/api/classify?name=astronaut.png", content=face_png).json()
    before = page_served["server"].service.feedback_log.records
    truth = "real" if answer["faces"][0]["label"] == "fake" else "fake"
    ack = client.post("/api/feedback", json={"request_id": answer["request_id"], "label": truth})
    assert ack.status_code == 200, ack.text
    body = ack.json()
    assert body["stored"], body
    # The controller's safeguards decide whether the correction is promoted; either way the
    # answer names the live version.
    assert body["controller_version"] == str(ensemble.controller_version)
    records = [json.loads(line) for line in page_served["feedback"].read_text().splitlines()]
    assert len(records) == before + 1
    assert (records[-1]["request_id"], records[-1]["label"]) == (answer["request_id"], truth)
    kept = page_served["uploads"] / body["upload_kept"]
    assert kept.read_bytes() == face_png
    # An answer nobody corrected leaves nothing on disk.
    other = client.post("/api/classify?name=x.png", content=face_png).json()
    assert not list(page_served["uploads"].glob(f"{other['request_id']}*"))


def test_report_is_self_contained_with_hash_and_accuracy(client, face_png):
    answer = client.post("/api/classify?name=astronaut.png", content=face_png).json()
    resp = client.get(f"/api/report/{answer['request_id']}")
    assert resp.status_code == 200
    assert "attachment" in resp.headers["content-disposition"]
    page = resp.text
    digest = hashlib.sha256(face_png).hexdigest()
    assert f'<td id="sha256">{digest}</td>' in page
    assert answer["bundle_version"] in page and answer["controller_version"] in page
    assert 'src="data:image/png;base64,' in page and not re.search(r"""(src|href)=["']https?:""", page)
    for agent in AGENTS:
        assert f"<td>{agent}</td>" in page
    # A verdict says its threshold; a borderline answer says it is too close to it (no verdict percentage).
    label = answer["faces"][0]["label"]
    assert ("it calls a face fake above" in page) == (label != "uncertain"), label
    if answer["faces"][0]["reason"].startswith("borderline"):
        assert "too close to the threshold" in page
    assert 'id="trained-on"' in page and "training data" not in page
    # Beside the votes, each agent's map or why it shows none.
    assert "Where the agents looked" in page
    for agent, note in answer["faces"][0]["heatmap_notes"].items():
        assert escape(note) in page, agent
    # The tiny bundle records no agent accuracy: the report says so instead of inventing one.
    assert "Measured accuracy" in page and "Limits" in page


def test_video_shows_progress_then_tracks_and_clip_verdict(client, face_rgb, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (512, 512))
    assert writer.isOpened()
    frame = cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR)
    for _ in range(12):
        writer.write(frame)
    writer.release()
    data = path.read_bytes()
    start = client.post("/api/classify?name=clip.mp4", content=data, headers={"content-type": "video/mp4"})
    assert start.status_code == 202, start.text
    job = start.json()["job"]
    deadline = time.monotonic() + 240
    while True:
        status = client.get(f"/api/jobs/{job}").json()
        assert status["state"] != "error", status
        if status["state"] == "done":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    result = status["result"]
    assert status["done"] == result["frames_sampled"] >= 4 and status["expected"] >= 1
    assert result["verdict"] in {"real", "fake", "uncertain"} and "The clip is FAKE if any face is FAKE" in result["rule"]
    # The frame shown and the feedback target come from the verdict's own rule.
    shown = result["shown"]
    assert shown["track"] == result["deciding_track"] and shown["request_id"] == result["request_id"]
    if result["verdict"] in {"real", "fake"}:
        assert shown["label"] == result["verdict"]
    assert len(result["tracks"][0]["timeline"]) == result["frames_sampled"] and result["explanation"]
    assert len(result["tracks"]) == 1 and result["tracks"][0]["frames"] == result["frames_sampled"]
    assert result["sha256"] == hashlib.sha256(data).hexdigest() and result["frame"].startswith("data:image/png")
    report = client.get(f"/api/report/{result['request_id']}")
    assert report.status_code == 200 and "Clip verdict" in report.text


def test_token_is_required_when_set(ensemble):
    with page_client(ensemble, tokens=(TOKEN,)) as c:
        assert c.get("/").status_code == 200  # the page itself carries no data
        assert c.get("/api/health").json() == {"serving": True, "auth": True}
        missing = c.get("/api/info")
        assert missing.status_code == 401 and "token" in missing.json()["error"]
        assert c.get("/api/info", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/api/classify", content=b"x").status_code == 401
        info = c.get("/api/info", headers={"authorization": f"Bearer {TOKEN}"})
        assert info.status_code == 200
        assert {a["name"] for a in info.json()["agents"]} == AGENTS


def test_uncertain_label_reads_cant_tell_with_its_reason():
    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc_convert import verdict_name
    from fakeface.web.views import face_view

    assert [verdict_name(v) for v in (pb.LABEL_REAL, pb.LABEL_FAKE, pb.LABEL_UNSPECIFIED)] == ["real", "fake", "undecided"]
    face = pb.Face(label=pb.LABEL_UNCERTAIN, p_fake=0.5, threshold=0.6, uncertain_reason="too small: 12 px")
    view = face_view({"box": (0, 0, 10, 10), "verdict": "undecided", "heatmaps": {}}, face)
    assert view["label"] == "uncertain" and view["reason"] == "too small: 12 px"
    # A video frame's face (no wire face) keeps its own reason: the page reads "can't tell — borderline".
    frame = face_view({"box": (0, 0, 10, 10), "verdict": "uncertain", "reason": "borderline: 54 %", "heatmaps": {}}, None)
    assert frame["label"] == "uncertain" and frame["reason"] == "borderline: 54 %"


def test_serve_refuses_a_bad_http_port_before_loading_models(capsys):
    from fakeface.serve import cli as serve_cli
    assert serve_cli.main(["--http-port", "70000"]) == 2
    assert "--http-port must be 0..65535 (0 turns the web page off)" in capsys.readouterr().err


def test_web_server_reports_a_busy_port_and_warns_when_exposed(page_served, caplog):
    import logging

    from fakeface.web.serve import warn_if_exposed

    with web_server(page_served["app"]) as first, pytest.raises(OSError, match="port in use"):
        WebServer(page_served["app"], "127.0.0.1", first.port).start(timeout_s=10)
    with caplog.at_level(logging.WARNING, logger="fakeface.web"):
        assert warn_if_exposed("0.0.0.0", tls=False, auth=True)
        assert not warn_if_exposed("127.0.0.1", tls=False, auth=False)
        assert not warn_if_exposed("0.0.0.0", tls=True, auth=True)
    assert "non-loopback address without TLS and a token" in caplog.text


def test_accuracy_statement_reads_the_held_out_replay_metrics():
    from fakeface.web.report import accuracy_statement

    def info(fitted):
        return {"manifest": {"extras": {"controller": {"fitted_on": fitted}}}, "agents": {}}

    held_out = accuracy_statement(info({"cases": 3697, "replay_cases": 931,
                                        "metrics_replay": {"accuracy": 0.78, "roc_auc": 0.87}}))
    assert held_out[0].startswith("On 931 labelled validation faces the ensemble was right 78 %")
    assert "ROC AUC 0.87" in held_out[0] and "1 answer in 5 was wrong" in held_out[0]
    older = accuracy_statement(info({"cases": 40, "metrics": {"accuracy": 0.5}}))
    assert older[0].startswith("On 40 labelled validation faces the ensemble was right 50 %")
    assert "no measured accuracy" in accuracy_statement(info({}))[0]


def test_feedback_on_the_http_path_is_rate_limited_per_client_and_changes_nothing(ensemble, face_png, tmp_path):
    with page_client(ensemble, feedback_path=str(tmp_path / "fb.jsonl")) as c:  # its own buckets: a full burst of 5
        first = c.post("/api/classify?name=a.png", content=face_png).json()
        acks = [c.post("/api/feedback", json={"request_id": first["request_id"], "label": "fake"})
                for _ in range(6)]
        assert [a.status_code for a in acks[:5]] == [200] * 5, [a.text for a in acks]
        assert acks[5].status_code == 429 and "Wait a minute" in acks[5].json()["error"]
        assert all(not a.json()["applied"] for a in acks[:5])
        again = c.post("/api/classify?name=a.png", content=face_png).json()
    assert [f["p_fake"] for f in again["faces"]] == [f["p_fake"] for f in first["faces"]]
    assert again["controller_version"] == first["controller_version"]


# --------------------------------------------------------------------------- hostile input


_SERVER_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|root|home|var|work|proc|usr|etc)(?:/[\w.+@%-]+)+")


def _hostile_requests(face_png: bytes):
    """(description, method, url, kwargs) of bodies and parameters an attacker tried, and more."""
    deep = b"[" * 1000 + b"]" * 1000
    deep_field = b'{"request_id": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000 + b', "label": "fake"}'
    mp4_junk = b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000)
    avi_junk = b"RIFF\x00\x10\x00\x00AVI LIST" + os.urandom(2000)
    feedback = [
        ("deep array", deep), ("deep field", deep_field), ("10 MB body", b'{"request_id": "' + b"a" * 10_000_000 + b'"}'),
        ("long id", json.dumps({"request_id": "a" * 3000, "label": "fake"}).encode()),
        ("id is a number", b'{"request_id": 12345, "label": "fake"}'),
        ("id is a list", b'{"request_id": ["a"], "label": "fake"}'), ("id is null", b'{"request_id": null, "label": "fake"}'),
        ("label is an object", b'{"request_id": "x", "label": {"a": 1}}'), ("label is true", b'{"request_id": "x", "label": true}'),
        ("top-level array", b'["x", "fake"]'), ("top-level string", b'"fake"'), ("not JSON", b"request_id=x&label=fake"),
        ("bad UTF-8", b'{"request_id": "\xff\xfe", "label": "fake"}'), ("empty", b""), ("NaN", b'{"request_id": NaN}'),
        ("huge number", b'{"request_id": "x", "label": 1' + b"0" * 3000 + b"}"),
    ]
    for what, body in feedback:
        yield (f"feedback: {what}", "post", "/api/feedback", {"content": body, "headers": {"content-type": "application/json"}})
    yield ("classify: long name", "post", "/api/classify?name=" + "n" * 20_000, {"content": face_png})
    yield ("classify: two detect values", "post", "/api/classify?detect=on&detect=off", {"content": face_png})
    yield ("classify: long detect", "post", "/api/classify?detect=" + "x" * 5000, {"content": face_png})
    yield ("classify: junk mp4", "post", "/api/classify?name=junk.mp4", {"content": mp4_junk})
    yield ("classify: junk avi", "post", "/api/classify?name=junk.avi", {"content": avi_junk})
    yield ("classify: path as name", "post", "/api/classify?name=/etc/passwd/x.png", {"content": b"not an image" * 10})
    yield ("report: long id", "get", "/api/report/" + "r" * 4000, {})
    yield ("job: unknown", "get", "/api/jobs/../../etc/passwd", {})


def test_hostile_api_requests_get_4xx_without_server_paths(client, face_png):
    answers = []
    for what, method, url, kwargs in _hostile_requests(face_png):
        resp = getattr(client, method)(url, **kwargs)
        answers.append((what, resp.status_code, resp.text))
        if resp.status_code == 202:  # a video job: its error must be clean too
            job, deadline = resp.json()["job"], time.monotonic() + 120
            while (status := client.get(f"/api/jobs/{job}").json())["state"] == "running":
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            answers.append((f"{what} (job)", status.get("status", 200), json.dumps(status)))
    server_errors = [(what, code) for what, code, _ in answers if code >= 500]
    leaks = [(what, _SERVER_PATH.search(text).group()) for what, _, text in answers if _SERVER_PATH.search(text)]
    assert server_errors == [] and leaks == [], (server_errors, leaks)
    by_what = {what: (code, text) for what, code, text in answers}
    assert by_what["feedback: deep array"][0] == 400 and "Bad JSON body" in by_what["feedback: deep array"][1]
    assert by_what["feedback: 10 MB body"][0] == 413
    assert by_what["feedback: id is a number"][0] == 400 and "request_id" in by_what["feedback: id is a number"][1]
    assert by_what["classify: junk mp4 (job)"][0] == 415 and "junk.mp4" in by_what["classify: junk mp4 (job)"][1]


def test_page_on_the_unspecified_ipv6_address_answers_ipv4_too(page_served):
    import socket
    import urllib.request

    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 on this host")
    with web_server(page_served["app"], "::") as web:
        for host in ("127.0.0.1", "[::1]"):
            with urllib.request.urlopen(f"http://{host}:{web.port}/api/health", timeout=10) as resp:
                assert resp.status == 200 and "serving" in json.loads(resp.read())

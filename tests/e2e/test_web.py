"""The web page against a real ensemble and the gRPC server's own service: its API through FastAPI's
TestClient, and the page itself in headless Chromium (Selenium, the system browser)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import time
from html import escape

import cv2
import numpy as np
import pytest
from grpc_helpers import AGENTS, png_bytes

from fakeface.serve.server import ServerConfig, create_server
from fakeface.web.app import WebConfig, create_app
from fakeface.web.serve import WebServer

pytestmark = pytest.mark.slow
MAX_IMAGE = 2 * 1024 * 1024
MAX_VIDEO = 4 * 1024 * 1024
TOKEN = "s3cret-web-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def _serve(ensemble, **overrides):
    """A gRPC server on the ensemble (its config: ``overrides``), stopped when the block ends."""
    server, _ = create_server("127.0.0.1:0", ensemble, ServerConfig(max_message_bytes=MAX_IMAGE, **overrides))
    try:
        assert server.wait_until_serving(timeout=300)
        yield server
    finally:
        server.stop(0).wait()


@contextlib.contextmanager
def _web(app, host="127.0.0.1"):
    """The page's app on a web server of its own (a free port on ``host``), stopped when the block ends."""
    web = WebServer(app, host, 0).start()
    try:
        yield web
    finally:
        web.stop()


@contextlib.contextmanager
def _page_client(ensemble, **overrides):
    """A test client of the page's app, on a gRPC server of its own (`_serve`)."""
    from fastapi.testclient import TestClient

    with _serve(ensemble, **overrides) as server, TestClient(create_app(server.service)) as c:
        yield c


@pytest.fixture(scope="module")
def served(ensemble, tmp_path_factory):
    """A gRPC server with a feedback log, and the page's app on the same service."""
    folder = tmp_path_factory.mktemp("web-feedback")
    with _serve(ensemble, feedback_path=str(folder / "feedback.jsonl")) as server:
        app = create_app(server.service, WebConfig(max_video_bytes=MAX_VIDEO, video_fps=4.0, video_max_frames=6))
        yield {"server": server, "app": app, "feedback": folder / "feedback.jsonl", "uploads": folder / "feedback-uploads"}


@pytest.fixture(scope="module")
def client(served):
    from fastapi.testclient import TestClient

    with TestClient(served["app"]) as c:
        yield c


@pytest.fixture(scope="module")
def face_png(face_rgb):
    return png_bytes(face_rgb)


def _check_face(face: dict) -> None:
    assert face["label"] in {"real", "fake", "uncertain"}
    assert (face["label"] == "uncertain") == bool(face["reason"])  # "can't tell" always says why
    assert 0.0 <= face["p_fake"] <= 1.0 and 0.0 < face["threshold"] < 1.0
    assert set(face["votes"]) == AGENTS
    assert all(v["weight"] > 0 for v in face["votes"].values())


# --------------------------------------------------------------------------- API


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
    _check_face(face)
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
    _check_face(whole["faces"][0])


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


def test_feedback_goes_through_the_grpc_path_and_keeps_the_upload(client, served, face_png, ensemble):
    answer = client.post("/api/classify?name=astronaut.png", content=face_png).json()
    before = served["server"].service.feedback_log.records
    truth = "real" if answer["faces"][0]["label"] == "fake" else "fake"
    ack = client.post("/api/feedback", json={"request_id": answer["request_id"], "label": truth})
    assert ack.status_code == 200, ack.text
    body = ack.json()
    assert body["stored"], body
    # The controller's safeguards decide whether the correction is promoted; either way the
    # answer names the live version.
    assert body["controller_version"] == str(ensemble.controller_version)
    records = [json.loads(line) for line in served["feedback"].read_text().splitlines()]
    assert len(records) == before + 1
    assert (records[-1]["request_id"], records[-1]["label"]) == (answer["request_id"], truth)
    kept = served["uploads"] / body["upload_kept"]
    assert kept.read_bytes() == face_png
    # An answer nobody corrected leaves nothing on disk.
    other = client.post("/api/classify?name=x.png", content=face_png).json()
    assert not list(served["uploads"].glob(f"{other['request_id']}*"))


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
    with _page_client(ensemble, tokens=(TOKEN,)) as c:
        assert c.get("/").status_code == 200  # the page itself carries no data
        assert c.get("/api/health").json() == {"serving": True, "auth": True}
        missing = c.get("/api/info")
        assert missing.status_code == 401 and "token" in missing.json()["error"]
        assert c.get("/api/info", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/api/classify", content=b"x").status_code == 401
        info = c.get("/api/info", headers={"authorization": f"Bearer {TOKEN}"})
        assert info.status_code == 200
        assert {a["name"] for a in info.json()["agents"]} == AGENTS


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f"{CHROMIUM} / {CHROMEDRIVER} missing: install them with "
                    "`apt-get install -y chromium chromium-driver` (.ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download a driver
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver, downloads
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page_url(served):
    with _web(served["app"]) as web:
        yield web.url


def _wait(driver, condition, timeout=180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _model_line_loaded(driver, timeout=60):
    """Waits until the page shows the model line: it has fetched /api/info and is ready."""
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: "Model bundle" in d.find_element(By.ID, "model-line").text, timeout)


def _open(driver, url):
    """Opens the page and waits until it is ready."""
    driver.get(url)
    _model_line_loaded(driver)


def test_browser_upload_verdict_heatmap_feedback_report_and_refusal(browser, page_url, served, face_png, tmp_path):
    from selenium.webdriver.common.by import By

    driver, downloads = browser
    _open(driver, page_url)
    upload = tmp_path / "astronaut.png"
    upload.write_bytes(face_png)
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    card = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))[0]
    assert re.search(r"Face #0: (FAKE|REAL|can't tell — borderline)", card.find_element(By.CSS_SELECTOR, ".verdict").text)
    words = card.find_element(By.CSS_SELECTOR, ".probability").text
    assert re.search(r"Fake score \d+ %: (above|below|too close to) the threshold \d+ %", words), words
    assert card.find_elements(By.CSS_SELECTOR, ".scale .thr") and card.find_elements(By.CSS_SELECTOR, ".scale .mark")
    assert len(card.find_elements(By.CSS_SELECTOR, ".votes tr")) == 1 + len(AGENTS)
    assert driver.find_element(By.ID, "model-card").is_displayed()
    assert driver.find_elements(By.CSS_SELECTOR, "#boxes .box")

    maps = card.find_element(By.CSS_SELECTOR, ".heatmaps")
    assert not maps.is_displayed()
    driver.find_element(By.ID, "heatmap-toggle").click()
    assert maps.is_displayed()
    # Each agent's map at a readable size, or the line saying why it shows none.
    images = maps.find_elements(By.TAG_NAME, "img")
    notes = maps.find_elements(By.CSS_SELECTOR, ".heatmap-note")
    assert len(images) + len(notes) == len(AGENTS) and all(n.text.endswith("not shown.") for n in notes)
    assert all(img.size["width"] >= 224 for img in images)

    card.find_elements(By.CSS_SELECTOR, ".wrong-button, .truth-button")[0].click()
    status = _wait(driver, lambda d: card.find_element(By.CSS_SELECTOR, ".feedback-status").text)
    assert status.startswith("Thank you") and "changes no answer" in status, status
    last = json.loads(served["feedback"].read_text().splitlines()[-1])
    assert last["face_index"] == 0  # the correction is for the face on its card, not the whole picture

    driver.find_element(By.ID, "report-button").click()
    reports = _wait(driver, lambda d: [p for p in downloads.glob("fakeface-report-*.html")], 60)
    html = reports[0].read_text()
    found = re.search(r'<td id="sha256">([0-9a-f]{64})</td>', html)
    assert found and found.group(1) == hashlib.sha256(face_png).hexdigest()
    assert 'id="disputed"' in html and "the answer for face #0 is wrong" in html  # the dispute is on record
    assert "training data" not in html

    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image at all\n" * 20)
    driver.find_element(By.ID, "file-input").send_keys(str(bogus))
    error = _wait(driver, lambda d: d.find_element(By.ID, "error").text)
    assert "neither an image nor a video" in error and "JPEG, PNG" in error


def test_browser_sends_an_oversized_screenshot_as_a_jpeg_copy(browser, page_url, face_rgb, tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    _open(driver, page_url)
    # A big, noisy PNG "screenshot" (as from a large screen): over the page's image limit.
    big = cv2.resize(face_rgb, (1024, 1024)).astype(np.float32)
    big += np.random.default_rng(0).normal(0, 12, big.shape)
    upload = tmp_path / "screen.png"
    upload.write_bytes(png_bytes(np.clip(big, 0, 255).astype(np.uint8)))
    assert upload.stat().st_size > MAX_IMAGE
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
    note = driver.find_element(By.ID, "copy-note")
    assert note.is_displayed() and "JPEG copy (quality 95 %" in note.text and "SHA-256" in note.text, note.text
    assert not driver.find_element(By.ID, "error").text
    sent = driver.execute_script("return [state.result.size, state.file.type, state.file.name];")
    assert sent[0] <= MAX_IMAGE and sent[1] == "image/jpeg" and sent[2] == "screen (JPEG copy).jpg", sent


def test_browser_shows_a_heic_photo_it_cannot_decode_itself(browser, page_url, face_crop, tmp_path):
    # An iPhone's HEIC: Chromium cannot show the file it sent, so it shows the server's preview.
    from selenium.webdriver.common.by import By

    from crops import pil_encoded

    driver, _ = browser
    _open(driver, page_url)
    upload = tmp_path / "IMG_0042.heic"
    upload.write_bytes(pil_encoded(face_crop, "HEIF", quality=95))
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
    shown = _wait(driver, lambda d: d.execute_script(
        "const p = document.getElementById('picture'); return p.complete && p.naturalWidth ? "
        "[p.naturalWidth, p.naturalHeight, p.src.slice(0, 23)] : null;"))
    assert shown == [224, 224, "data:image/jpeg;base64,"] and not driver.find_element(By.ID, "error").text


def test_browser_says_which_condition_moved_the_agents_weights(browser, page_url):
    # A controller with context bins (issue 22) moves each agent's weight by the face's condition;
    # the votes table says what it saw and by how much, and says nothing for a context-free one.
    driver, _ = browser
    _open(driver, page_url)
    text = driver.execute_script(
        "return conditionLine({face_size: Math.log2(112), detected: 1, brightness: 0.4},"
        " [['custom', {context_shift: 0.157}], ['forensic', {context_shift: -0.159}], ['lenet', {context_shift: 0}]])"
        ".map((p) => p.textContent).join('|');")
    assert text == ("The controller saw a face of 112 px, brightness 40 %, found by the detector; for such faces it "
                    "moved the agents' weights by custom +0.16, forensic −0.16 against an average face."), text
    # Only the features the served controller reads are named (`/api/info`'s controller_context).
    driver.execute_script("state.info.controller_context = ['face_size'];")
    only = driver.execute_script("return conditionLine({face_size: 7, brightness: 0.4}, "
                                 "[['custom', {context_shift: 0.1}]])[0].textContent;")
    assert only.startswith("The controller saw a face of 128 px; for such faces") and "brightness" not in only, only
    assert driver.execute_script("return conditionLine({face_size: 7}, [['custom', {context_shift: 0}]]).length;") == 0


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

def test_browser_shows_cant_tell_and_offers_both_labels(browser, page_url):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    driver.get(page_url)
    face = {"index": 0, "box": [10, 10, 50, 50], "label": "uncertain", "reason": "too small: 12 px", "p_fake": 0.5,
            "threshold": 0.6, "votes": {"custom": {"p_fake": 0.4, "weight": 0.3}}, "degraded": False,
            "missing_agents": [], "heatmaps": {}}
    driver.execute_script("showImageResult(arguments[0]);", {"request_id": "r1", "width": 100, "height": 100,
                                                             "faces": [face], "no_face_reason": ""})
    card = driver.find_element(By.CSS_SELECTOR, ".face-card.uncertain")
    assert card.find_element(By.CSS_SELECTOR, ".verdict").text == "Face #0: can't tell"
    assert "No score is given: too small: 12 px" in card.find_element(By.CSS_SELECTOR, ".probability").text
    # A "can't tell" shows no percentage as if it were a verdict: not on the box, not on the scale.
    assert "%" not in driver.find_element(By.CSS_SELECTOR, "#boxes .box").text
    assert not card.find_elements(By.CSS_SELECTOR, ".scale .mark")
    assert [b.text for b in card.find_elements(By.CSS_SELECTOR, ".truth-button")] == ["It is real", "It is fake"]
    assert not card.find_elements(By.CSS_SELECTOR, ".wrong-button")



def test_browser_shows_the_face_beside_its_maps_at_full_size_and_says_why_one_is_missing(browser, page_url, face_rgb):
    """An answer with one agent's map and one withheld: the face crop, the map at 224 px, and the reason."""
    from selenium.webdriver.common.by import By

    from fakeface.web.views import png_data_uri
    from vision.gradcam import overlay

    driver, _ = browser
    driver.get(page_url)
    crop = cv2.resize(face_rgb[30:250, 120:340], (224, 224))
    cam = np.zeros((8, 8), np.float32)
    cam[2:4, 3:5] = 1.0
    face = {"index": 0, "box": [120, 30, 220, 220], "label": "fake", "reason": "", "p_fake": 0.9, "threshold": 0.5,
            "votes": {"custom": {"p_fake": 0.9, "weight": 1.0}}, "degraded": False, "missing_agents": [],
            "heatmaps": {"custom": png_data_uri(png_bytes(overlay(crop, cam)))},
            "heatmap_notes": {"lenet": "lenet's map shows no location: not shown."}}
    driver.execute_script("showImageResult(arguments[0]);",
                          {"request_id": "r2", "width": 512, "height": 512, "faces": [face], "no_face_reason": ""})
    driver.find_element(By.ID, "heatmap-toggle").click()
    maps = driver.find_element(By.CSS_SELECTOR, ".face-card .heatmaps")
    assert maps.is_displayed()
    tiles = maps.find_elements(By.CSS_SELECTOR, ".heatmap-tiles figure")
    assert [t.find_element(By.TAG_NAME, "figcaption").text for t in tiles] == ["the face", "custom"]
    assert tiles[0].find_element(By.CSS_SELECTOR, "canvas.face-crop").size["width"] >= 224
    assert tiles[1].find_element(By.TAG_NAME, "img").size["width"] >= 224
    assert [n.text for n in maps.find_elements(By.CSS_SELECTOR, ".heatmap-note")] == [face["heatmap_notes"]["lenet"]]

def test_serve_refuses_a_bad_http_port_before_loading_models(capsys):
    from fakeface.serve import cli as serve_cli
    assert serve_cli.main(["--http-port", "70000"]) == 2
    assert "--http-port must be 0..65535 (0 turns the web page off)" in capsys.readouterr().err


def test_web_server_reports_a_busy_port_and_warns_when_exposed(served, caplog):
    import logging

    from fakeface.web.serve import warn_if_exposed

    with _web(served["app"]) as first, pytest.raises(OSError, match="port in use"):
        WebServer(served["app"], "127.0.0.1", first.port).start(timeout_s=10)
    with caplog.at_level(logging.WARNING, logger="fakeface.web"):
        assert warn_if_exposed("0.0.0.0", tls=False, auth=True)
        assert not warn_if_exposed("127.0.0.1", tls=False, auth=False)
        assert not warn_if_exposed("0.0.0.0", tls=True, auth=True)
    assert "non-loopback address without TLS and a token" in caplog.text


def test_browser_asks_for_the_token_and_then_works(browser, ensemble):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    with _serve(ensemble, tokens=(TOKEN,)) as server, _web(create_app(server.service)) as web:
        driver.get(web.url)
        driver.execute_script("sessionStorage.clear();")
        driver.get(web.url)
        _wait(driver, lambda d: "access token" in d.find_element(By.ID, "model-line").text, 30)
        login = driver.find_element(By.ID, "login")
        assert login.is_displayed()
        login.find_element(By.ID, "token").send_keys(TOKEN)
        login.find_element(By.ID, "token-button").click()
        _model_line_loaded(driver, timeout=30)
        assert not login.is_displayed()


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


# --------------------------------------------------------------------------- issue 25: a verdict a person can act on


def _screenshot(driver, name):
    """Saves a screenshot into docs/ when FAKEFACE_SCREENSHOTS=1 (how docs/page-*.png are made)."""
    if os.environ.get("FAKEFACE_SCREENSHOTS") == "1":
        from pathlib import Path

        driver.save_screenshot(str(Path(__file__).resolve().parents[2] / "docs" / f"page-{name}.png"))


def test_feedback_on_the_http_path_is_rate_limited_per_client_and_changes_nothing(ensemble, face_png, tmp_path):
    with _page_client(ensemble, feedback_path=str(tmp_path / "fb.jsonl")) as c:  # its own buckets: a full burst of 5
        first = c.post("/api/classify?name=a.png", content=face_png).json()
        acks = [c.post("/api/feedback", json={"request_id": first["request_id"], "label": "fake"})
                for _ in range(6)]
        assert [a.status_code for a in acks[:5]] == [200] * 5, [a.text for a in acks]
        assert acks[5].status_code == 429 and "Wait a minute" in acks[5].json()["error"]
        assert all(not a.json()["applied"] for a in acks[:5])
        again = c.post("/api/classify?name=a.png", content=face_png).json()
    assert [f["p_fake"] for f in again["faces"]] == [f["p_fake"] for f in first["faces"]]
    assert again["controller_version"] == first["controller_version"]


def test_browser_shows_a_borderline_score_on_a_scale_not_as_a_verdict(browser, page_url):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    _open(driver, page_url)
    driver.execute_script("state.info.borderline = {half_width: 0.09, accuracy_inside: 0.59};")
    reason = "borderline: the fake score 52 % is between 42 % and 60 %, too close to the threshold (51 %) to call"
    face = {"index": 0, "box": [10, 10, 50, 50], "label": "uncertain", "reason": reason, "p_fake": 0.52,
            "threshold": 0.51, "degraded": False, "missing_agents": [], "heatmaps": {},
            "votes": {"custom": {"p_fake": 0.6, "weight": 0.75}, "lenet": {"p_fake": 0.4, "weight": 0.25}}}
    driver.execute_script("showImageResult(arguments[0]);", {"request_id": "r2", "width": 100, "height": 100,
                                                             "faces": [face], "no_face_reason": ""})
    card = driver.find_element(By.CSS_SELECTOR, ".face-card.uncertain")
    verdict = card.find_element(By.CSS_SELECTOR, ".verdict").text
    assert verdict == "Face #0: can't tell — borderline" and "FAKE" not in verdict and "REAL" not in verdict
    assert "too close to the threshold 51 %" in card.find_element(By.CSS_SELECTOR, ".probability").text
    band = card.find_element(By.CSS_SELECTOR, ".scale .band")
    mark = card.find_element(By.CSS_SELECTOR, ".scale .mark")
    # The marker (52 %) sits inside the drawn band (42-60 %).
    assert band.location["x"] <= mark.location["x"] + mark.size["width"] / 2 <= band.location["x"] + band.size["width"]
    assert "can't tell" in driver.find_element(By.CSS_SELECTOR, "#boxes .box").text
    # Each vote against its own threshold, and the shares explained in one line.
    rows = card.find_elements(By.CSS_SELECTOR, ".votes tr[data-agent]")
    assert [r.find_element(By.CSS_SELECTOR, ".alone").text for r in rows] in (["fake", "real"], ["real", "real"],
                                                                            ["fake", "fake"], ["real", "fake"])
    assert "75 %" in rows[0].text and "Share of this answer" in card.find_element(By.CSS_SELECTOR, ".trust-line").text
    _screenshot(driver, "borderline")


def test_browser_clip_answer_agrees_with_its_frame_and_shows_a_timeline(browser, page_url):
    from selenium.webdriver.common.by import By

    from vision.video import shown_frame, track_video

    driver, _ = browser
    _open(driver, page_url)
    ps = [0.56, 0.58, 0.57, 0.55, 0.59, 0.56, 0.30, 0.35, 0.40, 0.12]
    frames = [[{"box": (10, 10, 40, 40), "p_fake": p, "threshold": 0.51, "votes": {}, "time_s": float(i)}]
              for i, p in enumerate(ps)]
    tracks, video = track_video(frames)
    position = shown_frame(tracks, video)
    result = {**video, "tracks": tracks, "frames_sampled": 10, "request_id": "clip-1", "width": 100, "height": 100,
              "frame": "", "frame_faces": [{"index": 0, "box": [10, 10, 40, 40], "label": "fake",
                                             "p_fake": ps[position], "reason": ""}],
              "shown": {"track": 0, "time_s": float(position), "p_fake": ps[position], "label": "fake"}}
    driver.execute_script("showVideoResult(arguments[0]);", result)
    summary = driver.find_element(By.ID, "summary").text
    assert summary.startswith("Clip: FAKE.") and "6 look fake, 4 look real" in summary and "agrees" in summary
    clip = driver.find_element(By.CSS_SELECTOR, ".clip-card")
    assert clip.find_element(By.CSS_SELECTOR, ".verdict").text == "Whole clip: FAKE"
    assert "FAKE" in driver.find_element(By.CSS_SELECTOR, "#boxes .box").text  # the frame agrees
    assert "How a clip is judged: Each face is followed" in clip.find_element(By.CSS_SELECTOR, ".rule-line").text
    line = driver.find_element(By.CSS_SELECTOR, ".track-card svg.timeline")
    assert len(line.find_elements(By.CSS_SELECTOR, "circle.point")) == 10
    assert len(line.find_elements(By.CSS_SELECTOR, "circle.point.fake")) == 6
    _screenshot(driver, "clip")
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


def test_page_on_the_unspecified_ipv6_address_answers_ipv4_too(served):
    import socket
    import urllib.request

    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 on this host")
    with _web(served["app"], "::") as web:
        for host in ("127.0.0.1", "[::1]"):
            with urllib.request.urlopen(f"http://{host}:{web.port}/api/health", timeout=10) as resp:
                assert resp.status == 200 and "serving" in json.loads(resp.read())


def _label_rects(driver):
    """Each box's and each label's rectangle on the page (x, y, width, height), in face order."""
    return driver.execute_script(
        "const r = (n) => { const b = n.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; };"
        "return [...document.querySelectorAll('#boxes .box')].map((b) => [r(b), r(b.querySelector('span'))]);")


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@contextlib.contextmanager
def _page_in_process(bundle):
    """The page's URL, on a gRPC service whose board runs in this process (no Ray replicas)."""
    from blackboard.inprocess import InProcessBoard

    with InProcessBoard(bundle) as board, _serve(board) as server, _web(create_app(server.service)) as web:
        yield web.url


@pytest.fixture(scope="module")
def local_page(session_bundle):
    with _page_in_process(session_bundle) as url:
        yield url


def test_browser_group_picture_labels_every_face_without_overlaps(browser, local_page, face_rgb, tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    _open(driver, local_page)
    # Six tight cuts of the astronaut's face side by side (some mirrored, in other light): faces
    # closer together on the page than their labels are wide.
    tile = face_rgb[55:178, 176:274]
    tiles = [np.clip(tile.astype(np.float32) * f, 0, 255).astype(np.uint8) for f in (1.0, 0.9, 1.1, 0.95, 1.05, 0.85)]
    row = np.hstack([t[:, ::-1] if i % 2 else t for i, t in enumerate(tiles)])
    upload = tmp_path / "group.png"
    upload.write_bytes(png_bytes(cv2.copyMakeBorder(row, 30, 30, 10, 10, cv2.BORDER_CONSTANT, value=(235, 235, 235))))
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
    _wait(driver, lambda d: d.execute_script("return document.getElementById('picture').complete"), 30)
    assert len(driver.find_elements(By.CSS_SELECTOR, ".face-card")) == 6
    assert driver.find_element(By.ID, "summary").text.startswith("6 faces:")
    rects = _label_rects(driver)
    assert len(rects) == 6
    labels = [label for _, label in rects]
    assert not [(i, j) for i, j in itertools.combinations(range(6), 2) if _overlap(labels[i], labels[j])], labels
    # The layout was crowded: labels all set above their boxes' left corners would have collided.
    naive = [(box[0], box[1] - label[3], label[2], label[3]) for box, label in rects]
    assert any(_overlap(a, b) for a, b in itertools.combinations(naive, 2)), rects
    # Every label stays by its own face: it touches the box or the band just above or below it.
    for box, label in rects:
        near = (box[0] - label[2], box[1] - 2 * label[3], box[2] + 2 * label[2], box[3] + 4 * label[3])
        assert _overlap(label, near), (box, label)
    _screenshot(driver, "group")


@pytest.fixture(scope="module")
def ood_page(session_bundle, face_crop, tmp_path_factory):
    """The page on an in-process board whose bundle has an out-of-distribution model (fitted on
    variations of the astronaut's face crop), for answers about faces unlike its training data."""
    import shutil

    from agents.bundle import update_bundle
    from blackboard.inprocess import InProcessBoard
    from blackboard.ood import BUNDLE_FILE, BUNDLE_KEY, crop_features, fit_ood_model

    rng = np.random.default_rng(0)

    def variations(n):
        out = []
        for _ in range(n):
            m = cv2.getRotationMatrix2D((112 + rng.uniform(-6, 6), 112 + rng.uniform(-6, 6)), rng.uniform(-8, 8),
                                        rng.uniform(0.92, 1.08))
            img = cv2.warpAffine(face_crop, m, (224, 224), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
            out.append(np.clip(img * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255).astype(np.uint8))
        return out

    model = fit_ood_model(crop_features(variations(100)), crop_features(variations(50)), false_abstain_rate=0.05)
    bundle = tmp_path_factory.mktemp("ood-bundle") / "tiny"
    shutil.copytree(session_bundle, bundle)
    update_bundle(bundle, extras={BUNDLE_KEY: (BUNDLE_FILE, model.to_json(), {"threshold": model.threshold})})
    with _page_in_process(bundle) as url:
        yield url


def test_browser_out_of_kind_face_says_cant_tell_up_front_without_a_percentage(browser, ood_page, face_crop,
                                                                              tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    _open(driver, ood_page)
    # A face in colours no training face has (the crop's negative): the gate answers "can't tell".
    upload = tmp_path / "negative.png"
    upload.write_bytes(png_bytes(255 - face_crop))
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    card = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))[0]
    assert "uncertain" in card.get_attribute("class").split()
    assert card.find_element(By.CSS_SELECTOR, ".verdict").text == "Face #0: can't tell — unlike its training faces"
    summary = driver.find_element(By.ID, "summary").text
    # Up front, before any card: what the answer is and why there is no verdict.
    assert summary.startswith("1 face: 1 can't tell.") and "No verdict on face #0: it is unlike the faces" in summary
    words = card.find_element(By.CSS_SELECTOR, ".probability").text
    assert words.startswith("No score is given: not a face, or far outside what the agents were trained on"), words
    # No verdict percentage anywhere outside the folded-away agents' table: not in the summary, on the box or the scale.
    assert "%" not in summary and "%" not in driver.find_element(By.CSS_SELECTOR, "#boxes .box").text
    assert not card.find_elements(By.CSS_SELECTOR, ".scale .mark")
    assert not card.find_element(By.CSS_SELECTOR, "details .votes").is_displayed()
    assert [b.text for b in card.find_elements(By.CSS_SELECTOR, ".truth-button")] == ["It is real", "It is fake"]
    _screenshot(driver, "out-of-kind")

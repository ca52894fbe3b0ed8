"""The web page in headless Chromium (Selenium, the system browser) against a real ensemble: upload,
verdict, maps, feedback, reports, tokens, clips, group pictures and faces out of kind."""

from __future__ import annotations

import hashlib
import itertools
import json
import re

import cv2
import numpy as np
import pytest
from grpc_helpers import AGENTS, png_bytes
from web_helpers import (MAX_IMAGE, TOKEN, label_rects, model_line_loaded, open_page, overlap, page_in_process,
                         screenshot, serve_grpc, wait_for, web_server)

from fakeface.web.app import create_app

pytestmark = pytest.mark.slow


def test_browser_upload_verdict_heatmap_feedback_report_and_refusal(browser, page_url, page_served, face_png, tmp_path):
    from selenium.webdriver.common.by import By

    driver, downloads = browser
    open_page(driver, page_url)
    upload = tmp_path / "astronaut.png"
    upload.write_bytes(face_png)
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    card = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))[0]
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
    status = wait_for(driver, lambda d: card.find_element(By.CSS_SELECTOR, ".feedback-status").text)
    assert status.startswith("Thank you") and "changes no answer" in status, status
    last = json.loads(page_served["feedback"].read_text().splitlines()[-1])
    assert last["face_index"] == 0  # the correction is for the face on its card, not the whole picture

    driver.find_element(By.ID, "report-button").click()
    reports = wait_for(driver, lambda d: [p for p in downloads.glob("fakeface-report-*.html")], 60)
    html = reports[0].read_text()
    found = re.search(r'<td id="sha256">([0-9a-f]{64})</td>', html)
    assert found and found.group(1) == hashlib.sha256(face_png).hexdigest()
    assert 'id="disputed"' in html and "the answer for face #0 is wrong" in html  # the dispute is on record
    assert "training data" not in html

    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image at all\n" * 20)
    driver.find_element(By.ID, "file-input").send_keys(str(bogus))
    error = wait_for(driver, lambda d: d.find_element(By.ID, "error").text)
    assert "neither an image nor a video" in error and "JPEG, PNG" in error


def test_browser_sends_an_oversized_screenshot_as_a_jpeg_copy(browser, page_url, face_rgb, tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    open_page(driver, page_url)
    # A big, noisy PNG "screenshot" (as from a large screen): over the page's image limit.
    big = cv2.resize(face_rgb, (1024, 1024)).astype(np.float32)
    big += np.random.default_rng(0).normal(0, 12, big.shape)
    upload = tmp_path / "screen.png"
    upload.write_bytes(png_bytes(np.clip(big, 0, 255).astype(np.uint8)))
    assert upload.stat().st_size > MAX_IMAGE
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
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
    open_page(driver, page_url)
    upload = tmp_path / "IMG_0042.heic"
    upload.write_bytes(pil_encoded(face_crop, "HEIF", quality=95))
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
    shown = wait_for(driver, lambda d: d.execute_script(
        "const p = document.getElementById('picture'); return p.complete && p.naturalWidth ? "
        "[p.naturalWidth, p.naturalHeight, p.src.slice(0, 23)] : null;"))
    assert shown == [224, 224, "data:image/jpeg;base64,"] and not driver.find_element(By.ID, "error").text


def test_browser_says_which_condition_moved_the_agents_weights(browser, page_url):
    # A controller with context bins (issue 22) moves each agent's weight by the face's condition;
    # the votes table says what it saw and by how much, and says nothing for a context-free one.
    driver, _ = browser
    open_page(driver, page_url)
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


def test_browser_asks_for_the_token_and_then_works(browser, ensemble):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    with serve_grpc(ensemble, tokens=(TOKEN,)) as server, web_server(create_app(server.service)) as web:
        driver.get(web.url)
        driver.execute_script("sessionStorage.clear();")
        driver.get(web.url)
        wait_for(driver, lambda d: "access token" in d.find_element(By.ID, "model-line").text, 30)
        login = driver.find_element(By.ID, "login")
        assert login.is_displayed()
        login.find_element(By.ID, "token").send_keys(TOKEN)
        login.find_element(By.ID, "token-button").click()
        model_line_loaded(driver, timeout=30)
        assert not login.is_displayed()


def test_browser_shows_a_borderline_score_on_a_scale_not_as_a_verdict(browser, page_url):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    open_page(driver, page_url)
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
    screenshot(driver, "borderline")


def test_browser_clip_answer_agrees_with_its_frame_and_shows_a_timeline(browser, page_url):
    from selenium.webdriver.common.by import By

    from vision.video import shown_frame, track_video

    driver, _ = browser
    open_page(driver, page_url)
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
    screenshot(driver, "clip")


@pytest.fixture(scope="module")
def local_page(session_bundle):
    with page_in_process(session_bundle) as url:
        yield url


def test_browser_group_picture_labels_every_face_without_overlaps(browser, local_page, face_rgb, tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    open_page(driver, local_page)
    # Six tight cuts of the astronaut's face side by side (some mirrored, in other light): faces
    # closer together on the page than their labels are wide.
    tile = face_rgb[55:178, 176:274]
    tiles = [np.clip(tile.astype(np.float32) * f, 0, 255).astype(np.uint8) for f in (1.0, 0.9, 1.1, 0.95, 1.05, 0.85)]
    row = np.hstack([t[:, ::-1] if i % 2 else t for i, t in enumerate(tiles)])
    upload = tmp_path / "group.png"
    upload.write_bytes(png_bytes(cv2.copyMakeBorder(row, 30, 30, 10, 10, cv2.BORDER_CONSTANT, value=(235, 235, 235))))
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
    wait_for(driver, lambda d: d.execute_script("return document.getElementById('picture').complete"), 30)
    assert len(driver.find_elements(By.CSS_SELECTOR, ".face-card")) == 6
    assert driver.find_element(By.ID, "summary").text.startswith("6 faces:")
    rects = label_rects(driver)
    assert len(rects) == 6
    labels = [label for _, label in rects]
    assert not [(i, j) for i, j in itertools.combinations(range(6), 2) if overlap(labels[i], labels[j])], labels
    # The layout was crowded: labels all set above their boxes' left corners would have collided.
    naive = [(box[0], box[1] - label[3], label[2], label[3]) for box, label in rects]
    assert any(overlap(a, b) for a, b in itertools.combinations(naive, 2)), rects
    # Every label stays by its own face: it touches the box or the band just above or below it.
    for box, label in rects:
        near = (box[0] - label[2], box[1] - 2 * label[3], box[2] + 2 * label[2], box[3] + 4 * label[3])
        assert overlap(label, near), (box, label)
    screenshot(driver, "group")


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
    with page_in_process(bundle) as url:
        yield url


def test_browser_out_of_kind_face_says_cant_tell_up_front_without_a_percentage(browser, ood_page, face_crop,
                                                                              tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    open_page(driver, ood_page)
    # A face in colours no training face has (the crop's negative): the gate answers "can't tell".
    upload = tmp_path / "negative.png"
    upload.write_bytes(png_bytes(255 - face_crop))
    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    card = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))[0]
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
    screenshot(driver, "out-of-kind")

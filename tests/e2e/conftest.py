"""Fixtures of the end-to-end tier: a real gRPC server (one per module) on the session's ensemble, and the
web page's service, headless browser and page URL (`test_web.py`, `test_web_browser.py`)."""

from __future__ import annotations

import os

import grpc
import pytest
from grpc_helpers import png_bytes, start
from web_helpers import CHROMEDRIVER, CHROMIUM, MAX_VIDEO, serve_grpc, web_server

from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
from fakeface.web.app import WebConfig, create_app


@pytest.fixture(scope="module")
def served(ensemble, tmp_path_factory):
    feedback = tmp_path_factory.mktemp("feedback") / "feedback.jsonl"
    server, port = start(ensemble, feedback_path=str(feedback))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield {"server": server, "port": port, "channel": channel, "stub": pb_grpc.DetectorStub(channel),
               "feedback": feedback}
    finally:
        channel.close()
        server.stop(0).wait()


@pytest.fixture(scope="module")
def face_png(face_rgb):
    return png_bytes(face_rgb)


@pytest.fixture(scope="module")
def crop_png(face_crop):
    return png_bytes(face_crop)


# The web page: its service (with a feedback log), a browser, and the page on a port of its own.


@pytest.fixture(scope="module")
def page_served(ensemble, tmp_path_factory):
    """A gRPC server with a feedback log, and the page's app on the same service."""
    folder = tmp_path_factory.mktemp("web-feedback")
    with serve_grpc(ensemble, feedback_path=str(folder / "feedback.jsonl")) as server:
        app = create_app(server.service, WebConfig(max_video_bytes=MAX_VIDEO, video_fps=4.0, video_max_frames=6))
        yield {"server": server, "app": app, "feedback": folder / "feedback.jsonl", "uploads": folder / "feedback-uploads"}


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
def page_url(page_served):
    with web_server(page_served["app"]) as web:
        yield web.url

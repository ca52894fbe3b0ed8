"""What the web page's end-to-end tests share: servers started for a block, the page's limits,
and the headless browser's waits (`test_web.py` drives the API, `test_web_browser.py` the page)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from grpc_helpers import AGENTS

from fakeface.serve.server import ServerConfig, create_server
from fakeface.web.app import create_app
from fakeface.web.serve import WebServer

MAX_IMAGE = 2 * 1024 * 1024  # the gRPC server's message limit in these tests
MAX_VIDEO = 4 * 1024 * 1024  # the page's upload limit for a clip
TOKEN = "s3cret-web-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def serve_grpc(ensemble, **overrides):
    """A gRPC server on the ensemble (its config: ``overrides``), stopped when the block ends."""
    server, _ = create_server("127.0.0.1:0", ensemble, ServerConfig(max_message_bytes=MAX_IMAGE, **overrides))
    try:
        assert server.wait_until_serving(timeout=300)
        yield server
    finally:
        server.stop(0).wait()


@contextlib.contextmanager
def web_server(app, host="127.0.0.1"):
    """The page's app on a web server of its own (a free port on ``host``), stopped when the block ends."""
    web = WebServer(app, host, 0).start()
    try:
        yield web
    finally:
        web.stop()


@contextlib.contextmanager
def page_client(ensemble, **overrides):
    """A test client of the page's app, on a gRPC server of its own (`serve_grpc`)."""
    from fastapi.testclient import TestClient

    with serve_grpc(ensemble, **overrides) as server, TestClient(create_app(server.service)) as c:
        yield c


def check_face(face: dict) -> None:
    assert face["label"] in {"real", "fake", "uncertain"}
    assert (face["label"] == "uncertain") == bool(face["reason"])  # "can't tell" always says why
    assert 0.0 <= face["p_fake"] <= 1.0 and 0.0 < face["threshold"] < 1.0
    assert set(face["votes"]) == AGENTS
    assert all(v["weight"] > 0 for v in face["votes"].values())


def wait_for(driver, condition, timeout=180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def model_line_loaded(driver, timeout=60):
    """Waits until the page shows the model line: it has fetched /api/info and is ready."""
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: "Model bundle" in d.find_element(By.ID, "model-line").text, timeout)


def open_page(driver, url):
    """Opens the page and waits until it is ready."""
    driver.get(url)
    model_line_loaded(driver)


def screenshot(driver, name):
    """Saves a screenshot into docs/ when FAKEFACE_SCREENSHOTS=1 (how docs/page-*.png are made)."""
    if os.environ.get("FAKEFACE_SCREENSHOTS") == "1":
        driver.save_screenshot(str(Path(__file__).resolve().parents[2] / "docs" / f"page-{name}.png"))


def label_rects(driver):
    """Each box's and each label's rectangle on the page (x, y, width, height), in face order."""
    return driver.execute_script(
        "const r = (n) => { const b = n.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; };"
        "return [...document.querySelectorAll('#boxes .box')].map((b) => [r(b), r(b.querySelector('span'))]);")


def overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@contextlib.contextmanager
def page_in_process(bundle):
    """The page's URL, on a gRPC service whose board runs in this process (no Ray replicas)."""
    from blackboard.inprocess import InProcessBoard

    with InProcessBoard(bundle) as board, serve_grpc(board) as server, web_server(create_app(server.service)) as web:
        yield web.url

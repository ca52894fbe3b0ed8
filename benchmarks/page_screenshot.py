"""Takes docs/page.png: the web page with a verdict on a dfdc-test crop, on the shipped bundle.

Starts `fakeface serve` (gRPC and page on free loopback ports), drives Debian's headless
Chromium with Selenium, uploads one crop, opens the heat maps and the accuracy notes, saves the
screenshot, stops the server.

    python benchmarks/page_screenshot.py [--image ../shared/data/dfdc-test/fake/aamvplpjbw.jpg]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--image", default=str(REPO / "../shared/data/dfdc-test/fake/aamvplpjbw.jpg"))
    parser.add_argument("--out", default=str(REPO / "docs/page.png"))
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    http_port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fakeface.cli", "serve", "--port", "0", "--http-port",
                               str(http_port)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    driver = None
    try:
        line = server.stdout.readline()
        if "SERVING" not in line:
            raise SystemExit(f"the server did not start: {line!r}")
        os.environ.setdefault("SE_OFFLINE", "true")
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1200,1400"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.get(f"http://127.0.0.1:{http_port}/")
        wait = WebDriverWait(driver, 180)
        wait.until(lambda d: "Model bundle" in d.find_element(By.ID, "model-line").text)
        driver.find_element(By.ID, "file-input").send_keys(str(Path(args.image).resolve()))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
        driver.find_element(By.ID, "heatmap-toggle").click()
        driver.find_element(By.CSS_SELECTOR, "#about summary").click()
        time.sleep(1.0)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, min(int(height) + 40, 2400))
        time.sleep(0.5)
        tmp = Path(args.out).with_name(f".{Path(args.out).stem}.{os.getpid()}.png")
        driver.save_screenshot(str(tmp))
        os.replace(tmp, args.out)
        print(f"saved {args.out}")
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Takes docs/page.png: the web page with a verdict on a dfdc-test crop (or a clip), on the shipped bundle.

Starts `fakeface serve` (gRPC and page on free loopback ports), drives Debian's headless
Chromium with Selenium, uploads one crop, opens the heat maps and the accuracy notes, saves the
screenshot, stops the server.

    python benchmarks/page_screenshot.py [--image ../shared/data/dfdc-test/fake/aamvplpjbw.jpg]
    python benchmarks/page_screenshot.py --image A.jpg CLIP.mp4 --out docs/page.png docs/page-clip.png
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from harness import REPO, bench_parser, serve_process, use_checkout

use_checkout()


def main() -> None:
    parser = bench_parser(__doc__, show_defaults=True)
    parser.add_argument("--image", nargs="+", default=[str(REPO / "../shared/data/dfdc-test/fake/aamvplpjbw.jpg")],
                        help="files to upload, one screenshot each (one server start for all)")
    parser.add_argument("--out", nargs="+", default=[str(REPO / "docs/page.png")], help="a PNG per --image")
    args = parser.parse_args()
    if len(args.image) != len(args.out):
        parser.error("give one --out per --image")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The server's output (Ray's notices, its log) goes to a file beside the system's temporary files.
    with serve_process(Path(tempfile.gettempdir()) / "page_screenshot.serve.log") as served:
        driver = None
        try:
            os.environ.setdefault("SE_OFFLINE", "true")
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1200,1400"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            for image, out in zip(args.image, args.out):
                driver.set_window_size(1200, 1400)
                driver.get(f"http://127.0.0.1:{served.http_port}/")
                wait = WebDriverWait(driver, 600)  # a clip takes a while on 2 cores
                wait.until(lambda d: "Model bundle" in d.find_element(By.ID, "model-line").text)
                driver.find_element(By.ID, "file-input").send_keys(str(Path(image).resolve()))
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card, .track-card")
                           or d.find_element(By.ID, "error").text)
                if driver.find_element(By.ID, "heatmap-toggle").is_displayed():
                    driver.find_element(By.ID, "heatmap-toggle").click()
                driver.find_element(By.CSS_SELECTOR, "#about summary").click()
                time.sleep(1.0)
                height = driver.execute_script("return document.body.scrollHeight")
                driver.set_window_size(1200, min(int(height) + 40, 2400))
                driver.execute_script("window.scrollTo(0, 0);")  # the heat-map click scrolled the page
                time.sleep(0.5)
                tmp = Path(out).with_name(f".{Path(out).stem}.{os.getpid()}.png")
                driver.save_screenshot(str(tmp))
                os.replace(tmp, out)
                print(f"saved {out}")
        finally:
            if driver is not None:
                driver.quit()


if __name__ == "__main__":
    main()

"""/docs in a real headless browser: a real `python -m gateway` (with API keys set: the page must need
none) and Debian's Chromium driven by Selenium. Swagger UI must render every operation of the
document, log no console error, and load nothing from another origin (the DevTools network log says
what the page requested). A screenshot is left in the test's tmp dir.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`bash deploy/browser.sh` installs them); skipped
without them. Selenium Manager is never used (the driver's path is given), so nothing is downloaded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gateway.openapi.document import build_spec
from shared.config import Settings
from tests.support.browser import chromium, requested_urls
from tests.support.procs import Service, free_port, service_env, wait_http_ready

pytestmark = pytest.mark.e2e

API_KEY = "browser-test-key"


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = service_env(settings, PORT=port, HOST="127.0.0.1", API_KEYS=API_KEY)
    service = Service("gateway", env, tmp_path, "gateway")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ready(base, service)
        yield base
    finally:
        service.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = chromium(tmp_path / "chromium-profile", "--window-size=1400,1000")
    try:
        yield driver
    finally:
        driver.quit()


def test_docs_render_offline_from_this_origin_alone(gateway: str, browser: webdriver.Chrome, tmp_path: Path) -> None:
    document = build_spec()
    operations = [
        (op["tags"][0], op["operationId"])
        for item in document["paths"].values()
        for method, op in item.items()
        if method in ("get", "put", "post", "delete", "patch")
    ]
    # Start from a blank page and drop what the browser did before (its own new-tab page): from here
    # on, every request is the docs page's.
    browser.get("about:blank")
    browser.get_log("performance")
    browser.get_log("browser")
    browser.get(f"{gateway}/docs")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(operations))
    assert "Customer import service" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    for tag, operation_id in operations:
        assert browser.find_elements(By.ID, f"operations-{tag}-{operation_id}"), operation_id
    assert not browser.find_elements(By.CSS_SELECTOR, ".errors-wrapper"), "Swagger UI reports errors"

    assert browser.save_screenshot(str(tmp_path / "docs-top.png"))  # the first screen

    # Open one operation: its parameters and the response schema render from the document.
    browser.find_element(By.CSS_SELECTOR, "#operations-imports-getJob .opblock-summary").click()
    opened = "#operations-imports-getJob .responses-wrapper"
    wait.until(lambda d: "rows_unchanged" in d.find_element(By.CSS_SELECTOR, opened).text)

    # Screenshots: the operation opened, then the whole page (the window made as tall as the page).
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(int(height), 1000), 12000))
    time.sleep(0.3)
    assert browser.save_screenshot(str(tmp_path / "docs.png"))
    browser.find_element(By.CSS_SELECTOR, "#operations-imports-getJob").screenshot(str(tmp_path / "docs-job.png"))
    print(f"screenshots: {tmp_path}/docs-top.png, docs-job.png, docs.png")

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors: {errors}"
    urls = requested_urls(browser)
    origin = urlsplit(gateway)
    assert f"{gateway}/openapi.json" in urls and any(u.startswith(f"{gateway}/docs/") for u in urls), urls
    elsewhere = [
        u
        for u in urls
        if urlsplit(u).scheme not in ("data", "blob", "about")
        and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)
    ]
    assert elsewhere == [], f"requests to another origin: {elsewhere}"

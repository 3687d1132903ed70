"""The web page's browser harness, shared by the browser tests in tests/system/: Debian's Chromium driven by
Selenium against a real `python -m gateway` (API_KEYS set) and `python -m worker` on the test run's database
(skipped without Chromium), one tab per module, and the page helpers the tests read it with."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from shared.config import Settings
from tests.conftest import truncate_all
from tests.support.procs import Service, free_port, http, service_env, wait_http_ready

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
API_KEY = "web-page-test-key"
WIDE, PHONE = (1280, 900), (390, 844)
FIELDS = ("first_name", "last_name", "company_name", "address", "city", "county", "postal", "phone", "email", "web")


@dataclass
class Stack:
    base: str
    downloads: Path
    services: list[Service]  # the gateway, then the worker
    env: dict[str, str]
    log_dir: Path

    def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """A request with the key, like another client (or a second tab) would make it."""
        sent = {"Authorization": f"Bearer {API_KEY}", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        status, answered, raw = http(method, self.base + path, data, sent)
        kind = answered.get("Content-Type", "")
        return status, json.loads(raw) if raw and "json" in kind else raw

    def restart_worker(self) -> None:
        self.services[1].stop()
        self.services[1] = Service("worker", self.env, self.log_dir, "worker-again")


@contextlib.contextmanager
def started_stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, label: str, *, empty: bool = True, **env: object
) -> Iterator[Stack]:
    """A real gateway (API key set) and worker of their own, `env` added to their environment;
    with `empty`, the tables are emptied before the worker starts."""
    log_dir = tmp_path_factory.mktemp(f"{label}-logs")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = service_env(settings, PORT=port, HOST="127.0.0.1", API_KEYS=API_KEY, **env)
    services = [Service("gateway", environment, log_dir, "gateway")]
    try:
        wait_http_ready(base, services[0])
        if empty:
            truncate_all(settings)
        services.append(Service("worker", environment, log_dir, "worker"))
        yield Stack(base, tmp_path_factory.mktemp("downloads"), services, environment, log_dir)
    finally:
        for service in services:
            service.stop()


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started_stack(settings, tmp_path_factory, "web") as started:  # the sample workbook: 500 inserted
        yield started


def chromium(profile: Path, *flags: str, prefs: dict[str, Any] | None = None) -> webdriver.Chrome:
    """Debian's headless Chromium through its chromedriver (never Selenium Manager: nothing is
    downloaded), its console and network logged; skips the test when they are not installed."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(
            "chromium not installed: run deploy/browser.sh (or as root: apt-get install chromium chromium-driver)"
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager may not download anything
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, *flags):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        if prefs:
            options.add_experimental_option("prefs", prefs)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        return webdriver.Chrome(service=ChromeService(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    driver = chromium(
        tmp_path_factory.mktemp("chromium-profile"),
        "--hide-scrollbars",
        f"--window-size={WIDE[0]},{WIDE[1]}",
        prefs={"download.default_directory": str(stack.downloads), "download.prompt_for_download": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def provoked() -> set[int]:
    """HTTP statuses a test provokes on purpose (a wrong key: 401): Chrome logs those responses."""
    return set()


@pytest.fixture
def page(browser: webdriver.Chrome, stack: Stack, provoked: set[int]) -> Iterator[webdriver.Chrome]:
    """The browser on a blank page with its logs emptied: what a test finds in them is its own.
    Afterwards: nothing was requested from another origin, and the console holds no error but
    Chrome's lines for the HTTP errors the test provoked."""
    browser.set_window_size(*WIDE)
    browser.get("about:blank")
    browser.get_log("performance")
    browser.get_log("browser")
    yield browser
    origin = urlsplit(stack.base)
    urls = requested_urls(browser)
    elsewhere = [
        u
        for u in urls
        if urlsplit(u).scheme not in ("data", "blob", "about")
        and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)
    ]
    assert elsewhere == [], f"requests to another origin: {elsewhere}"
    errors = console_errors(browser, provoked)
    assert errors == [], f"console errors: {errors}"


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message.get("method") == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls


def console_errors(driver: webdriver.Chrome, provoked: set[int]) -> list[dict[str, Any]]:
    """SEVERE console entries, less Chrome's own "Failed to load resource: ... status of 412" line
    for a response whose status the test provoked (the page handles those; Chrome logs them anyway)."""
    found = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        status = re.search(r"status of (\d{3})", entry["message"])
        if entry.get("source") == "network" and status and int(status.group(1)) in provoked:
            continue
        found.append(entry)
    return found


# -- helpers -------------------------------------------------------------------------------------


def wait(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], timeout: float = 30) -> Any:
    def check(d: webdriver.Chrome) -> Any:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)


def by_id(driver: webdriver.Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def visible(driver: webdriver.Chrome, element_id: str, timeout: float = 30) -> WebElement:
    return wait(driver, lambda d: (e := by_id(d, element_id)).is_displayed() and e, timeout)


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    return by_id(driver, element_id).text


def open_page(driver: webdriver.Chrome, stack: Stack, view: str = "import") -> None:
    """The page, freshly loaded, at a view, signed in (the key stays in the tab's sessionStorage)."""
    driver.get(f"{stack.base}/#{view}")
    wait(driver, lambda d: by_id(d, "tabs").is_displayed() or by_id(d, "view-key").is_displayed())
    if by_id(driver, "view-key").is_displayed():
        by_id(driver, "key-input").send_keys(API_KEY, Keys.ENTER)
        visible(driver, "tabs")
    visible(driver, f"view-{view}")


def screenshot(driver: webdriver.Chrome, path: Path, *, full: bool = True) -> Path:
    """The page at the window's width; `full`: as tall as the page (the window stretched meanwhile)."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    driver.execute_script("window.scrollTo(0, 0)")
    if full:
        tall = driver.execute_script(
            "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
        )
        driver.set_window_size(width, min(max(int(tall) + 120, height), 6000))
        time.sleep(0.25)
    assert driver.save_screenshot(str(path))
    if full:
        driver.set_window_size(width, height)
    print(f"screenshot: {path}")
    return path


def counters_on_page(driver: webdriver.Chrome) -> dict[str, int]:
    """The counters as the page shows them, read at one instant (they change while a job runs)."""
    shown: dict[str, str] = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#job-counters [data-counter]')]"
        ".map((n) => [n.dataset.counter, n.textContent]))"
    )
    return {name: int(re.sub(r"\D", "", text) or "0") for name, text in shown.items()}


def unlabelled(driver: webdriver.Chrome) -> list[str]:
    """Visible controls a screen reader could not name (no label, aria-label(ledby) or text)."""
    found: list[str] = driver.execute_script(
        """
        return [...document.querySelectorAll("input, select, button, textarea, summary")]
          .filter((c) => c.getClientRects().length && c.type !== "hidden")
          .filter((c) => !((c.labels && c.labels.length) || c.getAttribute("aria-label")
                           || c.getAttribute("aria-labelledby") || c.textContent.trim()))
          .map((c) => c.outerHTML.slice(0, 120));
        """
    )
    return found


def upload_and_preview(driver: webdriver.Chrome, path: Path) -> None:
    by_id(driver, "file-input").send_keys(str(path))
    visible(driver, "step-preview")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#columns .column-card"))


def start_and_finish(driver: webdriver.Chrome, stack: Stack) -> dict[str, Any]:
    """Start the previewed import (unless started), wait for the page's summary; the job as the API has it."""
    if not by_id(driver, "step-watch").is_displayed():
        start = by_id(driver, "start-import")
        assert start.is_enabled()
        start.click()
    visible(driver, "step-watch")
    state = wait(
        driver,
        lambda d: (
            by_id(d, "job-state").get_attribute("data-status") in ("completed", "failed") and by_id(d, "job-state")
        ),
        60,
    )
    job_id = by_id(driver, "step-watch").get_attribute("data-job")
    status, job = stack.api("GET", f"/jobs/{job_id}")
    assert status == 200
    assert state.get_attribute("data-status") == job["status"] == "completed", job
    # The page followed the job through its event stream (fetch + a stream reader, with the key).
    assert any(u.endswith(f"/jobs/{job_id}/events") for u in requested_urls(driver))
    return dict(job)


def assert_summary_matches(driver: webdriver.Chrome, job: dict[str, Any]) -> None:
    shown = counters_on_page(driver)
    expected = {
        name: job[name] for name in ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_skipped")
    }
    expected["rows_invalid"] = job["rows_invalid"]
    assert shown == expected, (shown, expected)
    assert by_id(driver, "watch-title").text.startswith("Import completed")  # ": N rows need fixing" when rejected
    assert int(float(by_id(driver, "job-progress").get_attribute("value") or 0)) == 100


def wait_download(directory: Path, name: str, timeout: float = 20) -> Path:
    target = directory / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.is_file() and not (directory / f"{name}.crdownload").exists() and target.stat().st_size > 0:
            return target
        time.sleep(0.1)
    raise AssertionError(f"{name} not downloaded; the folder holds {sorted(p.name for p in directory.iterdir())}")

"""The web page's finish (issue 20, points 1-5) in a real headless Chromium against real gateway and
worker processes (the fixtures and helpers of tests/system/test_web_page.py): every table fits a phone
(no sideways scrolling inside a table, no word broken in the middle), previews read the stored file
again instead of uploading it again, a summary with rejected rows is a warning, the messages speak to
a person, and a running import can be left and found again. Screenshots at 1280 and 390 px go to each
test's tmp dir (the path is printed): look at them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from shared.config import Settings
from tests.support.browser import (
    API_KEY,
    PHONE,
    WIDE,
    Stack,
    browser,
    by_id,
    counters_on_page,
    open_page,
    page,
    provoked,
    screenshot,
    start_and_finish,
    started_stack,
    text_of,
    upload_and_preview,
    visible,
    wait,
)
from tests.support.workbooks import HEADER, csv_bytes, customers, write_two_sheets

pytestmark = pytest.mark.e2e
__all__ = ["browser", "page", "provoked"]  # the fixtures this module uses from the harness

DOMAIN = "vandenberghe-oppenheimer-holdings.example"


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway and a worker of their own; batches of 200 rows, so a larger import runs long enough to
    be left and found again while it runs."""
    with started_stack(settings, tmp_path_factory, "polish", empty=False, IMPORT_BATCH_SIZE=200) as started:
        yield started


# -- measuring the layout ------------------------------------------------------------------------

# Each visible table box whose content is wider than the box (it scrolls sideways), and the page's
# own sideways scroll. The first rows of the file (a spreadsheet's grid, inside a closed <details>)
# are read across on purpose and are not checked.
OVERFLOW_JS = """
const wide = [...document.querySelectorAll('.table-wrap')]
  .filter((w) => w.getClientRects().length && !w.closest('.rows-preview'))
  .filter((w) => w.scrollWidth > w.clientWidth + 1)
  .map((w) => `${w.getAttribute('aria-label') || w.getAttribute('aria-labelledby')}: `
             + `${w.scrollWidth} > ${w.clientWidth}`);
const page = document.documentElement;
if (page.scrollWidth > window.innerWidth) wide.push(`the page: ${page.scrollWidth} > ${window.innerWidth}`);
return wide;
"""

# Where a visible element's text wraps to a new line inside a word: for each pair of characters on
# either side of a line break, the break must follow white space, "@", "-", "_" or "/", or come
# before white space, "." or "@" (the places the page offers with <wbr>, or a space).
BROKEN_WORDS_JS = """
const found = [];
for (const node of document.querySelectorAll(arguments[0])) {
  if (!node.getClientRects().length) continue;
  const chars = [];
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    for (let i = 0; i < text.data.length; i++) {
      const range = document.createRange();
      range.setStart(text, i);
      range.setEnd(text, i + 1);
      const rect = range.getClientRects()[0];
      // White space at the end of a line has no box: it is kept as a break opportunity.
      if (/\\s/.test(text.data[i])) chars.push([" ", null, 0]);
      else if (rect && rect.width > 0) chars.push([text.data[i], rect.top, rect.height]);
    }
  }
  let last = null;
  let space = false;
  for (const char of chars) {
    if (char[1] === null) {
      space = true;
      continue;
    }
    const previous = last;
    const spaced = space;
    last = char;
    space = false;
    if (!previous) continue;
    const [before, top0, height] = previous;
    const [after, top1] = char;
    if (top1 - top0 < height / 2 || spaced) continue;
    if (/[@\\-_\\/]/.test(before) || /[.@]/.test(after)) continue;
    found.push(`${node.textContent.trim()}: broken between "${before}" and "${after}"`);
  }
}
return found;
"""


def sideways(driver: webdriver.Chrome) -> list[str]:
    found: list[str] = driver.execute_script(OVERFLOW_JS)
    return found


def broken_words(driver: webdriver.Chrome, selector: str) -> list[str]:
    found: list[str] = driver.execute_script(BROKEN_WORDS_JS, selector)
    return found


def outside_the_screen(driver: webdriver.Chrome, selector: str) -> list[str]:
    """Visible elements whose box reaches past the right edge of the window."""
    found: list[str] = driver.execute_script(
        """
        return [...document.querySelectorAll(arguments[0])]
          .filter((n) => n.getClientRects().length)
          .filter((n) => n.getBoundingClientRect().right > window.innerWidth + 0.5)
          .map((n) => `${n.dataset.counter || n.className}: right edge ${n.getBoundingClientRect().right}`);
        """,
        selector,
    )
    return found


def width_share(driver: webdriver.Chrome, selector: str) -> float:
    """The narrowest of the matching cells, as a share of its table box's width."""
    share: float = driver.execute_script(
        """
        const cells = [...document.querySelectorAll(arguments[0])].filter((n) => n.getClientRects().length);
        return Math.min(...cells.map((n) => n.getBoundingClientRect().width / n.closest('.table-wrap').clientWidth));
        """,
        selector,
    )
    return share


def narrower_than_a_sibling(driver: webdriver.Chrome, selector: str) -> list[str]:
    """The matching cells that are narrower than another cell of their row."""
    found: list[str] = driver.execute_script(
        """
        return [...document.querySelectorAll(arguments[0])].filter((n) => n.getClientRects().length)
          .filter((n) => [...n.parentElement.children].some(
            (c) => c !== n && c.getBoundingClientRect().width > n.getBoundingClientRect().width))
          .map((n) => `${n.textContent}: ${n.getBoundingClientRect().width}px`);
        """,
        selector,
    )
    return found


def without_table_roles(driver: webdriver.Chrome) -> list[str]:
    """Rows and cells of a card table without the ARIA role that keeps it a table for a screen reader."""
    found: list[str] = driver.execute_script(
        """
        const missing = [];
        for (const table of document.querySelectorAll("table.cards")) {
          if (table.getAttribute("role") !== "table") missing.push(table.className);
          for (const row of table.querySelectorAll("tr")) {
            if (row.getAttribute("role") !== "row") missing.push(row.outerHTML.slice(0, 80));
            for (const cell of row.children) if (!cell.getAttribute("role")) missing.push(cell.outerHTML.slice(0, 80));
          }
        }
        return missing;
        """
    )
    return found


def at_both_widths(driver: webdriver.Chrome, check: Any, shots: Path, name: str) -> None:
    """Run `check` at 1280 px and at 390 px, with a screenshot of each."""
    for label, size in (("wide", WIDE), ("phone", PHONE)):
        driver.set_window_size(*size)
        wait(driver, lambda d, w=size[0]: d.execute_script("return window.innerWidth") <= w)
        check(label)
        screenshot(driver, shots / f"{name}-{label}.png")
    driver.set_window_size(*WIDE)


# The files here carry a country column too: the service suggests it, and the page maps what it suggests.
HEADER_WITH_COUNTRY = [*HEADER, "country"]


def long_named_customers(n: int) -> list[list[Any]]:
    rows = customers(n, domain=DOMAIN)
    for i, row in enumerate(rows):
        row[0], row[1] = f"Maximiliana{i}", "Vandenberghe-Oppenheimer"
        row[2] = "Vandenberghe Oppenheimer International Holdings"
        row[4] = "Kingston upon Thames"
        row[8] = f"maximiliana.vandenberghe-oppenheimer{i}@{DOMAIN}"
        row.append("United Kingdom")
    return rows


# -- 1. every table at phone width ---------------------------------------------------------------


def test_every_table_fits_a_phone_without_sideways_scrolling_or_broken_words(
    page: webdriver.Chrome, stack: Stack, provoked: set[int], tmp_path: Path
) -> None:
    provoked.add(401)  # the first visit asks for the key
    rows = long_named_customers(12)
    rows[2][8] = "maximiliana.vandenberghe-oppenheimer-without-an-at-sign." + DOMAIN  # row 4
    rows[6][8] = ""  # row 8: no email at all
    source = tmp_path / "long-names-and-bad-rows.csv"
    source.write_bytes(csv_bytes(rows, HEADER_WITH_COUNTRY))
    open_page(page, stack)
    upload_and_preview(page, source)
    job = start_and_finish(page, stack)
    assert job["rows_invalid"] == 2
    visible(page, "job-errors")

    def errors_fit(width: str) -> None:
        assert sideways(page) == [], width
        # "Problem" gets the room, never one word a line: the widest cell of its row, and on a phone
        # the whole width of its card.
        assert narrower_than_a_sibling(page, "#job-errors-body td:last-child") == [], width
        if width == "phone":
            assert width_share(page, "#job-errors-body td:last-child") >= 0.8, width
        assert broken_words(page, "#job-errors-body td") == [], width

    at_both_widths(page, errors_fit, tmp_path, "errors")

    by_id(page, "tabs").find_element(By.CSS_SELECTOR, '[data-view="jobs"]').click()
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job["job_id"]}"]'))

    def jobs_fit(width: str) -> None:
        assert sideways(page) == [], width
        # Every counter of every import is on the screen, labelled.
        assert outside_the_screen(page, "#jobs-body td") == [], width
        row = page.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job["job_id"]}"]')
        counter = row.find_element(By.CSS_SELECTOR, '[data-counter="rows_invalid"]')
        assert counter.is_displayed() and counter.text.endswith("2"), width
        assert broken_words(page, "#jobs-body td") == [], width

    at_both_widths(page, jobs_fit, tmp_path, "recent-imports")

    by_id(page, "tabs").find_element(By.CSS_SELECTOR, '[data-view="customers"]').click()
    box = by_id(page, "search-input")
    box.clear()
    box.send_keys(DOMAIN, Keys.ENTER)
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#customers-body tr")) == 10)

    def customers_fit(width: str) -> None:
        assert sideways(page) == [], width
        assert broken_words(page, "#customers-body td") == [], width
        # Not only name and email: company, city and phone are shown too.
        first = page.find_element(By.CSS_SELECTOR, "#customers-body tr")
        for name in ("company", "city", "phone"):
            cell = first.find_element(By.CSS_SELECTOR, f"td.{name}")
            assert cell.is_displayed() and cell.text, (width, name)
        assert outside_the_screen(page, "#customers-body td") == [], width

    at_both_widths(page, customers_fit, tmp_path, "customers")
    assert without_table_roles(page) == []  # each table, its rows and cells keep their roles as cards


# -- 3. a summary with rejected rows is a warning ------------------------------------------------

GREEN = "rgba(28, 124, 67, 1)"  # --ok
WARN_BACKGROUND = "rgba(255, 245, 220, 1)"  # --warn-soft


def test_a_summary_with_rejected_rows_is_a_warning_not_a_green_done(
    page: webdriver.Chrome, stack: Stack, provoked: set[int], tmp_path: Path
) -> None:
    provoked.add(401)
    rows = long_named_customers(3)
    for row in rows:
        row[8] = row[8].replace("@", ".warning@")
    rows[1][8] = "no-at-sign.example"  # row 3
    source = tmp_path / "one-bad-row.csv"
    source.write_bytes(csv_bytes(rows, HEADER_WITH_COUNTRY))
    open_page(page, stack)
    upload_and_preview(page, source)
    job = start_and_finish(page, stack)
    assert (job["rows_inserted"], job["rows_invalid"]) == (2, 1)

    def warned(width: str) -> None:
        assert text_of(page, "watch-title") == "Import completed: 1 row needs fixing", width
        state = by_id(page, "job-state")
        assert state.get_attribute("data-outcome") == "rows-to-fix"
        assert state.text.startswith("1 row was not imported and needs fixing"), state.text
        assert "Done" not in state.text and "2 other rows were done" in state.text, state.text
        assert state.value_of_css_property("color") != GREEN
        assert state.value_of_css_property("background-color") == WARN_BACKGROUND
        assert text_of(page, "job-errors-title") == "Errors (1 invalid row)"
        assert sideways(page) == [], width

    at_both_widths(page, warned, tmp_path, "rows-to-fix")

    # Every row imported: still the plain, green "Done".
    clean = tmp_path / "all-good.csv"
    clean.write_bytes(csv_bytes(long_named_customers(1), HEADER_WITH_COUNTRY))
    by_id(page, "watch-new").click()
    upload_and_preview(page, clean)
    start_and_finish(page, stack)
    state = by_id(page, "job-state")
    assert text_of(page, "watch-title") == "Import completed" and state.text.startswith("Done")
    assert state.value_of_css_property("color") == GREEN
    assert state.get_attribute("data-outcome") == "done"


# -- 4. words for a person -----------------------------------------------------------------------


def test_a_wrong_key_is_told_plainly_and_one_row_is_one_row(
    page: webdriver.Chrome, stack: Stack, provoked: set[int], tmp_path: Path
) -> None:
    provoked.add(401)
    page.get(f"{stack.base}/")
    page.execute_script("sessionStorage.clear()")
    for label, size in (("wide", WIDE), ("phone", PHONE)):
        page.set_window_size(*size)
        page.get(f"{stack.base}/")
        key = visible(page, "key-input")
        key.send_keys("not-the-key", Keys.ENTER)
        error = wait(page, lambda d: (e := by_id(d, "key-error")).text and e)
        assert error.text.startswith("That key was not accepted."), error.text
        assert "copied the whole key" in error.text
        for jargon in ("Authorization", "Bearer", "API key as", "401", "header"):
            assert jargon not in error.text, error.text
        screenshot(page, tmp_path / f"wrong-key-{label}.png", full=False)
    page.set_window_size(*WIDE)

    by_id(page, "key-input").clear()
    by_id(page, "key-input").send_keys(API_KEY, Keys.ENTER)
    visible(page, "view-import")
    one = tmp_path / "one-customer.csv"
    one.write_bytes(csv_bytes(long_named_customers(1), HEADER_WITH_COUNTRY))
    upload_and_preview(page, one)
    line = text_of(page, "preview-file")
    assert line.endswith("about 1 row"), line
    screenshot(page, tmp_path / "one-row.png", full=False)
    by_id(page, "preview-cancel").click()


# -- 2. previews without re-uploads --------------------------------------------------------------


def sent_requests(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    """(method, path and query) of every request the page sent since the log was last read."""
    sent = []
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            request = message["params"]["request"]
            parts = urlsplit(request["url"])
            sent.append((request["method"], parts.path + (f"?{parts.query}" if parts.query else "")))
    return sent


def job_status(stack: Stack, job_id: str) -> int:
    status, _ = stack.api("GET", f"/jobs/{job_id}")
    return status


def test_a_header_row_or_sheet_change_uploads_nothing_again_and_abandoned_previews_are_deleted(
    page: webdriver.Chrome, stack: Stack, provoked: set[int], tmp_path: Path
) -> None:
    provoked.add(401)
    _, before = stack.api("GET", "/jobs?include_previews=true&limit=200")
    known = {job["job_id"] for job in before["items"]}
    rows = long_named_customers(5)
    for row in rows:
        row[8] = row[8].replace("@", ".sheets@")
    book = write_two_sheets(tmp_path / "notes-then-people.xlsx", rows, HEADER_WITH_COUNTRY)
    open_page(page, stack)
    page.get_log("performance")
    upload_and_preview(page, book)
    _, previews = stack.api("GET", "/jobs?status=uploaded&limit=200")
    (job_id,) = [job["job_id"] for job in previews["items"] if job["job_id"] not in known]

    # The sheets, then the header row twice: each reads the stored copy again.
    changes = 2
    for name in ("Notes", "People"):
        if Select(by_id(page, "sheet-select")).first_selected_option.get_attribute("value") != name:
            Select(by_id(page, "sheet-select")).select_by_value(name)
            changes += 1
            wait(page, lambda d: not by_id(d, "preview-busy").is_displayed() and by_id(d, "sheet-select").is_enabled())
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, 'label[for="map-A"]').text.strip() == "A “first_name”")
    header_row = by_id(page, "header-row")
    header_row.clear()
    header_row.send_keys("0", Keys.TAB)
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, 'label[for="map-A"]').text.strip() == "A Column A")
    for label, size in (("wide", WIDE), ("phone", PHONE)):
        page.set_window_size(*size)
        screenshot(page, tmp_path / f"header-row-0-{label}.png", full=False)
    page.set_window_size(*WIDE)
    header_row = by_id(page, "header-row")
    header_row.clear()
    header_row.send_keys("1", Keys.TAB)
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, 'label[for="map-A"]').text.strip() == "A “first_name”")
    wait(page, lambda d: by_id(d, "start-import").is_enabled())

    sent = sent_requests(page)
    uploads = [path for method, path in sent if method == "POST" and path.startswith("/upload")]
    again = [path for method, path in sent if method == "POST" and path == f"/jobs/{job_id}/preview"]
    assert uploads == ["/upload?preview=true"], sent  # the file went up once
    assert len(again) == changes, sent
    _, previews = stack.api("GET", "/jobs?status=uploaded&limit=200")
    assert [job["job_id"] for job in previews["items"] if job["job_id"] not in known] == [job_id]

    # Started: the job imported is that one, read as the page showed it last; no other job was left.
    job = start_and_finish(page, stack)
    assert job["job_id"] == job_id and (job["sheet"], job["header_row"], job["rows_read"]) == ("People", 1, 5)
    _, after = stack.api("GET", "/jobs?include_previews=true&limit=200")
    assert [j["job_id"] for j in after["items"] if j["job_id"] not in known] == [job_id]
    by_id(page, "tabs").find_element(By.CSS_SELECTOR, '[data-view="jobs"]').click()
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job_id}"]'))
    assert len(page.find_elements(By.CSS_SELECTOR, "#jobs-body tr[data-job]")) == len(
        [j for j in after["items"] if j["status"] != "uploaded"]
    )
    assert "not started" not in text_of(page, "jobs-body")

    # "Choose another file" deletes the preview it leaves; so does leaving the page.
    by_id(page, "tabs").find_element(By.CSS_SELECTOR, '[data-view="import"]').click()
    by_id(page, "watch-new").click()
    for leave in ("choose another file", "leave the page"):
        upload_and_preview(page, book)
        _, previews = stack.api("GET", "/jobs?status=uploaded&limit=200")
        (abandoned,) = [j["job_id"] for j in previews["items"] if j["job_id"] not in known]
        if leave == "choose another file":
            by_id(page, "preview-cancel").click()
            visible(page, "step-pick")
        else:
            page.get("about:blank")
        wait(page, lambda d, gone=abandoned: job_status(stack, gone) == 404, 15)
        open_page(page, stack)
    _, previews = stack.api("GET", "/jobs?status=uploaded&limit=200")
    assert [j["job_id"] for j in previews["items"] if j["job_id"] not in known] == []


# -- 5. a long import can be left and found again ------------------------------------------------


def progress_of(driver: webdriver.Chrome, job_id: str) -> float:
    """The progress Recent imports shows for the job (-1 when it shows none)."""
    found = driver.find_elements(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job_id}"] .job-progress progress')
    return float(found[0].get_attribute("value") or 0) if found else -1.0


def record_finished_jobs(settings: Settings, n: int) -> None:
    """`n` completed imports, newer than any so far, as rows of import_jobs."""
    conn = pymysql.connect(
        host=settings.mysql.host,
        port=settings.mysql.port,
        user=settings.mysql.user,
        password=settings.mysql.password,
        database=settings.mysql.database,
    )
    with conn.cursor() as cur:
        for i in range(n):
            cur.execute(
                "INSERT INTO import_jobs (id, filename, file_kind, size_bytes, sha256, options, status,"
                " started_at, finished_at) VALUES (%s, %s, 'csv', 1, %s, '{}', 'completed', NOW(6), NOW(6))",
                (str(uuid.uuid4()), f"meanwhile-{i}.csv", "0" * 64),
            )
    conn.commit()
    conn.close()


def test_a_running_import_can_be_left_and_found_again_with_live_progress(
    page: webdriver.Chrome, stack: Stack, provoked: set[int], settings: Settings, tmp_path: Path
) -> None:
    provoked.add(401)
    rows = customers(80_000, domain="left-and-found.example")
    for row in rows:
        row.append("United Kingdom")
    source = tmp_path / "eighty-thousand.csv"
    source.write_bytes(csv_bytes(rows, HEADER_WITH_COUNTRY))
    open_page(page, stack)
    upload_and_preview(page, source)
    by_id(page, "start-import").click()
    wait(page, lambda d: counters_on_page(d).get("rows_read", 0) > 0, 60)
    job_id = by_id(page, "step-watch").get_attribute("data-job")

    # Left: the tab goes elsewhere, the import goes on, and meanwhile 20 newer imports end (recorded
    # here directly: the one worker is busy). Found again in Recent imports all the same, its progress
    # moving on the screen with no click.
    page.get("about:blank")
    record_finished_jobs(settings, 20)
    page.get_log("performance")
    open_page(page, stack, "jobs")
    row = wait(page, lambda d: d.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job_id}"]'))
    assert row.get_attribute("data-status") == "running", row.text
    first = wait(page, lambda d: (p := progress_of(d, job_id)) > 0 and p)
    assert re.search(r"[\d,]+ of about [\d,]+ rows \(\d+%\)", text_of(page, "jobs-body")), text_of(page, "jobs-body")
    wait(page, lambda d: progress_of(d, job_id) > first, 30)
    polled = [path for method, path in sent_requests(page) if method == "GET" and path.startswith("/jobs?status=")]
    assert polled and all("queued%2Crunning" in path or "queued,running" in path for path in polled), polled
    for label, size in (("wide", WIDE), ("phone", PHONE)):
        page.set_window_size(*size)
        wait(page, lambda d, w=size[0]: d.execute_script("return window.innerWidth") <= w)
        assert sideways(page) == [], label
        if progress_of(page, job_id) >= 0:
            screenshot(page, tmp_path / f"running-in-recent-imports-{label}.png", full=False)
    page.set_window_size(*WIDE)

    # Opened: the page follows it again through its event stream, to the end.
    page.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job_id}"] button').click()
    visible(page, "step-watch")
    assert by_id(page, "step-watch").get_attribute("data-job") == job_id
    job = start_and_finish(page, stack)  # asserts the events were requested and the job completed
    assert (job["job_id"], job["rows_inserted"]) == (job_id, 80_000)
    assert counters_on_page(page)["rows_read"] == 80_000
    # Ended: no progress shown any more (and, older than the 20 newest, it leaves the list).
    by_id(page, "tabs").find_element(By.CSS_SELECTOR, '[data-view="jobs"]').click()
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#jobs-body tr[data-job]")) >= 20)
    wait(page, lambda d: not d.find_elements(By.CSS_SELECTOR, "#jobs-body .job-progress"))

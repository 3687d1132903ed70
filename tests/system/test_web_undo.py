"""The page's parts of issue 19 in Debian's Chromium (Selenium), at 1280 and 390 px, against a real
`python -m gateway` and `python -m worker`, MariaDB and Redis: the import modes on the preview (their
choices read from the API document), "What changed" and its CSV, "Undo this import" (the confirmation's
numbers, the revert's progress and its conflicts), Cancel while an import waits, the customer list sorted
by column with its total, and the customer editor's History tab. Screenshots go to each test's tmp dir.

The tests run in file order and share the module's gateway, worker and browser tab.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from shared.config import Settings
from tests.support.browser import (
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
    unlabelled,
    upload_and_preview,
    visible,
    wait,
    wait_download,
)
from tests.support.workbooks import HEADER, csv_bytes

pytestmark = pytest.mark.e2e
__all__ = ["browser", "page", "provoked"]  # the harness's fixtures, used here with this module's stack


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started_stack(settings, tmp_path_factory, "undo") as started:
        yield started


def person(i: int, city: str | None, domain: str = "undo.example") -> list[str]:
    return [f"First{i}", f"Last{i}", f"Company {i}", "", city or "", "", "", "", f"p{i}@{domain}", ""]


def write(tmp_path: Path, name: str, rows: list[list[str]]) -> Path:
    path = tmp_path / name
    path.write_bytes(csv_bytes(rows, HEADER))
    return path


def ids_by_email(stack: Stack) -> dict[str, int]:
    status, page_ = stack.api("GET", "/customers?limit=1000")
    assert status == 200
    return {c["email"]: c["id"] for c in page_["items"]}


def api_document(stack: Stack) -> dict[str, Any]:
    status, doc = stack.api("GET", "/openapi.json")
    assert status == 200
    return dict(doc)


def changes_on_page(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#changes-body tr")
    return sorted((row.get_attribute("data-customer") or "", row.get_attribute("data-action") or "") for row in rows)


def test_modes_changes_and_undo_at_1280(
    page: webdriver.Chrome, stack: Stack, tmp_path: Path, provoked: set[int]
) -> None:
    provoked.add(401)  # the tab's first probe, before the key is typed in
    open_page(page, stack)
    upload_and_preview(page, write(tmp_path, "first.csv", [person(i, "Leeds") for i in range(5)]))
    start_and_finish(page, stack)
    ids = ids_by_email(stack)

    by_id(page, "watch-new").click()
    # p0, p1: a new city; p2: the city left empty (kept by default); p7, p8: new.
    second = [person(0, "Paris"), person(1, "Rome"), person(2, None), person(7, "Oslo"), person(8, "Bonn")]
    upload_and_preview(page, write(tmp_path, "second.csv", second))
    modes = visible(page, "import-modes")
    # The choices are the API document's, not a copy: each option's text is its x-choices entry.
    props = api_document(stack)["components"]["schemas"]["StartOptions"]["properties"]
    for name in ("mode", "blank_cells"):
        select = Select(by_id(page, f"option-{name}"))
        values = [o.get_attribute("value") for o in select.options]
        assert values == list(props[name]["x-choices"]), name
        assert select.first_selected_option.get_attribute("value") == props[name]["default"]
        assert select.options[1].text == props[name]["x-choices"][values[1]]["label"]
        hint = by_id(page, f"option-{name}-hint").text.lower()
        assert props[name]["x-choices"][props[name]["default"]]["description"] in hint
    assert not page.find_elements(By.ID, "option-match_on")  # the file has no id column
    assert "How the rows meet" in modes.text
    assert unlabelled(page) == []
    screenshot(page, tmp_path / "preview-modes-1280.png")
    job = start_and_finish(page, stack)
    assert (job["rows_inserted"], job["rows_updated"], job["rows_unchanged"], job["rows_skipped"]) == (2, 2, 1, 0)
    assert counters_on_page(page)["rows_skipped"] == 0

    # What changed: the two updated and the two inserted customers, with the old and new city.
    visible(page, "job-outcome")
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#changes-body tr")) == 4)
    after = ids_by_email(stack)
    expected = sorted(
        [(str(ids[f"p{i}@undo.example"]), "updated") for i in (0, 1)]
        + [(str(after[f"p{i}@undo.example"]), "inserted") for i in (7, 8)]
    )
    assert changes_on_page(page) == expected
    assert "Leeds → Paris" in text_of(page, "changes-body")
    by_id(page, "changes-csv").click()
    table = list(
        csv.reader(
            io.StringIO(wait_download(stack.downloads, f"job-{job['job_id']}-changes.csv").read_text("utf-8-sig"))
        )
    )
    assert table[0][:3] == ["customer_id", "email", "action"] and len(table) > 4

    # Someone edits p0 after the import: the undo leaves it and lists it.
    status, _ = stack.api("PATCH", f"/customers/{ids['p0@undo.example']}", {"city": "Madrid"})
    assert status == 200
    by_id(page, "undo-ask").click()
    question = visible(page, "undo-question").text
    assert "2 customers it added will be deleted" in question and "2 customers it changed" in question, question
    screenshot(page, tmp_path / "undo-confirm-1280.png")
    by_id(page, "undo-yes").click()
    wait(page, lambda d: by_id(d, "undo-state").get_attribute("data-status") == "completed", 60)
    visible(page, "undo-conflicts")
    shown = {
        el.get_attribute("data-counter"): el.text for el in page.find_elements(By.CSS_SELECTOR, "#undo-counters dd")
    }
    assert shown == {"rows_deleted": "2", "rows_restored": "1", "rows_invalid": "1"}, shown
    conflicts = page.find_elements(By.CSS_SELECTOR, "#undo-conflicts-body tr")
    assert len(conflicts) == 1 and conflicts[0].text.startswith(str(ids["p0@undo.example"]))
    screenshot(page, tmp_path / "undone-1280.png")
    now = ids_by_email(stack)
    assert "p7@undo.example" not in now and "p8@undo.example" not in now
    status, p1 = stack.api("GET", f"/customers/{ids['p1@undo.example']}")
    assert p1["city"] == "Leeds"
    status, p0 = stack.api("GET", f"/customers/{ids['p0@undo.example']}")
    assert p0["city"] == "Madrid"

    # The import now names its undo; a second undo is not offered.
    page.refresh()
    open_page(page, stack, "jobs")
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job["job_id"]}"] button'))
    page.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job["job_id"]}"] button').click()
    visible(page, "job-outcome")
    wait(page, lambda d: "undone" in text_of(d, "undo-hint"))
    assert not by_id(page, "undo-ask").is_displayed()


def test_insert_mode_chosen_on_the_preview_skips_known_customers(
    page: webdriver.Chrome, stack: Stack, tmp_path: Path
) -> None:
    open_page(page, stack)
    upload_and_preview(page, write(tmp_path, "insert.csv", [person(1, "Nowhere"), person(20, "Lima")]))
    Select(visible(page, "option-mode")).select_by_value("insert")
    job = start_and_finish(page, stack)
    assert (job["mode"], job["rows_inserted"], job["rows_skipped"]) == ("insert", 1, 1)
    assert counters_on_page(page)["rows_skipped"] == 1
    _status, p1 = stack.api("GET", f"/customers/{ids_by_email(stack)['p1@undo.example']}")
    assert p1["city"] == "Leeds"


def test_cancel_while_an_import_waits(page: webdriver.Chrome, stack: Stack, tmp_path: Path) -> None:
    stack.services[1].stop()  # no worker: the import stays queued until it is cancelled
    try:
        open_page(page, stack)
        upload_and_preview(page, write(tmp_path, "waits.csv", [person(i, "Cork") for i in range(30, 40)]))
        by_id(page, "start-import").click()
        cancel = visible(page, "job-cancel")
        assert "Waiting" in text_of(page, "job-state")
        screenshot(page, tmp_path / "cancel-1280.png", full=False)
        cancel.click()
        wait(page, lambda d: by_id(d, "job-state").get_attribute("data-status") == "cancelled")
        assert text_of(page, "watch-title") == "Import cancelled"
        assert not by_id(page, "job-cancel").is_displayed()
        job_id = by_id(page, "step-watch").get_attribute("data-job")
        _status, job = stack.api("GET", f"/jobs/{job_id}")
        assert job["status"] == "cancelled" and job["rows_read"] == 0
    finally:
        stack.restart_worker()


def test_customers_sorted_by_column_with_the_total_and_a_history_tab(
    page: webdriver.Chrome, stack: Stack, tmp_path: Path
) -> None:
    open_page(page, stack, "customers")
    _, listed = stack.api("GET", "/customers?limit=1&count=true")
    total = listed["total"]
    wait(page, lambda d: f"of {total}" in text_of(d, "customers-state"))
    city = page.find_element(By.CSS_SELECTOR, 'th[data-sort="city"] button')
    city.click()
    wait(
        page,
        lambda d: d.find_element(By.CSS_SELECTOR, 'th[data-sort="city"]').get_attribute("aria-sort") == "ascending",
    )
    _, expected = stack.api("GET", "/customers?limit=20&sort=city")

    def shown_ids(d: webdriver.Chrome) -> list[int]:
        return [int(r.get_attribute("data-id")) for r in d.find_elements(By.CSS_SELECTOR, "#customers-body tr")]

    wait(page, lambda d: shown_ids(d) == [c["id"] for c in expected["items"]])
    city = page.find_element(By.CSS_SELECTOR, 'th[data-sort="city"] button')
    city.click()
    wait(
        page,
        lambda d: d.find_element(By.CSS_SELECTOR, 'th[data-sort="city"]').get_attribute("aria-sort") == "descending",
    )
    _status, expected = stack.api("GET", "/customers?limit=20&sort=-city")
    wait(page, lambda d: shown_ids(d) == [c["id"] for c in expected["items"]])
    screenshot(page, tmp_path / "customers-sorted-1280.png")

    # p1: created by the first import, changed by the second, restored by the undo.
    p1 = ids_by_email(stack)["p1@undo.example"]
    page.find_element(By.CSS_SELECTOR, f'#customers-body tr[data-id="{p1}"] button').click()
    visible(page, "customer-dialog")
    by_id(page, "tab-history").click()
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-list > li")) >= 3)
    actions = [li.get_attribute("data-action") for li in page.find_elements(By.CSS_SELECTOR, "#history-list > li")]
    assert actions[-1] == "created" and "updated" in actions, actions
    assert "Leeds → Rome" in text_of(page, "history-list")
    assert by_id(page, "tab-history").get_attribute("aria-selected") == "true"
    assert not by_id(page, "customer-details").is_displayed()
    screenshot(page, tmp_path / "history-1280.png", full=False)
    by_id(page, "tab-details").click()
    visible(page, "customer-fields")
    by_id(page, "customer-close").click()


def test_the_new_parts_at_phone_width(page: webdriver.Chrome, stack: Stack, tmp_path: Path) -> None:
    page.set_window_size(*PHONE)
    open_page(page, stack)
    upload_and_preview(page, write(tmp_path, "phone.csv", [person(2, "Paris"), person(50, "Kiev")]))
    modes = visible(page, "import-modes")
    assert page.execute_script("return arguments[0].getBoundingClientRect().right", modes) <= PHONE[0]
    page.execute_script("arguments[0].scrollIntoView()", modes)
    assert page.save_screenshot(str(tmp_path / "preview-modes-390.png"))
    start_and_finish(page, stack)
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#changes-body tr")) == 2)
    assert page.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    screenshot(page, tmp_path / "changes-390.png")
    open_page(page, stack, "customers")
    sort = wait(
        page, lambda d: (b := d.find_element(By.CSS_SELECTOR, 'th[data-sort="last_name"] button')).is_displayed() and b
    )
    sort.click()
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, 'th[data-sort="last_name"]').get_attribute("aria-sort"))
    assert page.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    screenshot(page, tmp_path / "customers-390.png")
    page.find_element(By.CSS_SELECTOR, "#customers-body tr button").click()
    by_id(page, "tab-history").click()
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#history-list > li"))
    screenshot(page, tmp_path / "history-390.png", full=False)
    by_id(page, "customer-close").click()
    page.set_window_size(*WIDE)

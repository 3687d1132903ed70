"""The import page with issue 18's mapping (real gateway and worker processes, MariaDB, Redis, Chromium, as in
tests/system/test_web_page.py, whose fixtures this module shares): Start waits for the email alone, a column
with no field is kept as an attribute, a remembered mapping says where it came from, and the error table
names the file's columns and shows the values. Screenshots at 1280 and 390 px in each test's tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support.browser import (
    PHONE,
    WIDE,
    Stack,
    by_id,
    open_page,
    screenshot,
    start_and_finish,
    text_of,
    upload_and_preview,
    visible,
    wait,
)
from tests.system import test_web_page as web_page

# The page's fixtures: one gateway, worker and browser for this module too.
stack = web_page.stack
browser = web_page.browser
provoked = web_page.provoked
page = web_page.page

pytestmark = pytest.mark.e2e

HEADER = "Vorname;Firma;E-Mail;Lifecycle Stage;Notizen\r\n"


def card(driver: webdriver.Chrome, header: str) -> Select:
    """The select of the column whose title is `header`."""
    for node in driver.find_elements(By.CSS_SELECTOR, "#columns .column-card"):
        if f"“{header}”" in node.find_element(By.CSS_SELECTOR, ".column-title").text:
            return Select(node.find_element(By.TAG_NAME, "select"))
    raise AssertionError(f"no column {header!r}")


def test_start_needs_only_the_email_and_a_column_is_kept_as_an_attribute(
    page: webdriver.Chrome, stack: Stack, tmp_path: Path, provoked: set[int]
) -> None:
    provoked.add(401)  # the tab's first visit asks for the key: Chrome logs the 401 that makes it ask
    source = tmp_path / "kontakte-maerz.csv"
    long_company = "Sehr lange Firma " * 8  # 136 characters: longer than company_name takes
    source.write_bytes(
        (
            HEADER
            + "Jürgen;Müller GmbH;jg@attr.example;customer;x\r\n"
            + f"Änne;{long_company};aw@attr.example;lead;y\r\n"
            + "Bernd;B AG;kein-email;lead;z\r\n"
        ).encode("utf-8")
    )
    page.set_window_size(*WIDE)
    open_page(page, stack)
    upload_and_preview(page, source)
    # Not every field has a column, yet Start is enabled: only the email is required.
    wait(page, lambda d: by_id(d, "start-import").is_enabled())
    assert "fields have a column" in text_of(page, "start-help")
    optional = page.find_elements(By.CSS_SELECTOR, '#field-status li.optional[data-field="web"]')
    assert optional and "optional" in optional[0].text
    keep = card(page, "Lifecycle Stage")
    keep.select_by_visible_text("Keep as attribute “Lifecycle Stage”")
    screenshot(page, tmp_path / "mapping-1280.png")
    job = start_and_finish(page, stack)
    assert (job["rows_inserted"], job["rows_invalid"]) == (1, 2)
    assert job["mapping"]["attributes.Lifecycle Stage"] == "Lifecycle Stage"
    status, found = stack.api("GET", "/customers?q=jg@attr.example")
    assert status == 200 and found["items"][0]["attributes"] == {"Lifecycle Stage": "customer"}

    # The error table: the file's column names and the values, never snake_case field names.
    table = visible(page, "job-errors")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    cells = [[td.text.strip() for td in tr.find_elements(By.TAG_NAME, "td")] for tr in rows]
    assert ["3", "Firma", long_company[:100].strip(), "Longer than 100 characters"] in cells, cells
    assert ["4", "E-Mail", "kein-email", "Not a valid email address"] in cells, cells
    assert "company_name" not in table.text
    screenshot(page, tmp_path / "errors-1280.png")
    page.set_window_size(*PHONE)
    screenshot(page, tmp_path / "errors-390.png")
    page.set_window_size(*WIDE)


def test_a_remembered_mapping_says_where_it_came_from(page: webdriver.Chrome, stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "kontakte-april.csv"
    source.write_bytes((HEADER + "Carla;C AG;carla@attr.example;customer;q\r\n").encode("utf-8"))
    open_page(page, stack)
    upload_and_preview(page, source)
    hint = wait(
        page,
        lambda d: next(
            (
                n.text
                for n in d.find_elements(By.CSS_SELECTOR, "#columns .column-card .hint")
                if "remembered from" in n.text
            ),
            None,
        ),
    )
    assert "remembered from kontakte-maerz.csv" in hint
    assert card(page, "Lifecycle Stage").first_selected_option.text.startswith("Keep as attribute")
    page.set_window_size(*PHONE)
    screenshot(page, tmp_path / "remembered-390.png")
    page.set_window_size(*WIDE)
    screenshot(page, tmp_path / "remembered-1280.png")
    job = start_and_finish(page, stack)
    assert job["rows_inserted"] == 1
    _, found = stack.api("GET", "/customers?q=carla@attr.example")
    assert found["items"][0]["attributes"] == {"Lifecycle Stage": "customer"}

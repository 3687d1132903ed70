"""The import page at `/` (gateway/web.py, gateway/static/) in a real headless browser: a real
`python -m gateway` with API_KEYS set and a real `python -m worker`, real MariaDB and Redis, and
Debian's Chromium driven by Selenium (as tests/system/test_docs_browser.py does; skipped without it).

The tests run in file order and share one gateway, worker and browser tab (the API key stays in the
tab's sessionStorage): the key, the sample workbook (500 inserted into the empty database), uk-500.csv
mapped by hand, a CSV with bad rows and its rejected-rows download, the customers (search, pages,
edit, a 412 from a change made meanwhile in a second tab, create, delete, export), and the page at phone
width. Each test leaves screenshots in its tmp dir, and checks that the page asked nothing of another
origin (the DevTools network log) and logged no console error beyond the HTTP errors it provoked.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import openpyxl
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from gateway import web
from gateway.http.middlewares import PUBLIC_PATHS
from shared.config import Settings
from shared.customers.fields import CUSTOMER_FIELDS
from tests.conftest import DATA
from tests.support.browser import (
    API_KEY,
    FIELDS,
    PHONE,
    WIDE,
    Stack,
    assert_summary_matches,
    browser,
    by_id,
    console_errors,
    counters_on_page,
    open_page,
    page,
    provoked,
    requested_urls,
    screenshot,
    stack,
    start_and_finish,
    text_of,
    unlabelled,
    upload_and_preview,
    visible,
    wait,
    wait_download,
)
from tests.support.procs import Service, free_port, http, service_env, wait_http_ready
from tests.support.workbooks import csv_bytes, customers, write_two_sheets

pytestmark = pytest.mark.e2e

__all__ = ["browser", "page", "provoked", "stack"]  # the harness's fixtures (tests/support/browser.py)

# -- serving the page ----------------------------------------------------------------------------


def test_page_and_assets_are_public_cached_and_locked_to_this_origin(stack: Stack) -> None:
    assert set(web.PUBLIC_PATHS) <= PUBLIC_PATHS
    status, headers, body = http("GET", stack.base + "/")  # no key: the page asks for it itself
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    html = body.decode()
    # Nothing inline: the policy would refuse it.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) and "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)
    links = re.findall(r'(?:href|src)="static/([^"?]+)\?v=([0-9a-f]{16})"', html)
    assert {name for name, _ in links} == {"style.css", "app.js"}
    status, headers, _ = http("GET", stack.base + "/", headers={"If-None-Match": headers["ETag"]})
    assert status == 304

    for name in web.ASSET_NAMES:
        asset = web.load_asset(name)
        assert asset is not None
        status, headers, body = http("GET", f"{stack.base}/static/{name}?v={asset.version}")
        assert status == 200 and headers["Cache-Control"] == "public, max-age=31536000, immutable", name
        assert body == asset.body and headers["ETag"] == asset.etag
        if name.endswith(".js"):
            # Every module another imports is linked with its content version too.
            for target, version in re.findall(r'from "\./([\w.-]+)\?v=([0-9a-f]+)"', body.decode()):
                linked = web.load_asset(target)
                assert linked is not None and linked.version == version, (name, target)
            assert not re.search(r'from "\./[\w.-]+"', body.decode()), name
        status, headers, _ = http("GET", f"{stack.base}/static/{name}")  # no version: revalidate
        assert status == 200 and headers["Cache-Control"] == "no-cache"
        status, _, _ = http("GET", f"{stack.base}/static/{name}", headers={"If-None-Match": asset.etag})
        assert status == 304
    status, headers, body = http("GET", f"{stack.base}/static/app.js", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    status, _ = stack.api("GET", "/static/nope.js")  # not a public path: with the key, a 404
    assert status == 404
    status, _, _ = http("GET", f"{stack.base}/static/app.js?x=1")
    assert status == 400  # like every endpoint: a query parameter it does not take


# -- in the browser ------------------------------------------------------------------------------


def test_a_wrong_key_says_so_and_the_right_one_is_kept_for_the_tab(
    page: webdriver.Chrome, stack: Stack, provoked: set[int], tmp_path: Path
) -> None:
    provoked.add(401)
    page.get(f"{stack.base}/")
    page.execute_script("sessionStorage.clear()")
    page.get(f"{stack.base}/")
    form = visible(page, "view-key")
    assert not by_id(page, "tabs").is_displayed() and "API key" in form.text
    key = by_id(page, "key-input")
    assert page.switch_to.active_element == key
    key.send_keys("not-the-key", Keys.ENTER)
    error = wait(page, lambda d: (e := by_id(d, "key-error")).text and e)
    # Words for a person, not the 401's advice to HTTP clients.
    assert "That key was not accepted" in error.text and "whole key" in error.text
    assert "Authorization" not in error.text and "Bearer" not in error.text
    assert key.get_attribute("aria-invalid") == "true"
    assert page.execute_script("return sessionStorage.length") == 0
    screenshot(page, tmp_path / "key-wrong.png", full=False)

    key.clear()
    key.send_keys(API_KEY, Keys.ENTER)
    visible(page, "tabs")
    visible(page, "view-import")
    assert "Using your API key" in text_of(page, "key-state")
    assert page.execute_script("return Object.values(sessionStorage)") == [API_KEY]
    assert page.execute_script("return localStorage.length") == 0
    page.refresh()  # the same tab: still signed in, no form
    visible(page, "view-import")
    assert not by_id(page, "view-key").is_displayed()
    screenshot(page, tmp_path / "signed-in.png", full=False)


def test_import_the_sample_workbook(page: webdriver.Chrome, stack: Stack, tmp_path: Path) -> None:
    open_page(page, stack)
    upload_and_preview(page, DATA / "Sample_Employee_data_xlsx.xlsx")
    assert "Sample_Employee_data_xlsx.xlsx" in text_of(page, "preview-file")
    assert by_id(page, "sheet-option").is_displayed()
    assert Select(by_id(page, "sheet-select")).first_selected_option.get_attribute("value") == "uk-500"
    assert by_id(page, "header-row").get_attribute("value") == "1"
    # Every field found by its header: all ten marked mapped, Start enabled.
    mapped = page.find_elements(By.CSS_SELECTOR, "#field-status li.mapped")
    assert sorted(li.get_attribute("data-field") or "" for li in mapped) == sorted(FIELDS)
    assert Select(by_id(page, "map-I")).first_selected_option.get_attribute("value") == "email"
    assert unlabelled(page) == []
    screenshot(page, tmp_path / "import-preview.png")

    job = start_and_finish(page, stack)
    assert job["rows_inserted"] == 500 and job["rows_unchanged"] == 1500 and job["rows_invalid"] == 0
    assert_summary_matches(page, job)
    assert "Done in" in text_of(page, "job-state")
    assert not by_id(page, "job-downloads").is_displayed()  # nothing was rejected
    screenshot(page, tmp_path / "import-summary.png")

    # Recent imports lists it; opening it shows the same summary.
    by_id(page, "tabs").find_element(By.CSS_SELECTOR, '[data-view="jobs"]').click()
    row = wait(page, lambda d: d.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-job="{job["job_id"]}"]'))
    assert "completed" in row.text and "500" in row.text
    screenshot(page, tmp_path / "recent-imports.png", full=False)
    row.find_element(By.CSS_SELECTOR, "button").click()
    wait(page, lambda d: by_id(d, "job-state").get_attribute("data-status") == "completed")
    assert_summary_matches(page, job)


def test_import_a_csv_without_header_mapped_by_hand(page: webdriver.Chrome, stack: Stack, tmp_path: Path) -> None:
    open_page(page, stack)
    upload_and_preview(page, DATA / "uk-500.csv")
    # Its first row holds an email: a file without a header row, its columns named by letter only.
    assert by_id(page, "header-row").get_attribute("value") == "0"
    assert not by_id(page, "sheet-option").is_displayed()  # a CSV has no sheets
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, 'label[for="map-A"]').text.strip() == "A Column A")
    by_hand = {"A": "first_name", "B": "last_name", "C": "company_name", "D": "address", "E": "city"}
    by_hand |= {"F": "county", "G": "postal", "H": "phone", "J": "email", "K": "web"}
    # Only the email is required, and the values found it (J): Start is enabled before any choice.
    assert not page.find_elements(By.CSS_SELECTOR, "#field-status li.missing")
    wait(page, lambda d: by_id(d, "start-import").is_enabled())
    for letter, field in by_hand.items():
        select = by_id(page, f"map-{letter}")
        page.execute_script("arguments[0].scrollIntoView({block: 'center'})", select)  # clear of the Start bar
        select.click()  # as a person would: focus it, then choose
        Select(select).select_by_value(field)
        marked = page.find_elements(By.CSS_SELECTOR, f'#field-status li.mapped[data-field="{field}"]')
        assert marked and f"column {letter}" in marked[0].text, field
    assert Select(by_id(page, "map-I")).first_selected_option.get_attribute("value") == ""
    assert by_id(page, "start-import").is_enabled()
    screenshot(page, tmp_path / "mapped-by-hand.png")

    job = start_and_finish(page, stack)
    # It runs after the sample workbook, which holds the same people (same emails): the counters are
    # whatever the job really has; the page must show exactly those.
    # (1,500 rows: the 500 people three times; the phone in H is not the sample's, so they change.)
    assert job["rows_read"] == 1500 and job["header_row"] == 0 and job["rows_invalid"] == 0
    # The page names every field: the ones without a column as null (left out), so no suggestion fills them.
    unmapped = dict.fromkeys([*CUSTOMER_FIELDS, "full_name"])
    assert job["mapping"] == unmapped | {field: letter for letter, field in by_hand.items()}
    assert job["rows_inserted"] == 0 and job["rows_updated"] + job["rows_unchanged"] == 1500
    assert_summary_matches(page, job)
    screenshot(page, tmp_path / "csv-summary.png")


def test_the_template_downloads_and_the_preview_follows_a_sheet_change(
    page: webdriver.Chrome, stack: Stack, tmp_path: Path
) -> None:
    open_page(page, stack)
    by_id(page, "template-xlsx").click()
    template = wait_download(stack.downloads, "customers-template.xlsx")
    book = openpyxl.load_workbook(template, read_only=True)
    first = next(iter(book.worksheets[0].iter_rows(max_row=1, values_only=True)))
    assert [cell for cell in first if cell] == list(CUSTOMER_FIELDS)

    # The data on a second sheet, a sheet of notes first: switching sheets reads the preview again.
    path = write_two_sheets(tmp_path / "two-sheets.xlsx", customers(3, domain="sheets.example"), FIELDS)
    upload_and_preview(page, path)
    sheet = Select(by_id(page, "sheet-select"))
    assert [option.get_attribute("value") for option in sheet.options] == ["Notes", "People"]
    email_column = "ABCDEFGHIJ"[list(FIELDS).index("email")]

    def mapped_to_email(d: webdriver.Chrome) -> bool:
        found = d.find_elements(By.ID, f"map-{email_column}")
        return bool(found) and Select(found[0]).first_selected_option.get_attribute("value") == "email"

    for name in ("People", "Notes", "People"):
        Select(by_id(page, "sheet-select")).select_by_value(name)
        if name == "People":
            wait(page, mapped_to_email)
            wait(page, lambda d: not d.find_elements(By.CSS_SELECTOR, "#field-status li.missing"))
            wait(page, lambda d: by_id(d, "start-import").is_enabled())
        else:
            wait(page, lambda d: not mapped_to_email(d))
            wait(
                page,
                lambda d: (
                    "email"
                    in {
                        li.get_attribute("data-field")
                        for li in d.find_elements(By.CSS_SELECTOR, "#field-status li.missing")
                    }
                ),
            )
            assert not by_id(page, "start-import").is_enabled()
    screenshot(page, tmp_path / "sheet-changed.png")
    job = start_and_finish(page, stack)
    assert job["sheet"] == "People" and job["rows_inserted"] == 3, job


def test_bad_rows_are_listed_and_the_rejected_rows_download(
    page: webdriver.Chrome, stack: Stack, tmp_path: Path
) -> None:
    rows = customers(40, domain="rejects.example")
    rows[2][8] = "not-an-email"  # row 4 as the file shows it (the header is row 1)
    rows[9][0] = "F" * 101  # row 11: a first name too long
    rows[30][8] = "also@bad"  # row 32
    source = tmp_path / "with-bad-rows.csv"
    source.write_bytes(csv_bytes(rows))
    open_page(page, stack)
    upload_and_preview(page, source)
    job = start_and_finish(page, stack)
    assert (job["rows_inserted"], job["rows_invalid"]) == (37, 3)
    assert_summary_matches(page, job)
    visible(page, "job-downloads")
    table = visible(page, "job-errors")
    shown_rows = [td.text for td in table.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")]
    assert shown_rows == [str(e["row"]) for e in job["errors"]] and {"4", "11", "32"} <= set(shown_rows)
    assert "email" in table.text
    screenshot(page, tmp_path / "rejected-summary.png")

    page.find_element(By.CSS_SELECTOR, '[data-download="rejected-xlsx"]').click()
    name = f"job-{job['job_id']}-rejected.xlsx"
    path = wait_download(stack.downloads, name)
    wait(page, lambda d: name in text_of(d, "download-state"))
    sheet = openpyxl.load_workbook(path, read_only=True).active
    assert sheet is not None
    got = list(sheet.iter_rows(values_only=True))
    assert got[0][-1] == "errors" and len(got) == 4
    assert {r[8] for r in got[1:]} == {"not-an-email", "person9@rejects.example", "also@bad"}

    page.find_element(By.CSS_SELECTOR, '[data-download="errors-csv"]').click()
    errors = wait_download(stack.downloads, f"job-{job['job_id']}-errors.csv")
    listed = list(csv.reader(io.StringIO(errors.read_text())))
    assert listed[0] == ["row", "column", "field", "value", "message"]
    assert {r[0] for r in listed[1:]} == {"4", "11", "32"}


def test_progress_while_a_larger_file_imports(page: webdriver.Chrome, stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "sixty-thousand.csv"
    source.write_bytes(csv_bytes(customers(60_000, domain="progress.example")))
    open_page(page, stack)
    upload_and_preview(page, source)
    by_id(page, "start-import").click()
    # Mid-way (the worker commits 500 rows a batch here): the bar, rows done, rows/s, time left.
    rate = wait(page, lambda d: "left" in (e := by_id(d, "job-rate")).text and e, 60)
    assert re.search(r"[\d,]+ of about [\d,]+ rows \(\d+%\) · [\d,]+ rows/s · about .+ left", rate.text), rate.text
    value = float(by_id(page, "job-progress").get_attribute("value") or 0)
    assert 0 < value < 100
    assert 0 < counters_on_page(page)["rows_read"] < 60_000
    screenshot(page, tmp_path / "import-progress.png", full=False)
    job = start_and_finish(page, stack)
    assert (job["rows_read"], job["rows_inserted"]) == (60_000, 60_000)
    assert_summary_matches(page, job)


def _row(page: webdriver.Chrome, customer_id: int) -> WebElement:
    return wait(page, lambda d: d.find_element(By.CSS_SELECTOR, f'#customers-body tr[data-id="{customer_id}"]'))


def _search(page: webdriver.Chrome, text: str) -> None:
    box = by_id(page, "search-input")
    box.clear()
    box.send_keys(text, Keys.ENTER)
    wait(page, lambda d: text in text_of(d, "customers-state") or "No customer" in text_of(d, "customers-state"))


def _dialog_field(page: webdriver.Chrome, name: str, value: str | None = None) -> WebElement:
    field = by_id(page, f"customer-{name}")
    if value is not None:
        field.clear()
        field.send_keys(value)
    return field


def test_customers_search_pages_edit_and_a_conflict(
    page: webdriver.Chrome, stack: Stack, provoked: set[int], tmp_path: Path
) -> None:
    provoked.update({412, 409, 401})  # 401: the second tab asks before it has the key
    open_page(page, stack, "customers")
    # The first page, the next one and back.
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#customers-body tr")) == 20)
    assert text_of(page, "page-number") == "Page 1" and not by_id(page, "page-prev").is_enabled()
    assert unlabelled(page) == []
    first = page.find_element(By.CSS_SELECTOR, "#customers-body tr").get_attribute("data-id")
    by_id(page, "page-next").click()
    wait(page, lambda d: text_of(d, "page-number") == "Page 2")
    second = page.find_element(By.CSS_SELECTOR, "#customers-body tr").get_attribute("data-id")
    assert second != first and by_id(page, "page-prev").is_enabled()
    by_id(page, "page-prev").click()
    wait(page, lambda d: text_of(d, "page-number") == "Page 1")
    assert page.find_element(By.CSS_SELECTOR, "#customers-body tr").get_attribute("data-id") == first
    screenshot(page, tmp_path / "customers.png")

    # Search, open, edit: the list shows the new value.
    _search(page, "atomkiewicz")
    _, found = stack.api("GET", "/customers?q=atomkiewicz")
    (customer,) = found["items"]
    _row(page, customer["id"]).find_element(By.CSS_SELECTOR, "button").click()
    dialog = visible(page, "customer-dialog")
    assert _dialog_field(page, "email").get_attribute("value") == customer["email"]
    assert page.switch_to.active_element == _dialog_field(page, "first_name")
    assert unlabelled(page) == []
    _dialog_field(page, "city", "Canterbury West")
    by_id(page, "customer-save").click()
    wait(page, lambda d: not by_id(d, "customer-dialog").is_displayed())
    wait(page, lambda d: "Canterbury West" in _row(d, customer["id"]).text)
    _, saved = stack.api("GET", f"/customers/{customer['id']}")
    assert saved["city"] == "Canterbury West" and saved["version"] == customer["version"] + 1

    # Open it again; meanwhile it is changed in a second tab (signed in on its own: the key is kept
    # per tab).
    _row(page, customer["id"]).find_element(By.CSS_SELECTOR, "button").click()
    visible(page, "customer-dialog")
    first_tab = page.current_window_handle
    page.switch_to.new_window("tab")
    open_page(page, stack, "customers")
    _search(page, "atomkiewicz")
    _row(page, customer["id"]).find_element(By.CSS_SELECTOR, "button").click()
    visible(page, "customer-dialog")
    _dialog_field(page, "city", "Folkestone")
    _dialog_field(page, "phone", "01303-000111")
    by_id(page, "customer-save").click()
    wait(page, lambda d: not by_id(d, "customer-dialog").is_displayed())
    wait(page, lambda d: "Folkestone" in _row(d, customer["id"]).text)
    screenshot(page, tmp_path / "second-tab.png", full=False)
    page.close()
    page.switch_to.window(first_tab)
    _, meanwhile = stack.api("GET", f"/customers/{customer['id']}")
    assert (meanwhile["city"], meanwhile["version"]) == ("Folkestone", saved["version"] + 1)
    _dialog_field(page, "city", "Dover")
    by_id(page, "customer-save").click()
    notice = visible(page, "customer-conflict")
    assert "changed since you opened it" in notice.text
    assert "Folkestone" in notice.text and "01303-000111" in notice.text  # the current values
    # Both changed the city: mine stays, theirs beside it; the phone only they changed is taken.
    assert _dialog_field(page, "city").get_attribute("value") == "Dover"
    assert "Now: Folkestone" in text_of(page, "customer-city-now")
    assert _dialog_field(page, "phone").get_attribute("value") == "01303-000111"
    page.set_window_size(WIDE[0], 1200)  # tall enough for the whole dialog
    screenshot(page, tmp_path / "edit-conflict.png", full=False)
    dialog.screenshot(str(tmp_path / "edit-conflict-dialog.png"))
    page.set_window_size(*WIDE)
    by_id(page, "customer-save").click()  # "Save again": a deliberate overwrite of the new version
    wait(page, lambda d: not by_id(d, "customer-dialog").is_displayed())
    _, final = stack.api("GET", f"/customers/{customer['id']}")
    assert (final["city"], final["phone"], final["version"]) == ("Dover", "01303-000111", saved["version"] + 2)

    # Create one; an email in use is refused next to the email field; delete with a confirmation.
    by_id(page, "customer-new").click()
    visible(page, "customer-dialog")
    _dialog_field(page, "first_name", "Ada")
    _dialog_field(page, "last_name", "Lovelace")
    _dialog_field(page, "email", "ada@analytical.example")
    by_id(page, "customer-save").click()
    wait(page, lambda d: not by_id(d, "customer-dialog").is_displayed())
    wait(page, lambda d: "ada@analytical.example" in text_of(d, "customers-body"))
    _, found = stack.api("GET", "/customers?q=ada@analytical.example")
    (ada,) = found["items"]
    by_id(page, "customer-new").click()
    _dialog_field(page, "last_name", "Byron")
    _dialog_field(page, "email", "ADA@analytical.example")
    by_id(page, "customer-save").click()
    wait(page, lambda d: text_of(d, "customer-email-error"))
    assert _dialog_field(page, "email").get_attribute("aria-invalid") == "true"
    assert text_of(page, "customer-error")  # the problem's detail under the form
    screenshot(page, tmp_path / "create-conflict.png", full=False)
    by_id(page, "customer-close").click()

    _row(page, ada["id"]).find_element(By.CSS_SELECTOR, "button").click()
    visible(page, "customer-dialog")
    by_id(page, "customer-delete").click()
    question = visible(page, "delete-confirm")
    assert "Ada Lovelace" in question.text and "cannot be undone" in question.text
    assert page.switch_to.active_element == by_id(page, "delete-no")  # the safe choice has the focus
    screenshot(page, tmp_path / "delete-confirm.png", full=False)
    by_id(page, "delete-yes").click()
    wait(page, lambda d: not by_id(d, "customer-dialog").is_displayed())
    wait(page, lambda d: "No customer matches" in text_of(d, "customers-state"))
    status, _ = stack.api("GET", f"/customers/{ada['id']}")
    assert status == 404

    # Export the current search.
    _search(page, "smith")
    by_id(page, "customers-export").click()

    def is_export(p: Path) -> bool:
        return p.suffix == ".xlsx" and "customers" in p.name and "template" not in p.name

    wait(page, lambda d: any(is_export(p) for p in stack.downloads.iterdir()))
    export = next(p for p in stack.downloads.iterdir() if is_export(p))
    wait_download(stack.downloads, export.name)
    exported = list(openpyxl.load_workbook(export, read_only=True).active.iter_rows(values_only=True))
    _, smiths = stack.api("GET", "/customers?q=smith&limit=1000")
    assert len(exported) - 1 == len(smiths["items"]) > 0


def test_the_page_at_phone_width(page: webdriver.Chrome, stack: Stack, tmp_path: Path) -> None:
    page.set_window_size(*PHONE)
    open_page(page, stack)
    width = page.execute_script("return window.innerWidth")
    assert width <= PHONE[0]

    def no_sideways_scroll() -> None:
        assert page.execute_script("return document.documentElement.scrollWidth") <= width

    screenshot(page, tmp_path / "phone-start.png", full=False)
    no_sideways_scroll()
    upload_and_preview(page, DATA / "Sample_Employee_data_xlsx.xlsx")
    no_sideways_scroll()
    screenshot(page, tmp_path / "phone-preview.png", full=False)
    screenshot(page, tmp_path / "phone-preview-whole.png")
    job = start_and_finish(page, stack)
    assert job["rows_unchanged"] + job["rows_updated"] == 2000  # the second time: nothing new
    assert_summary_matches(page, job)
    no_sideways_scroll()
    screenshot(page, tmp_path / "phone-summary.png")

    page.find_element(By.CSS_SELECTOR, '#tabs [data-view="customers"]').click()
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#customers-body tr")) == 20)
    no_sideways_scroll()
    screenshot(page, tmp_path / "phone-customers.png", full=False)
    page.find_element(By.CSS_SELECTOR, "#customers-body tr button").click()
    visible(page, "customer-dialog")
    screenshot(page, tmp_path / "phone-edit.png", full=False)
    by_id(page, "customer-close").send_keys(Keys.ENTER)  # the keyboard closes it too
    wait(page, lambda d: not by_id(d, "customer-dialog").is_displayed())


def test_with_no_keys_configured_the_page_asks_for_none(
    browser: webdriver.Chrome, stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = Service("gateway", service_env(settings, PORT=port, HOST="127.0.0.1"), tmp_path, "open-gateway")
    try:
        wait_http_ready(base, gateway)
        browser.set_window_size(*WIDE)
        browser.get("about:blank")
        browser.get_log("performance")
        browser.get_log("browser")
        browser.get(f"{base}/#customers")
        visible(browser, "view-customers")
        assert not by_id(browser, "view-key").is_displayed()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#customers-body tr"))
        wait(browser, lambda d: "needs no API key" in text_of(d, "key-state-text"))
        screenshot(browser, tmp_path / "no-keys.png", full=False)
        elsewhere = [u for u in requested_urls(browser) if u.startswith("http") and not u.startswith(base + "/")]
        assert elsewhere == []
        assert console_errors(browser, set()) == []
    finally:
        browser.get("about:blank")
        gateway.stop()

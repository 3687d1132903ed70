"""Files as customer tools export them (tests/data/exports), uploaded as they are, through the app and a real
worker against MariaDB and Redis: each imports with the preview's suggestions; report footers are skipped
with a warning; cells are cleaned as DESIGN says (text prefix, multi-value cells, formulas without values)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.support.api import form
from tests.support.header_corpus import EXPORTS, expectations
from tests.support.jobs import run_burst_worker

pytestmark = pytest.mark.usefixtures("clean")


def counters(job: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (job["rows_read"], job["rows_inserted"], job["rows_updated"], job["rows_unchanged"], job["rows_invalid"])


async def upload_and_import(client: TestClient, settings: Settings, filename: str, data: bytes) -> dict[str, Any]:
    """Upload as a new user does (no options), run a worker until the queue is empty: the job as it ended."""
    response = await client.post("/upload", data=form(filename, data))
    assert response.status == 202, await response.text()
    await run_burst_worker(settings)
    return dict(await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json())


async def customer(client: TestClient, email: str) -> dict[str, Any]:
    found = await (await client.get("/customers", params={"q": email})).json()
    assert found["items"], email
    return dict(found["items"][0])


async def test_a_salesforce_report_skips_its_title_block_and_footer(client: TestClient, settings: Settings) -> None:
    job = await upload_and_import(
        client, settings, "report.xlsx", (EXPORTS / "salesforce-report-formatted.xlsx").read_bytes()
    )
    assert job["status"] == "completed", job
    assert job["header_row"] == 7
    # 32 customers; "Total (32)" and the two footer lines are neither rows read nor invalid rows.
    assert counters(job) == (32, 32, 0, 0, 0)
    footer = [w for w in job["warnings"] if "not customers" in w]
    assert len(footer) == 1 and "'Total (32)'" in footer[0] and "Confidential" in footer[0], job["warnings"]
    rose = await customer(client, "rose.0@example.com")
    assert (rose["first_name"], rose["city"], rose["county"], rose["postal"]) == ("Rose", "Austin", "TX", "78767")


@pytest.mark.parametrize("name", sorted(expectations()))
async def test_each_export_imports_as_uploaded(client: TestClient, settings: Settings, name: str) -> None:
    data = (EXPORTS / name).read_bytes()
    job = await upload_and_import(client, settings, name, data)
    assert job["status"] == "completed", job
    assert job["rows_invalid"] == 0, job
    assert job["rows_inserted"] == job["rows_read"] > 0


async def test_cells_are_cleaned_as_tools_write_them(client: TestClient, settings: Settings) -> None:
    # Shopify: Excel's text prefix on postcodes and phones goes; the second address line joins the first.
    job = await upload_and_import(client, settings, "s.csv", (EXPORTS / "shopify-customers-new.csv").read_bytes())
    assert job["status"] == "completed" and job["rows_invalid"] == 0, job
    brandon = await customer(client, "brandon.m@example.org")
    assert brandon["postal"] == "05401" and brandon["phone"] is None  # his phone is on the address only
    assert brandon["address"] == "44 Main St, Apt 2B" and brandon["country"] == "US"
    russell = await customer(client, "russel.winfield@example.com")
    assert (russell["postal"], russell["phone"]) == ("M5C 1N7", "+16135550142")
    # Google Contacts: of several values in a cell the first is kept, and the job says which cells; a
    # phone with an extension fits.
    job = await upload_and_import(client, settings, "g.csv", (EXPORTS / "google-contacts.csv").read_bytes())
    assert job["status"] == "completed" and job["rows_invalid"] == 0, job
    ada, alan, grace = [await customer(client, e) for e in ("ada@example.org", "alan@example.org", "grace@example.com")]
    assert ada["phone"] == "+44 20 7946 0018"
    assert grace["phone"] == "(202) 555-0111 ext. 42" and grace["address"] == "1 Navy Way, Suite 100"
    assert alan["company_name"] == "University of Manchester" and alan["city"] == "Manchester"
    several = [w for w in job["warnings"] if "several values" in w]
    assert len(several) == 1 and "2 cell(s)" in several[0], job["warnings"]
    assert "row 2 'Phone 1 - Value'" in several[0] and "row 3 'E-mail 1 - Value'" in several[0]
    # Outlook (German, cp1252, `;`): the business columns, accents intact.
    job = await upload_and_import(client, settings, "o.csv", (EXPORTS / "outlook-de-windows.csv").read_bytes())
    assert job["status"] == "completed" and job["rows_invalid"] == 0, job
    anja = await customer(client, "anja@baeckerei-gross.example.de")
    assert (anja["last_name"], anja["city"], anja["postal"]) == ("Groß", "München", "80331")
    assert anja["address"] == "Hauptstr. 3, Hinterhaus" and anja["company_name"] == "Bäckerei Groß"


def scripted_workbook(path: Path) -> Path:
    """A workbook as a script writes it (openpyxl): formulas with no saved value."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["First Name", "Last Name", "Email", "Company"])
    sheet.append(["Ada", "Lovelace", "ada@example.org", '=UPPER(B2)&" LTD"'])
    sheet.append(["Alan", "Turing", "alan@example.org", "Bletchley Park"])
    sheet.append(["Grace", "Hopper", "grace@example.com", "=B4"])
    book.save(path)
    return path


async def test_formulas_without_a_saved_value_read_as_empty_and_are_named(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    """Issue 18 defect 5: a formula with no cached value imported as empty without a word."""
    data = scripted_workbook(tmp_path / "scripted.xlsx").read_bytes()
    preview = (await (await client.post("/upload?preview=true", data=form("s.xlsx", data))).json())["preview"]
    assert any("(D2, D4)" in w for w in preview["warnings"]), preview["warnings"]  # said before it starts
    job = await upload_and_import(client, settings, "scripted.xlsx", data)
    assert job["status"] == "completed" and counters(job) == (3, 3, 0, 0, 0), job
    formulas = [w for w in job["warnings"] if "formula" in w]
    assert len(formulas) == 1 and "2 formula cell(s)" in formulas[0] and "(D2, D4)" in formulas[0], job["warnings"]
    assert (await customer(client, "ada@example.org"))["company_name"] is None
    assert (await customer(client, "alan@example.org"))["company_name"] == "Bletchley Park"


async def test_phones_in_international_format_with_a_default_region(client: TestClient, settings: Settings) -> None:
    """PHONE_DEFAULT_REGION: the worker writes phones in international format (libphonenumber)."""
    data = (EXPORTS / "outlook-com.csv").read_bytes()
    response = await client.post("/upload", data=form("o.csv", data))
    assert response.status == 202, await response.text()
    await run_burst_worker(replace(settings, phone_default_region="GB"))
    olivia, noah = [await customer(client, e) for e in ("olivia.brown@example.com", "noah@example.co.uk")]
    assert (olivia["phone"], noah["phone"]) == ("+1 425-555-0100", "+44 20 7946 0958")
    # Without it, as written.
    job = await upload_and_import(client, settings, "o.csv", data.replace(b"020 7946 0958", b"020 7946 0959"))
    assert job["status"] == "completed", job
    assert (await customer(client, "noah@example.co.uk"))["phone"] == "020 7946 0959"

"""Files as people have them: no header row, other column names, other encodings, other sheets, title
rows; previews and mappings; the fix-and-retry loop. Real app, real worker, real MariaDB and Redis."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.conftest import DATA
from tests.support.api import form
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import HEADER, csv_bytes, customers, workbook_with_formulas_merges_and_1904_dates

pytestmark = pytest.mark.usefixtures("clean")
UK_500_BY_LETTER = {
    "first_name": "A",
    "last_name": "B",
    "company_name": "C",
    "address": "D",
    "city": "E",
    "county": "F",
    "postal": "G",
    "phone": "H",  # phone1; I is phone2
    "email": "J",
    "web": "K",
}


def counters(job: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (job["rows_read"], job["rows_inserted"], job["rows_updated"], job["rows_unchanged"], job["rows_invalid"])


async def finished(client: TestClient, settings: Settings, job_id: str) -> dict[str, Any]:
    await run_burst_worker(settings)
    return dict(await (await client.get(f"/jobs/{job_id}")).json())


async def upload_and_import(
    client: TestClient, settings: Settings, filename: str, data: bytes, **fields: str
) -> dict[str, Any]:
    response = await client.post("/upload", data=form(filename, data, **fields))
    assert response.status == 202, await response.text()
    return await finished(client, settings, (await response.json())["job_id"])


async def queued(client: TestClient, settings: Settings) -> int:
    from gateway.http.keys import REDIS

    return int(await client.app[REDIS].zcard(settings.queue_name))


async def test_uk_500_imports_in_one_call_with_a_mapping_by_letters(client: TestClient, settings: Settings) -> None:
    job = await upload_and_import(
        client,
        settings,
        "uk-500.csv",
        (DATA / "uk-500.csv").read_bytes(),
        header_row="0",
        mapping=json.dumps(UK_500_BY_LETTER),
    )
    assert job["status"] == "completed", job
    assert counters(job) == (1500, 500, 0, 1000, 0)
    assert job["header_row"] == 0 and job["mapping"] == UK_500_BY_LETTER
    found = await (await client.get("/customers", params={"q": "atomkiewicz@hotmail.com"})).json()
    assert found["items"][0]["phone"] == "01835-703597"  # phone1, not phone2


async def test_preview_then_start(client: TestClient, settings: Settings) -> None:
    response = await client.post("/upload?preview=true", data=form("uk-500.csv", (DATA / "uk-500.csv").read_bytes()))
    assert response.status == 201, await response.text()
    job = await response.json()
    assert job["status"] == "uploaded" and response.headers["Location"] == f"/jobs/{job['job_id']}"
    preview = job["preview"]
    assert preview["kind"] == "csv" and preview["encoding"] == "utf-8"
    columns = preview["columns"]
    assert [c["letter"] for c in columns] == list("ABCDEFGHIJK")
    # No header_row given: the first row holds an email, so it is data and the file has no header row
    # (issue 18 defect 3: it used to be taken for the header, and the first customer was lost).
    assert preview["header_row"] == 0
    assert columns[0]["header"] is None and columns[0]["samples"][0] == "Aleshia" and columns[0]["index"] == 1
    # The values say what some columns hold: an email-looking column is email, and so on.
    by_field = {c["suggested_field"]: (c["letter"], c["reason"]) for c in columns if c["suggested_field"]}
    assert by_field["email"] == ("J", "values") and by_field["web"] == ("K", "values")
    assert by_field["phone"] == ("H", "values") and by_field["postal"] == ("G", "values")
    assert preview["rows"][0] == {"row": 1, "values": preview["rows"][0]["values"]}
    assert preview["rows"][0]["values"][0] == "Aleshia" and len(preview["rows"]) == 20
    assert preview["unmapped_required"] == []
    assert await queued(client, settings) == 0  # nothing imported or queued yet
    # Start it with the mapping: queued, imported.
    started = await client.post(f"/jobs/{job['job_id']}/start", json={"header_row": 0, "mapping": UK_500_BY_LETTER})
    assert started.status == 202, await started.text()
    assert (await started.json())["status"] == "queued"
    done = await finished(client, settings, job["job_id"])
    assert counters(done) == (1500, 500, 0, 1000, 0)
    # A job that is no preview any more cannot be started again.
    again = await client.post(f"/jobs/{job['job_id']}/start", json={})
    assert again.status == 409


async def test_a_preview_suggests_fields_from_headers_and_aliases(client: TestClient) -> None:
    header = ["Forename", "Surname", "Organisation", "Street", "Town", "Region", "Postcode", "Tel", "E-mail", "Website"]
    response = await client.post("/upload?preview=true", data=form("c.csv", csv_bytes(customers(3), header)))
    preview = (await response.json())["preview"]
    assert [c["suggested_field"] for c in preview["columns"]] == HEADER
    assert preview["unmapped_required"] == [] and preview["header_row"] == 1
    assert preview["mapping"]["phone"] == "Tel"


@pytest.mark.parametrize(
    ("mapping", "field", "fragment"),
    [
        ({**UK_500_BY_LETTER, "phone": "Z"}, "mapping.phone", "does not exist"),
        ({**UK_500_BY_LETTER, "phone": "J"}, "mapping.email", "already mapped to phone"),
        ({**UK_500_BY_LETTER, "email": None}, "mapping.email", "Required"),  # only the email is required
        ({**UK_500_BY_LETTER, "age": "L"}, "mapping.age", "Not a customer field"),
    ],
)
async def test_a_mapping_that_does_not_fit_is_422_naming_the_field(
    client: TestClient, settings: Settings, mapping: dict[str, str], field: str, fragment: str
) -> None:
    data = (DATA / "uk-500.csv").read_bytes()
    response = await client.post("/upload", data=form("uk.csv", data, header_row="0", mapping=json.dumps(mapping)))
    assert response.status == 422, await response.text()
    body = await response.json()
    assert any(e["field"] == field and fragment in e["message"] for e in body["errors"]), body["errors"]
    assert await queued(client, settings) == 0
    # The same through a preview's start.
    job = await (await client.post("/upload?preview=true", data=form("uk.csv", data))).json()
    response = await client.post(f"/jobs/{job['job_id']}/start", json={"header_row": 0, "mapping": mapping})
    assert response.status == 422
    assert any(e["field"] == field for e in (await response.json())["errors"])


async def test_missing_columns_answer_with_the_preview(client: TestClient) -> None:
    response = await client.post("/upload", data=form("people.csv", b"Vorname,Nachname,Notes\nAda,Lovelace,x\n"))
    assert response.status == 422
    body = await response.json()
    assert body["missing_columns"] == ["email"]
    assert [c["suggested_field"] for c in body["preview"]["columns"]] == ["first_name", "last_name", None]


async def test_a_headerless_file_imports_as_suggested_from_its_first_row(
    client: TestClient, settings: Settings
) -> None:
    """Issue 18 defect 3: uk-500.csv has no header row; uploaded as it is, its first row is data (an email in
    it) and every row imports, the first customer too."""
    job = await upload_and_import(client, settings, "uk-500.csv", (DATA / "uk-500.csv").read_bytes())
    assert job["status"] == "completed", job
    assert job["header_row"] == 0
    assert counters(job) == (1500, 500, 0, 1000, 0)
    found = await (await client.get("/customers", params={"q": "atomkiewicz@hotmail.com"})).json()
    assert found["items"][0]["phone"] == "01835-703597" and found["items"][0]["postal"] == "CT2 7PP"
    # Previewed, then started as suggested (no options): the same rows, the first one too.
    response = await client.post("/upload?preview=true", data=form("uk-500.csv", (DATA / "uk-500.csv").read_bytes()))
    job = await response.json()
    assert job["preview"]["header_row"] == 0 and job["preview"]["rows"][0]["row"] == 1
    started = await client.post(f"/jobs/{job['job_id']}/start", json={})
    assert started.status == 202, await started.text()
    job = await finished(client, settings, job["job_id"])
    assert job["status"] == "completed" and counters(job) == (1500, 0, 0, 1500, 0), job


async def test_a_header_mapping_by_text(client: TestClient, settings: Settings) -> None:
    header = [*HEADER[:7], "Reach me on", *HEADER[8:]]
    data = csv_bytes(customers(5), header)
    response = await client.post("/upload?preview=true", data=form("c.csv", data))
    columns = (await response.json())["preview"]["columns"]
    # No rule names the header; its values are phone numbers.
    assert (columns[7]["header"], columns[7]["suggested_field"], columns[7]["reason"]) == (
        "Reach me on",
        "phone",
        "values",
    )
    job = await upload_and_import(client, settings, "c.csv", data, mapping=json.dumps({"phone": "Reach me on"}))
    assert counters(job) == (5, 5, 0, 0, 0) and job["warnings"] == []


async def test_a_cp1252_csv_is_detected(client: TestClient, settings: Settings) -> None:
    rows = customers(3)
    rows[0][0], rows[0][4], rows[1][2] = "José", "Zürich", "Café € Ltd"
    data = csv_bytes(rows).decode().encode("cp1252")
    job = await upload_and_import(client, settings, "excel.csv", data)
    assert job["status"] == "completed" and job["encoding"] == "cp1252", job
    found = await (await client.get("/customers", params={"q": "José"})).json()
    assert found["items"][0]["city"] == "Zürich"
    found = await (await client.get("/customers", params={"q": "Café € Ltd"})).json()
    assert len(found["items"]) == 1
    # Or said outright.
    job = await upload_and_import(client, settings, "excel.csv", data, encoding="latin-1")
    assert job["encoding"] == "iso8859-1" and job["rows_unchanged"] == 2 and job["rows_updated"] == 1


async def test_a_utf16_csv_from_excel_unicode_text(client: TestClient, settings: Settings) -> None:
    rows = customers(4)
    rows[2][0] = "Zoë"
    text = "\t".join(HEADER) + "\r\n" + "".join("\t".join(r) + "\r\n" for r in rows)
    job = await upload_and_import(client, settings, "unicode.txt", text.encode("utf-16"))
    assert job["status"] == "completed" and job["encoding"] == "utf-16", job
    assert counters(job) == (4, 4, 0, 0, 0)
    found = await (await client.get("/customers", params={"q": "Zoë"})).json()
    assert len(found["items"]) == 1


async def test_undecodable_bytes_are_an_error_naming_the_row(client: TestClient, settings: Settings) -> None:
    rows = customers(300)
    data = bytearray(csv_bytes(rows))
    data[data.index(b"First250,")] = 0xFF  # row 252 as a spreadsheet shows it (header is row 1)
    job = await upload_and_import(client, settings, "bad.csv", bytes(data), encoding="utf-8")
    assert job["status"] == "failed"
    assert "row 252" in job["error"] and "utf-8" in job["error"].lower()
    # Within the first rows the upload itself is refused.
    data = bytearray(csv_bytes(customers(5)))
    data[data.index(b"First2,")] = 0xFF
    response = await client.post("/upload", data=form("bad.csv", bytes(data), encoding="utf-8"))
    assert response.status == 422 and "row 4" in (await response.json())["detail"]


def two_sheet_workbook(path: Path) -> Path:
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "Notes"
    notes.append(["This workbook holds our customers on the second sheet."])
    hidden = book.create_sheet("Old")
    hidden.sheet_state = "hidden"
    hidden.append(["nothing here"])
    sheet = book.create_sheet("Customers")
    sheet.append(["Customer list, November 2026"])
    sheet.append([])
    sheet.append(HEADER)
    for row in customers(6):
        sheet.append(row)
    book.save(path)
    return path


async def test_data_on_another_sheet_under_a_title_row(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    """Issue 18 defect 4: no `sheet` given, the sheet that fits is read (the first one is notes); the others
    are listed, the hidden one marked."""
    data = two_sheet_workbook(tmp_path / "book.xlsx").read_bytes()
    response = await client.post("/upload?preview=true", data=form("book.xlsx", data))
    preview = (await response.json())["preview"]
    assert [(s["name"], s["hidden"], s["selected"]) for s in preview["sheets"]] == [
        ("Notes", False, False),
        ("Old", True, False),
        ("Customers", False, True),
    ]
    assert preview["sheet"] == "Customers" and preview["header_row"] == 3 and preview["unmapped_required"] == []
    job = await upload_and_import(client, settings, "book.xlsx", data)
    assert job["status"] == "completed", job
    assert counters(job) == (6, 6, 0, 0, 0) and job["sheet"] == "Customers" and job["header_row"] == 3
    # Named, a sheet is read even when another fits better.
    preview = await (await client.post("/upload?preview=true", data=form("book.xlsx", data, sheet="1"))).json()
    assert preview["preview"]["sheet"] == "Notes"
    job = await upload_and_import(client, settings, "book.xlsx", data, sheet="Customers")
    assert job["status"] == "completed", job
    assert counters(job) == (6, 0, 0, 6, 0) and job["sheet"] == "Customers" and job["header_row"] == 3
    response = await client.post("/upload", data=form("book.xlsx", data, sheet="Missing"))
    assert response.status == 422 and "Customers" in (await response.json())["detail"]


def test_formulas_merged_headers_and_1904_dates_read_correctly(tmp_path: Path) -> None:
    from shared.spreadsheet.readers import CalamineReader, read_head
    from shared.spreadsheet.rules import normalize_cell

    path = workbook_with_formulas_merges_and_1904_dates(tmp_path / "mac.xlsx")
    _, streamed = read_head(path, "xlsx")
    calamine = list(CalamineReader(path).rows())
    for rows in (streamed, calamine):
        by_number = {n: [normalize_cell(c) for c in cells] for n, cells in rows}
        assert by_number[1][0] == "Customers"
        assert by_number[2][:10] == HEADER
        assert by_number[3][2] == "Acme Ltd"  # the formula's cached value
        assert by_number[3][10] == "1905-01-01", rows  # serial 366 in the 1904 system (1900: 1900-12-31)


async def test_rejected_rows_round_trip(client: TestClient, settings: Settings) -> None:
    rows = customers(8)
    rows[1][8] = "not-an-email"  # row 3
    rows[4][0] = "F" * 101  # row 6: a first name too long
    rows[6][7] = "=HYPERLINK(1)"  # row 8: a formula-looking phone, valid
    rows[6][8] = "still@bad"  # but a bad email
    header = ["First Name", "Surname", *HEADER[2:], "Notes"]
    data = csv_bytes([[*r, "note"] for r in rows], header)
    job = await upload_and_import(client, settings, "people.csv", data)
    assert counters(job) == (8, 5, 0, 0, 3)  # (a row with no name at all would be valid: only the email is required)
    for kind in ("csv", "xlsx"):
        response = await client.get(f"/jobs/{job['job_id']}/rejected", params={"format": kind})
        assert response.status == 200
        assert "attachment" in response.headers["Content-Disposition"]
        raw = await response.read()
        if kind == "csv":
            table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
            assert table[3][7] == "'=HYPERLINK(1)"  # never run as a formula by Excel
        else:
            sheet = openpyxl.load_workbook(io.BytesIO(raw)).active
            table = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
            assert sheet.cell(4, 8).data_type == "s" and table[3][7] == "=HYPERLINK(1)"
        assert table[0] == [*HEADER, "Notes", "errors"]
        assert [r[8] for r in table[1:]] == ["not-an-email", "person4@example.com", "still@bad"]
        # The errors name the columns as the uploaded file did.
        assert "email" in table[1][-1] and table[2][-1] == "First Name: Longer than 100 characters"
    # Fix the cells, upload the file as it is: the fixed rows import, the errors column is ignored.
    response = await client.get(f"/jobs/{job['job_id']}/rejected", params={"format": "csv"})
    table = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    table[1][8] = "fixed3@example.com"
    table[2][0] = "Named"
    table[3][8] = "fixed8@example.com"
    out = io.StringIO()
    csv.writer(out).writerows(table)
    again = await upload_and_import(client, settings, "fixed.csv", out.getvalue().encode())
    assert counters(again) == (3, 3, 0, 0, 0), again
    assert again["warnings"] == ["ignored unknown column(s): Notes"]
    found = await (await client.get("/customers", params={"q": "fixed8@example.com"})).json()
    assert found["items"][0]["phone"] == "=HYPERLINK(1)"


async def test_an_unstarted_preview_expires_and_its_file_goes(
    client: TestClient, settings: Settings, pool: object
) -> None:
    import asyncio
    import os

    from shared.customers.cache import CustomerCache
    from shared.infra.storage import UploadStore
    from worker.importer import WorkerDeps
    from worker.sweeper import sweep_jobs

    job = await (await client.post("/upload?preview=true", data=form("c.csv", csv_bytes(customers(2))))).json()
    assert f"{job['job_id']}.csv" in os.listdir(settings.upload_dir)
    await asyncio.sleep(1.2)
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url)
    try:
        deps = WorkerDeps(
            replace(settings, preview_ttl_s=1),
            pool,  # type: ignore[arg-type]
            CustomerCache(redis, prefix=settings.redis_prefix),
            UploadStore(settings.upload_dir),
        )
        await sweep_jobs({"deps": deps, "redis": redis})
    finally:
        await redis.aclose()
    expired = await (await client.get(f"/jobs/{job['job_id']}")).json()
    assert expired["status"] == "failed" and "expired" in expired["error"]
    assert f"{job['job_id']}.csv" not in os.listdir(settings.upload_dir)
    assert (await client.post(f"/jobs/{job['job_id']}/start", json={})).status == 409


async def test_a_hidden_first_sheet_is_not_the_one_read(client: TestClient, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    hidden = book.active
    hidden.title = "Lookups"
    hidden.sheet_state = "hidden"
    hidden.append(["codes"])
    sheet = book.create_sheet("People")
    sheet.append(HEADER)
    sheet.append(customers(1)[0])
    path = tmp_path / "hidden-first.xlsx"
    book.save(path)
    response = await client.post("/upload?preview=true", data=form("h.xlsx", path.read_bytes()))
    preview = (await response.json())["preview"]
    assert preview["sheet"] == "People" and preview["unmapped_required"] == []

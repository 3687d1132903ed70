"""Files as people have them: no header row, other column names, other encodings, other sheets, title
rows; the fix-and-retry loop (previews and mappings: test_preview.py, test_mapping.py). Real app, real
worker, real MariaDB and Redis."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.support.api import counters, form, upload_and_import
from tests.support.workbooks import HEADER, csv_bytes, customers, workbook_with_formulas_merges_and_1904_dates

pytestmark = pytest.mark.usefixtures("clean")


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

"""Small workbooks and CSV files built at test time (large ones live in the benchmarks' cache)."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import openpyxl

HEADER = ["first_name", "last_name", "company_name", "address", "city", "county", "postal", "phone", "email", "web"]


def customer_row(i: int, domain: str = "example.com") -> list[Any]:
    return [
        f"First{i}",
        f"Last{i}",
        f"Company {i % 97}",
        f"{i} High Street",
        "Leeds",
        "West Yorkshire",
        f"LS{i % 20} 1AA",
        f"0113-{i:06d}",
        f"person{i}@{domain}",
        f"http://www.company{i % 97}.co.uk",
    ]


def row_with(i: int, **changes: str) -> list[str]:
    """customer_row(i) as text, with some fields changed (by name)."""
    values = dict(zip(HEADER, (str(v) for v in customer_row(i)), strict=True))
    values.update(changes)
    return [values[name] for name in HEADER]


def write_xlsx(path: Path, rows: Iterable[Sequence[Any]], header: Sequence[Any] | None = HEADER) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    if header is not None:
        ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


def write_two_sheets(path: Path, rows: Iterable[Sequence[Any]], header: Sequence[Any] = HEADER) -> Path:
    """A workbook as exports often come: a sheet of notes first ("Notes"), the data on "People"."""
    wb = openpyxl.Workbook()
    notes = wb.active
    assert notes is not None
    notes.title = "Notes"
    notes.append(["Exported from our CRM; the people are on the next sheet"])
    people = wb.create_sheet("People")
    people.append(list(header))
    for row in rows:
        people.append(list(row))
    wb.save(path)
    return path


def csv_bytes(rows: Iterable[Sequence[Any]], header: Sequence[Any] | None = HEADER, bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header is not None:
        writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def customers(n: int, start: int = 0, domain: str = "example.com") -> list[list[Any]]:
    return [customer_row(i, domain) for i in range(start, start + n)]


def workbook_with_formulas_merges_and_1904_dates(path: Path) -> Path:
    """Cached formula values, a merged title over the header and the 1904 date system, as Excel for
    Mac writes them: openpyxl writes formulas without values, so the XML is adjusted by hand."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Customers"])
    sheet.merge_cells("A1:J1")
    sheet.append(HEADER)
    for row in customers(2):
        sheet.append(row)
    sheet["K2"] = "joined"
    sheet["K3"] = 1  # a date serial, replaced below
    book.save(path)
    with zipfile.ZipFile(path) as src:
        parts = {info.filename: src.read(info.filename) for info in src.infolist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    # C3 (company of the first row) becomes a formula whose cached value is the text.
    xml = re.sub(r'<c r="C3"[^>]*>.*?</c>', '<c r="C3" t="str"><f>"Acme"&amp;" Ltd"</f><v>Acme Ltd</v></c>', xml)
    assert "Acme Ltd" in xml
    xml = re.sub(r'<c r="K3"[^>]*>.*?</c>', '<c r="K3" s="1"><v>366</v></c>', xml)
    parts["xl/worksheets/sheet1.xml"] = xml.encode()
    workbook = parts["xl/workbook.xml"].decode()
    workbook = re.sub(r"<workbookPr([^>]*?)\s*/>", r'<workbookPr\1 date1904="1"/>', workbook)
    if "date1904" not in workbook:
        workbook = workbook.replace("<bookViews>", '<workbookPr date1904="1"/><bookViews>')
    parts["xl/workbook.xml"] = workbook.encode()
    styles = parts["xl/styles.xml"].decode()
    date_style = '<xf numFmtId="14" fontId="0" fillId="0" borderId="0" applyNumberFormat="1"/>'
    styles = re.sub(
        r'<cellXfs count="\d+">(.*?)</cellXfs>', rf'<cellXfs count="2">\1{date_style}</cellXfs>', styles, flags=re.S
    )
    parts["xl/styles.xml"] = styles.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, content in parts.items():
            dst.writestr(name, content)
    return path

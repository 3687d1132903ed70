"""Small workbooks and CSV files built at test time (large ones live in the benchmarks' cache)."""

from __future__ import annotations

import csv
import io
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

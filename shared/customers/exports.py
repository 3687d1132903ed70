"""Files the service hands out: the import template, and exports of the customers as CSV or xlsx.

An export is streamed: customers are read a keyset page at a time (id > the last one sent), each
page encoded and handed on before the next is read, so memory stays the same for ten rows or ten
million. The encoders are pure (rows in, bytes out); `export_chunks` drives them from MySQL.

Columns: the ten customer fields in CUSTOMER_FIELDS order, as an import reads them, then id,
version, created_at and updated_at. Every text cell is Excel-safe: in CSV a value starting with a
formula trigger gets an apostrophe (shared.spreadsheet.rules.excel_safe; importing drops it again); in xlsx
every cell is a string cell, which no spreadsheet runs as a formula (see shared.spreadsheet.xlsx_writer). An
export imports back as exactly the same customers.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import io
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any, Protocol

import aiomysql

from shared.customers import customer_repo
from shared.customers.customer_repo import EXPORT_COLUMNS, EXPORT_ID_INDEX
from shared.customers.fields import ATTRIBUTE_PREFIX
from shared.customers.schemas import FIELD_LENGTHS
from shared.infra.db import DatabaseUnavailable, connection, mysql_deadline
from shared.spreadsheet.rules import CUSTOMER_FIELDS, excel_safe
from shared.spreadsheet.xlsx_writer import XlsxStreamWriter

__all__ = [
    "EXPORT_COLUMNS",
    "FORMATS",
    "CsvEncoder",
    "Encoder",
    "XlsxEncoder",
    "content_type",
    "encoder_for",
    "export_chunks",
    "export_filename",
    "template",
]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"
FORMATS = ("csv", "xlsx")
# Rows a page: big enough that a query's round trip is a small share of the time, small enough that
# encoding a page holds the event loop only a few milliseconds (tests/bench/export_memory.py).
PAGE_ROWS = 2000
SHEET_NAME = "customers"

# Column widths in characters: room for the header and its note marker, and for a typical value
# (not the longest allowed: a 255-wide address column helps nobody).
WIDTHS: dict[str, float] = {
    "first_name": 16,
    "last_name": 18,
    "company_name": 30,
    "address": 36,
    "city": 18,
    "county": 20,
    "postal": 12,
    "country": 16,
    "phone": 18,
    "email": 32,
    "web": 30,
    "id": 10,
    "version": 10,
    "created_at": 29,
    "updated_at": 29,
}


def content_type(fmt: str) -> str:
    return XLSX if fmt == "xlsx" else CSV


def export_filename(fmt: str, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    return f"customers-export-{stamp}.{fmt}"


# -- the template ------------------------------------------------------------------------------

RULES: dict[str, str] = {
    "email": "Required: a valid email address, the only column a file must have. Stored lower-case; a row "
    "whose email already exists updates that customer.",
}
FORMATS_NOTE: dict[str, str] = {
    "postal": "Text; numbers are accepted (a whole number loses any .0). Keep the cells formatted as "
    "Text so leading zeros stay.",
    "phone": "Text; numbers are accepted (a whole number loses any .0). Keep the cells formatted as "
    "Text so leading zeros and + stay.",
    "email": "Text, like name@example.com.",
    "web": "Text, e.g. https://example.com (not checked).",
}
_OPTIONAL = "Optional: the column may be left out, and its cells may be empty; checked when given."
# What the template says of columns that are no field (shown on the sheet's notes row in the xlsx).
ATTRIBUTES_NOTE = (
    "Any other column can be kept on the customer as an attribute: name its header attributes.<name> "
    "(e.g. attributes.tier), or map it to attributes.<name> when importing."
)


def column_note(name: str) -> str:
    """What the template's note on a header cell says: required or not, the maximum length, the format."""
    return "\n".join(
        (
            f"{name}",
            RULES.get(name, _OPTIONAL),
            f"At most {FIELD_LENGTHS[name]} characters.",
            FORMATS_NOTE.get(name, "Text."),
            *((ATTRIBUTES_NOTE,) if name in RULES else ()),
        )
    )


@functools.cache
def template(fmt: str) -> bytes:
    """An empty import file: the header row, CUSTOMER_FIELDS in order (built once, then reused)."""
    if fmt == "csv":
        return (",".join(CUSTOMER_FIELDS) + "\r\n").encode()
    if fmt != "xlsx":
        raise ValueError(f"no template format {fmt!r}")
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SHEET_NAME
    bold = Font(bold=True)
    for index, name in enumerate(CUSTOMER_FIELDS, 1):
        cell = ws.cell(row=1, column=index, value=name)
        cell.font = bold
        note = Comment(column_note(name), "customer-import")
        note.width, note.height = 320, 130
        cell.comment = note
        letter = get_column_letter(index)
        ws.column_dimensions[letter].width = max(WIDTHS[name], len(name) + 4)
        # Cells typed into these columns stay text: 01234 keeps its zero, =... is not a formula.
        ws.column_dimensions[letter].number_format = "@"
    ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# -- encoders ----------------------------------------------------------------------------------


class Encoder(Protocol):
    """Rows in EXPORT_COLUMNS order in, the file's bytes out, a piece at a time."""

    def start(self) -> bytes: ...

    def write(self, rows: Iterable[Sequence[Any]]) -> bytes: ...

    def finish(self) -> bytes: ...


def _csv_cell(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is str:
        return excel_safe(value)
    return value  # id and version: numbers, nothing for Excel to run


class CsvEncoder:
    """RFC 4180 CSV (CRLF, quoted where needed), UTF-8 with a BOM (without one Excel reads the file as
    cp1252 and garbles every accent); every text value excel_safe."""

    def __init__(self, header: Sequence[str] = EXPORT_COLUMNS) -> None:
        self.header = header
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()

    def start(self) -> bytes:
        self._writer.writerow([excel_safe(name) for name in self.header])
        return codecs.BOM_UTF8 + self._take()

    def write(self, rows: Iterable[Sequence[Any]]) -> bytes:
        cell = _csv_cell
        self._writer.writerows([cell(value) for value in row] for row in rows)
        return self._take()

    def finish(self) -> bytes:
        return b""


class XlsxEncoder:
    """A workbook of string cells (shared.spreadsheet.xlsx_writer), header row frozen, sized columns."""

    def __init__(self, header: Sequence[str] = EXPORT_COLUMNS, sheet_name: str = SHEET_NAME, **options: Any) -> None:
        widths = [WIDTHS.get(name, 24) for name in header]
        self._writer = XlsxStreamWriter(list(header), sheet_name=sheet_name, widths=widths, **options)

    def start(self) -> bytes:
        return self._writer.start()

    def write(self, rows: Iterable[Sequence[Any]]) -> bytes:
        return self._writer.write(rows)

    def finish(self) -> bytes:
        return self._writer.finish()


def encode_file(fmt: str, header: Sequence[str], rows: Sequence[Sequence[Any]], sheet_name: str) -> bytes:
    """A small file in one piece (the rejected rows of a job, say): the export's own encoders."""
    enc: Encoder = CsvEncoder(header) if fmt == "csv" else XlsxEncoder(header, sheet_name=sheet_name)
    return enc.start() + enc.write(rows) + enc.finish()


def encoder_for(fmt: str, header: Sequence[str] = EXPORT_COLUMNS) -> Encoder:
    if fmt == "csv":
        return CsvEncoder(header)
    if fmt == "xlsx":
        return XlsxEncoder(header)
    raise ValueError(f"no export format {fmt!r}")


def export_header(attribute_names: Sequence[str]) -> tuple[str, ...]:
    """The export's columns: the fields, one `attributes.<name>` column a name (what an import reads
    back as that attribute), then the read-only columns."""
    fields = len(CUSTOMER_FIELDS)
    named = tuple(ATTRIBUTE_PREFIX + name for name in attribute_names)
    return (*EXPORT_COLUMNS[:fields], *named, *EXPORT_COLUMNS[fields:])


def spread_attributes(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> list[Sequence[Any]]:
    """customer_repo.export_page's rows (the attributes' JSON text last) as export_header(names) lays them out."""
    if not names:
        return [row[:-1] for row in rows]
    fields = len(CUSTOMER_FIELDS)
    spread: list[Sequence[Any]] = []
    for row in rows:
        attributes = customer_repo.decode_attributes(row[-1])
        spread.append((*row[:fields], *(attributes.get(name) for name in names), *row[fields:-1]))
    return spread


# -- the export --------------------------------------------------------------------------------


async def _attribute_names(pool: aiomysql.Pool, *, search: str | None, timeout_s: float) -> list[str]:
    try:
        async with mysql_deadline(timeout_s), connection(pool) as conn, conn.cursor() as cur:
            return await customer_repo.attribute_names(cur, search=search)
    except TimeoutError:
        raise DatabaseUnavailable(f"MySQL did not answer within {timeout_s:g} s") from None


async def _page(
    pool: aiomysql.Pool, *, after_id: int, limit: int, search: str | None, timeout_s: float
) -> Sequence[tuple[Any, ...]]:
    """One page, on a connection borrowed for that page only: a slow download never holds one of
    the pool's connections (or an old MySQL read view) while it waits for the client."""
    try:
        async with mysql_deadline(timeout_s), connection(pool) as conn, conn.cursor() as cur:
            return await customer_repo.export_page(cur, after_id=after_id, limit=limit, search=search)
    except TimeoutError:
        raise DatabaseUnavailable(f"MySQL did not answer within {timeout_s:g} s") from None


async def export_chunks(
    pool: aiomysql.Pool,
    *,
    fmt: str,
    search: str | None,
    timeout_s: float,
    page_rows: int | None = None,
    encoder: Encoder | None = None,
) -> AsyncGenerator[bytes, None]:
    """The export file, as chunks to send in order. The first chunk comes only once the first page
    has been read, so a caller that awaits it before sending any header can still answer an error
    (DatabaseUnavailable) properly. Every customer matching `search` (as GET /customers?q=), by id.

    Each page is read when the previous one has been handed on: a customer changed during a long
    export appears as its page found it; none is left out or repeated (the pages go by id)."""
    # Attribute names first: each is a column of the header, written before any row.
    names = await _attribute_names(pool, search=search, timeout_s=timeout_s)
    enc = encoder or encoder_for(fmt, export_header(names))
    page_rows = page_rows or PAGE_ROWS
    rows = await _page(pool, after_id=0, limit=page_rows, search=search, timeout_s=timeout_s)
    yield enc.start() + enc.write(spread_attributes(rows, names))
    while len(rows) == page_rows:
        after_id = int(rows[-1][EXPORT_ID_INDEX])
        del rows  # never two pages at once
        rows = await _page(pool, after_id=after_id, limit=page_rows, search=search, timeout_s=timeout_s)
        chunk = enc.write(spread_attributes(rows, names))
        if chunk:
            yield chunk
    del rows
    yield enc.finish()

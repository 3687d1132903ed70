"""GET /template and GET /customers/export through the real app, MariaDB and Redis: the files as a
client gets them, read back with the readers people use (csv, python-calamine, openpyxl), and fed
back through the import, which must find every customer unchanged."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import re
import time
import tracemalloc
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import aiomysql
import openpyxl
import pytest
import python_calamine
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.http.keys import DB_POOL
from shared.config import Settings
from shared.customers import customer_repo, exports
from shared.customers.customer_repo import EXPORT_COLUMNS
from shared.customers.schemas import FIELD_LENGTHS
from shared.infra.db import transaction
from shared.spreadsheet.rules import CUSTOMER_FIELDS
from shared.spreadsheet.xlsx_stream import XlsxStreamReader
from shared.spreadsheet.xlsx_writer import XlsxStreamWriter
from tests.support.jobs import import_file
from tests.support.proxy import TcpProxy, url_via

PROBLEM = "application/problem+json"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILENAME = re.compile(r'^attachment; filename="customers-export-\d{8}-\d{6}\.(csv|xlsx)"$')
READ_ONLY = ("id", "version", "created_at", "updated_at")


# -- helpers -----------------------------------------------------------------------------------


def ada(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company_name": "Analytical Engines",
        "address": "12 St James's Square",
        "city": "London",
        "county": "Greater London",
        "postal": "SW1Y 4JH",
        "country": "United Kingdom",
        "phone": "020-7946-0000",
        "email": "ada@example.com",
        "web": "http://example.com",
    }
    body.update(changes)
    return body


# Values that a spreadsheet program or a careless writer would mangle: formulas, leading zeros,
# separators, quotes, line breaks, markup, OOXML escapes, non-ASCII, the longest allowed.
TRICKY: list[dict[str, Any]] = [
    ada(
        company_name="=1+2",
        phone="+44 20 7946 0000",
        address="-3",
        city="@x",
        county='Zürich, "Canton"',
        postal="01234",
        web="https://example.com/?a=1&b=2",
    ),
    ada(
        first_name="Bob",
        last_name=None,
        email="bob@example.com",
        company_name="Smith & Sons <Ltd>",
        address="1 Road\nSecond line",
        city='=HYPERLINK("http://evil.example","click")',
        county=None,
        postal="007",
        phone="-1",
    ),
    ada(
        first_name=None,
        last_name="O'Brien",
        email="cy@example.com",
        company_name="'tis a company",
        address="a" * FIELD_LENGTHS["address"],
        city="tab\tinside",
        county="_x0041_ literally",
        web=None,
        phone="@home",
        postal="",
    ),
    ada(first_name="Émilie", last_name="Du Châtelet", email="emilie@example.com", company_name="😀 Emoji Ltd"),
]


async def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/customers", json=body)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    return dict(await response.json())


async def download(client: TestClient, path: str, **query: str) -> tuple[aiohttp.ClientResponse, bytes]:
    response = await client.get(path, params=query)
    body = await response.read()
    assert response.status == 200, body[:1000]
    return response, body


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(codecs.BOM_UTF8)  # so Excel reads it as UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def xlsx_rows(data: bytes) -> list[list[Any]]:
    sheet = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0)
    return [list(row) for row in sheet.to_python()]


def as_exported(doc: dict[str, Any]) -> list[str]:
    """A customer as the API shows it, as an export row reads back: None is an empty cell."""
    return ["" if doc[name] is None else str(doc[name]) for name in EXPORT_COLUMNS]


async def list_all(client: TestClient, q: str | None = None) -> list[dict[str, Any]]:
    query = {"limit": "1000", **({"q": q} if q else {})}
    page = await (await client.get("/customers", params=query)).json()
    assert page["next_cursor"] is None
    return list(page["items"])


def counters(job: dict[str, Any]) -> dict[str, int]:
    names = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_invalid")
    return {name: job[name] for name in names}


async def bulk_insert(pool: aiomysql.Pool, count: int, batch: int = 5000) -> None:
    """Customers through the import's own bulk path, 5,000 a transaction."""
    for start in range(0, count, batch):
        rows = [
            customer_repo.stored_values(
                {
                    "first_name": f"First{i}",
                    "last_name": f"Last{i}",
                    "company_name": f"Company {i % 97}",
                    "address": f"{i} High Street",
                    "city": "London",
                    "county": "Greater London",
                    "postal": f"SW{i % 20} {i % 9}AA",
                    "phone": f"+44 20 7946 {i % 10000:04d}",  # a formula trigger: every row takes the careful path
                    "email": f"user{i}@example.com",
                    "web": f"https://example.com/{i}",
                }
            )
            for i in range(start, min(start + batch, count))
        ]
        async with transaction(pool) as cur:
            await customer_repo.bulk_upsert(cur, rows)


# -- GET /template -----------------------------------------------------------------------------


async def test_csv_template_is_the_header_line(client: TestClient) -> None:
    response, body = await download(client, "/template", format="csv")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="customers-template.csv"'
    assert body == (",".join(CUSTOMER_FIELDS) + "\r\n").encode()


async def test_xlsx_template_has_the_header_notes_and_widths(client: TestClient) -> None:
    response, body = await download(client, "/template")  # xlsx is the default
    assert response.headers["Content-Type"] == XLSX
    assert response.headers["Content-Disposition"] == 'attachment; filename="customers-template.xlsx"'
    ws = openpyxl.load_workbook(io.BytesIO(body)).worksheets[0]
    assert [cell.value for cell in ws[1]] == list(CUSTOMER_FIELDS)
    assert ws.max_row == 1  # nothing but the header
    for cell in ws[1]:
        name = cell.value
        assert cell.font.b
        assert cell.comment is not None, f"no note on {name}"
        note = cell.comment.text
        assert f"At most {FIELD_LENGTHS[name]} characters." in note, note
        if name == "email":  # the only column a file must have (DESIGN "Spreadsheet rules")
            assert "Required" in note and "valid email address" in note and "attributes.<name>" in note
        else:
            assert "Optional" in note and "may be left out" in note
        if name in ("phone", "postal"):
            assert "Text; numbers are accepted" in note
        else:
            assert "Text" in note
        dimension = ws.column_dimensions[cell.column_letter]
        assert len(name) + 2 <= dimension.width <= 60, (name, dimension.width)
        assert dimension.number_format == "@"  # typed values stay text: 01234 keeps its zero
    assert ws.freeze_panes == "A2"


async def test_a_filled_in_template_imports_without_warnings(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    _, body = await download(client, "/template")
    wb = openpyxl.load_workbook(io.BytesIO(body))
    wb.worksheets[0].append([ada()[name] for name in CUSTOMER_FIELDS])
    out = io.BytesIO()
    wb.save(out)
    job = await import_file(settings, pool, "filled.xlsx", out.getvalue())
    assert job["status"] == "completed", job
    assert counters(job) == {**dict.fromkeys(counters(job), 0), "rows_read": 1, "rows_inserted": 1}
    assert not job["warnings"]
    _, csv_body = await download(client, "/template", format="csv")
    job = await import_file(settings, pool, "filled.csv", csv_body + b"Bo,,,,,,,,,bo@example.com,\r\n")
    assert job["status"] == "completed", job
    assert (job["rows_inserted"], job["warnings"]) == (1, [])


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
async def test_the_template_uploaded_unchanged_completes_with_no_data_rows(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, fmt: str
) -> None:
    _, body = await download(client, "/template", format=fmt)
    job = await import_file(settings, pool, f"template.{fmt}", body)
    assert job["status"] == "completed", job
    assert job["rows_read"] == 0
    assert any("no data rows" in warning for warning in job["warnings"]), job["warnings"]


@pytest.mark.parametrize(("path", "value"), [("/template", "pdf"), ("/customers/export", "json")])
async def test_a_bad_format_is_422_naming_format(client: TestClient, path: str, value: str) -> None:
    body = await problem(await client.get(path, params={"format": value}), 422)
    assert body["errors"] == [{"field": "format", "message": "Must be csv or xlsx."}]
    assert repr(value) in body["detail"]
    body = await problem(await client.get(path, params={"colour": "blue"}), 400)
    assert body["errors"][0]["field"] == "colour"


# -- GET /customers/export ---------------------------------------------------------------------


async def test_export_holds_every_customer_in_both_formats(client: TestClient, tmp_path: Path) -> None:
    created = [await create(client, body) for body in TRICKY]
    expected = [EXPORT_COLUMNS, *(as_exported(doc) for doc in await list_all(client))]
    assert [row[EXPORT_COLUMNS.index("id")] for row in expected[1:]] == [str(doc["id"]) for doc in created]

    response = await client.get("/customers/export", headers={"X-Request-ID": "export-42"})  # csv: the default
    assert response.status == 200
    body = await response.read()
    assert response.headers["X-Request-ID"] == "export-42"  # set before the headers went out
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert FILENAME.match(response.headers["Content-Disposition"]).group(1) == "csv"  # type: ignore[union-attr]
    assert "Content-Length" not in response.headers  # streamed
    rows = csv_rows(body)
    # The CSV holds excel_safe values; the import (tested below) strips the apostrophes again.
    from shared.spreadsheet.rules import from_excel_safe

    assert [[from_excel_safe(value) for value in row] for row in rows] == [list(r) for r in expected]

    response, body = await download(client, "/customers/export", format="xlsx")
    assert response.headers["Content-Type"] == XLSX
    assert FILENAME.match(response.headers["Content-Disposition"]).group(1) == "xlsx"  # type: ignore[union-attr]
    assert xlsx_rows(body) == [list(r) for r in expected]  # exactly, no apostrophes
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        sheet = zf.read("xl/worksheets/sheet1.xml").decode()
    path = tmp_path / "export.xlsx"  # the service's own streaming reader gives the same
    path.write_bytes(body)
    reader = XlsxStreamReader(path)
    streamed = [[("" if v is None else v) for v in cells] for _, cells in reader.rows()]
    reader.close()
    assert streamed == [list(r) for r in expected]
    assert '<pane ySplit="1"' in sheet and "<cols>" in sheet


async def test_head_answers_the_headers_alone(client: TestClient) -> None:
    await create(client, ada())
    response = await client.head("/customers/export", params={"format": "xlsx"})
    assert response.status == 200
    assert response.headers["Content-Type"] == XLSX
    assert FILENAME.match(response.headers["Content-Disposition"])
    assert await response.read() == b""
    response = await client.head("/template")
    assert response.status == 200 and await response.read() == b""


async def test_an_empty_export_is_the_header_alone(client: TestClient) -> None:
    _, body = await download(client, "/customers/export")
    assert csv_rows(body) == [list(EXPORT_COLUMNS)]
    _, body = await download(client, "/customers/export", format="xlsx")
    assert xlsx_rows(body) == [list(EXPORT_COLUMNS)]


async def test_q_filters_the_export_as_it_filters_the_list(client: TestClient) -> None:
    for n, name in enumerate(["Smith", "Smithers", "Jones", "Blacksmith", "100%_sure"]):
        await create(client, ada(last_name=name, email=f"p{n}@example.com"))
    await create(client, ada(last_name="Other", email="smith@example.com"))  # matched by email
    for q, count in (("smith", 4), ("JONES", 1), ("%_", 1), ("nobody", 0)):
        expected = [str(doc["id"]) for doc in await list_all(client, q)]
        assert len(expected) == count, q
        _, body = await download(client, "/customers/export", q=q)
        assert [row[EXPORT_COLUMNS.index("id")] for row in csv_rows(body)[1:]] == expected, q
        _, body = await download(client, "/customers/export", q=q, format="xlsx")
        assert [row[EXPORT_COLUMNS.index("id")] for row in xlsx_rows(body)[1:]] == expected, q
    too_long = await problem(await client.get("/customers/export", params={"q": "x" * 101}), 422)
    assert too_long["errors"][0]["field"] == "q"


async def test_formula_like_values_never_become_formulas(client: TestClient) -> None:
    doc = await create(
        client, ada(company_name="=1+2", phone="+44 20 7946 0000", address="-3", city="@x", county="=SUM(A1:A9)")
    )
    risky = {
        "company_name": "=1+2",
        "phone": "+44 20 7946 0000",
        "address": "-3",
        "city": "@x",
        "county": "=SUM(A1:A9)",
    }

    _, body = await download(client, "/customers/export")
    header, row = csv_rows(body)
    cells = dict(zip(header, row, strict=True))
    for name, value in risky.items():
        assert cells[name] == "'" + value, name
    assert cells["first_name"] == "Ada" and cells["id"] == str(doc["id"])

    _, body = await download(client, "/customers/export", format="xlsx")
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet and "<f " not in sheet
    assert sheet.count("<c ") == sheet.count('t="inlineStr"')  # every cell a string cell
    ws = openpyxl.load_workbook(io.BytesIO(body)).worksheets[0]
    cells_x = {ws.cell(1, col).value: ws.cell(2, col) for col in range(1, len(EXPORT_COLUMNS) + 1)}
    for name, value in risky.items():
        cell = cells_x[name]
        assert (cell.value, cell.data_type) == (value, "s"), name  # as it is: no apostrophe in the value
        assert cell.quotePrefix, name  # and Excel keeps it text even when the cell is edited
        assert cell.number_format == "@"
    assert not cells_x["first_name"].quotePrefix


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_an_export_imports_back_unchanged(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, fmt: str
) -> None:
    for body in TRICKY:
        await create(client, body)
    before = await list_all(client)
    _, data = await download(client, "/customers/export", format=fmt)

    job = await import_file(settings, pool, f"export.{fmt}", data)
    assert job["status"] == "completed", job
    n = len(TRICKY)
    assert counters(job) == {
        "rows_read": n,
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_unchanged": n,
        "rows_invalid": 0,
    }
    assert job["warnings"] == []  # id, version, created_at, updated_at are ignored silently
    assert await list_all(client) == before  # same values, versions and timestamps
    _, again = await download(client, "/customers/export", format=fmt)
    if fmt == "csv":
        assert again == data
    else:
        assert xlsx_rows(again) == xlsx_rows(data)


# -- MySQL down --------------------------------------------------------------------------------


@pytest.fixture
async def mysql_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(settings.mysql.host, settings.mysql.port)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def via_mysql_proxy(aiohttp_client: Any, settings: Settings, mysql_proxy: TcpProxy, clean: None) -> TestClient:
    app = create_app(replace(settings, mysql_dsn=url_via(settings.mysql_dsn, mysql_proxy.port)))
    client: TestClient = await aiohttp_client(app)
    return client


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_mysql_down_is_a_503_problem_before_any_header(
    via_mysql_proxy: TestClient, mysql_proxy: TcpProxy, fmt: str
) -> None:
    await create(via_mysql_proxy, ada())
    await mysql_proxy.cut()
    response = await via_mysql_proxy.get("/customers/export", params={"format": fmt})
    body = await problem(response, 503)
    assert response.headers["Retry-After"] == "2"
    assert "Content-Disposition" not in response.headers
    assert body["status"] == 503
    await mysql_proxy.restore()
    _, data = await download(via_mysql_proxy, "/customers/export", format=fmt)
    assert len(csv_rows(data) if fmt == "csv" else xlsx_rows(data)) == 2


async def test_mysql_lost_mid_export_cuts_the_download_short(
    via_mysql_proxy: TestClient, mysql_proxy: TcpProxy, pool: aiomysql.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the headers are sent, the only honest way to fail is to break the connection: a client must
    never get a truncated file that looks complete."""
    await bulk_insert(pool, 2000)
    monkeypatch.setattr(exports, "PAGE_ROWS", 100)
    mysql_proxy.delay = lambda: 0.05  # every page takes a while: the cut lands mid-export
    session = via_mysql_proxy.session
    async with session.get(via_mysql_proxy.make_url("/customers/export")) as response:
        assert response.status == 200
        first = await response.content.readany()
        assert first.startswith(codecs.BOM_UTF8 + b"first_name,")
        await mysql_proxy.cut()
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    mysql_proxy.delay = None
    await mysql_proxy.restore()
    _, data = await download(via_mysql_proxy, "/customers/export")  # the service is fine afterwards
    assert len(csv_rows(data)) == 2001


@pytest.mark.parametrize("cancelled", [False, True], ids=["handler-runs-on", "handler-cancelled"])
async def test_a_client_that_goes_away_mid_export_frees_everything(
    settings: Settings, pool: aiomysql.Pool, clean: None, monkeypatch: pytest.MonkeyPatch, cancelled: bool
) -> None:
    """`python -m gateway` lets a handler run on when its client goes away (aiohttp's default; the
    next write fails), the test server cancels it: either way the export stops and gives back its
    connection."""
    await bulk_insert(pool, 3000)
    monkeypatch.setattr(exports, "PAGE_ROWS", 100)
    app = create_app(settings)
    runner = web.AppRunner(app, handler_cancellation=cancelled)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{port}/customers/export") as response:
                    assert response.status == 200
                    await response.content.readany()
                    response.close()  # most of the export unread
            await asyncio.sleep(0.3)
            app_pool = app[DB_POOL]
            assert app_pool.freesize == app_pool.size  # no connection kept by an abandoned export
            async with session.get(f"http://127.0.0.1:{port}/customers/export") as response:
                assert len(csv_rows(await response.read())) == 3001
    finally:
        await runner.cleanup()


# -- the encoders on their own -------------------------------------------------------------------


def test_xlsx_writer_continues_on_a_new_sheet_when_one_is_full() -> None:
    writer = XlsxStreamWriter(["a", "b"], sheet_name="customers", max_rows_per_sheet=3)
    rows = [[f"a{n}", n] for n in range(5)]
    data = writer.start() + writer.write(rows[:1]) + writer.write(rows[1:]) + writer.finish()
    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    assert wb.sheet_names == ["customers", "customers (2)", "customers (3)"]
    sheets = [wb.get_sheet_by_name(name).to_python() for name in wb.sheet_names]
    assert sheets == [
        [["a", "b"], ["a0", "0"], ["a1", "1"]],
        [["a", "b"], ["a2", "2"], ["a3", "3"]],
        [["a", "b"], ["a4", "4"]],
    ]


def test_xlsx_writer_keeps_every_character() -> None:
    values = ["_x0041_", "a\r\nb", "x\x01y", " lead", "trail ", "\ttab", "a&b<c>", "'=x", "=1+2", "é€😀", "_x005F_"]
    writer = XlsxStreamWriter([f"c{n}" for n in range(len(values))])
    data = writer.start() + writer.write([values]) + writer.finish()
    assert xlsx_rows(data)[1] == values
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert all(info.flag_bits & 0x08 for info in zf.infolist())  # streamed: sizes after the data


def test_encoder_for_knows_both_formats() -> None:
    assert isinstance(exports.encoder_for("csv"), exports.CsvEncoder)
    assert isinstance(exports.encoder_for("xlsx"), exports.XlsxEncoder)
    with pytest.raises(ValueError):
        exports.encoder_for("pdf")


# -- 100k rows -----------------------------------------------------------------------------------

ROWS_100K = 100_000
# What the gateway may grow by while streaming 100k rows. Holding them would take ~96 MB (960 bytes a
# row as the export reads them: tests/bench/export_memory.py); the CSV itself is 21 MB.
MAX_GROWTH = 12 * 1024 * 1024


async def test_100k_rows_stream_in_bounded_memory_and_import_back_unchanged(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, tmp_path: Path
) -> None:
    started = time.perf_counter()
    await bulk_insert(pool, ROWS_100K)
    inserted_s = time.perf_counter() - started
    # The raw session: the OpenAPI-checking client would hold the whole body in memory.
    session = client.session
    report = [f"\n100k rows inserted in {inserted_s:.1f} s"]
    for fmt in ("csv", "xlsx"):
        path = tmp_path / f"export.{fmt}"
        # Once untraced, for the speed.
        began = time.perf_counter()
        async with session.get(client.make_url("/customers/export"), params={"format": fmt}) as response:
            assert response.status == 200
            size = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
        elapsed = time.perf_counter() - began
        # Once traced (every allocation in this process: the app, the client, the test), written to
        # disk as it comes, for the memory.
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            async with session.get(client.make_url("/customers/export"), params={"format": fmt}) as response:
                assert response.status == 200
                with path.open("wb") as fh:
                    async for chunk in response.content.iter_chunked(1 << 16):
                        fh.write(chunk)
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        assert path.stat().st_size == size
        report.append(
            f"{fmt}: {size / 1e6:.1f} MB in {elapsed:.2f} s = {ROWS_100K / elapsed:,.0f} rows/s; "
            f"peak memory growth while streaming {peak / 1e6:.1f} MB"
        )
        assert peak < MAX_GROWTH, report[-1]

        began = time.perf_counter()
        job = await import_file(replace(settings, import_batch_size=5000), pool, path.name, path.read_bytes())
        report.append(f"  imported back in {time.perf_counter() - began:.1f} s; warnings: {job['warnings']}")
        assert job["status"] == "completed", job
        assert job["warnings"] == []
        assert counters(job) == {
            "rows_read": ROWS_100K,
            "rows_inserted": 0,
            "rows_updated": 0,
            "rows_unchanged": ROWS_100K,
            "rows_invalid": 0,
        }
    print("\n".join(report))

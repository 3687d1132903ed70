"""Hostile files: the wrong kind under an .xlsx name, damaged and incomplete zips, a zip bomb, entity
expansion and external entities, a <dimension> that lies, 5 MB strings, 16,384 columns, a 100 MB line, NUL
bytes, ragged rows. Each answer is checked, and that the service still answers after. The files are made
here, small, from code (tests/support/hostile.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from arq.worker import Worker

from shared.config import Settings
from tests.support.api import form, still_answers, stored
from tests.support.hostile import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    OLE,
    PDF,
    PNG,
    Raw,
    workbook,
    zip_bomb,
)
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import HEADER, csv_bytes, customers, row_with
from worker.settings import build_worker_settings

CSV = csv_bytes(customers(2))

HOSTILE_UPLOADS = [
    pytest.param("empty.xlsx", b"", 400, "empty", id="empty file"),
    pytest.param("image.xlsx", PNG, 415, "PNG image", id="PNG named .xlsx"),
    pytest.param("doc.xlsx", PDF, 415, "PDF document", id="PDF named .xlsx"),
    pytest.param("notes.xlsx", b"just some notes\nnothing else\n", 422, "missing required column", id="text as .xlsx"),
    pytest.param("legacy.xls", OLE, 415, "legacy .xls", id="legacy .xls"),
    pytest.param("locked.xlsx", OLE, 415, "password-protected", id="encrypted workbook"),
    pytest.param("broken.xlsx", b"PK\x03\x04" + b"\x00garbage" * 100, 422, "damaged", id="corrupt zip"),
    pytest.param(
        "parts.xlsx",
        workbook([HEADER], leave_out=["[Content_Types].xml"]),
        422,
        "[Content_Types].xml missing",
        id="zip without content types",
    ),
    pytest.param(
        "parts.xlsx", workbook([HEADER], leave_out=["xl/workbook.xml"]), 422, "no workbook part", id="no workbook"
    ),
    pytest.param(
        "parts.xlsx",
        workbook([HEADER], leave_out=["xl/worksheets/sheet1.xml"]),
        422,
        "is missing",
        id="no worksheet part",
    ),
    pytest.param(
        "parts.xlsx",
        workbook([HEADER], leave_out=["xl/_rels/workbook.xml.rels"]),
        422,
        "has no worksheet part",
        id="no workbook relationships",
    ),
    pytest.param("bomb.xlsx", zip_bomb(100), 422, "compression ratio", id="zip bomb 1000:1"),
    pytest.param("nul.csv", b"first_name,email\x00\nAda,a@b.co\n", 415, "binary", id="CSV with a NUL byte"),
    # Built when the test runs (a callable), not held for the whole session.
    pytest.param("line.csv", lambda: b"a" * (100 * 1024 * 1024), 422, "field larger than field limit", id="100MB-line"),
]


@pytest.mark.parametrize(("filename", "data", "status", "fragment"), HOSTILE_UPLOADS)
async def test_hostile_uploads_are_refused_and_leave_nothing(
    client: TestClient, settings: Settings, filename: str, data: bytes | Callable[[], bytes], status: int, fragment: str
) -> None:
    data = data() if callable(data) else data
    before = stored(settings)
    started = time.monotonic()
    response = await client.post("/upload", data=form(filename, data))
    assert time.monotonic() - started < 10
    assert response.status == status, await response.text()
    problem = await response.json()
    assert fragment in problem["detail"], problem
    assert stored(settings) == before
    assert (await (await client.get("/jobs")).json())["items"] == []
    await still_answers(client)


async def _import(client: TestClient, settings: Settings, filename: str, data: bytes) -> dict[str, Any]:
    response = await client.post("/upload", data=form(filename, data))
    assert response.status == 202, await response.text()
    await run_burst_worker(settings)
    job: dict[str, Any] = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    return job


async def test_entities_in_a_sheet_are_never_expanded_or_fetched(client: TestClient, settings: Settings) -> None:
    # The sheet is read at upload (the header check) by the compiled reader, which refuses the DTD:
    # a 422 naming the entity declaration, nothing queued.
    for prolog, entity in ((BILLION_LAUGHS, "&lol9;"), (EXTERNAL_ENTITY, "&xxe;")):
        started = time.monotonic()
        data = workbook([HEADER, row_with(1, first_name=Raw(entity))], sheet_prolog=prolog)
        response = await client.post("/upload", data=form("entities.xlsx", data))
        assert time.monotonic() - started < 15
        assert response.status == 422 and "entity" in (await response.json())["detail"], await response.text()
    items = (await (await client.get("/customers?limit=1000")).json())["items"]
    assert not any("root:" in json.dumps(item) or "lollol" in json.dumps(item) for item in items)
    await still_answers(client)


@pytest.mark.parametrize("prolog", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion laughs", "external entity"])
async def test_entities_in_shared_strings_are_refused_at_upload(
    client: TestClient, settings: Settings, prolog: str
) -> None:
    entity = "&lol9;" if prolog == BILLION_LAUGHS else "&xxe;"
    data = workbook([HEADER, row_with(1, first_name=Raw(entity))], shared_strings=True, strings_prolog=prolog)
    response = await client.post("/upload", data=form("entities.xlsx", data))
    assert response.status == 422, await response.text()
    await still_answers(client)


async def test_a_dimension_claiming_a_million_rows_is_not_believed(client: TestClient, settings: Settings) -> None:
    data = workbook([HEADER, *(row_with(i) for i in range(3))], dimension="A1:J1000000")
    response = await client.post("/upload?preview=true", data=form("claims.xlsx", data))
    assert response.status == 201
    preview = await response.json()
    assert preview["preview"]["rows_total_estimate"] is None  # 1,000,000 rows cannot fit this sheet
    assert (await client.post(f"/jobs/{preview['job_id']}/start")).status == 202
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{preview['job_id']}")).json()
    assert (job["status"], job["rows_inserted"], job["progress"]["rows_total_estimate"]) == ("completed", 3, 3)
    await still_answers(client)


async def test_huge_strings_cells_and_rows_import_as_row_errors(client: TestClient, settings: Settings) -> None:
    # Random text: a run of one letter would (rightly) be refused as a zip bomb first.
    five_mb = os.urandom(2_500_000).hex()
    job = await _import(
        client, settings, "shared.xlsx", workbook([HEADER, row_with(1, company_name=five_mb)], shared_strings=True)
    )
    assert (job["status"], job["rows_invalid"]) == ("completed", 1)
    assert job["errors"][0]["column"] == "company_name" and "Longer than 100" in job["errors"][0]["message"]
    one_mb = os.urandom(512 * 1024).hex()
    job = await _import(client, settings, "cell.xlsx", workbook([HEADER, row_with(2, address=one_mb)]))
    assert (job["status"], job["rows_invalid"]) == ("completed", 1)
    assert "Longer than 255" in job["errors"][0]["message"] and len(json.dumps(job)) < 100_000
    wide = [*row_with(3), *(["v"] * (16384 - len(HEADER)))]  # every column Excel has
    job = await _import(client, settings, "wide.xlsx", workbook([HEADER, wide]))
    assert (job["status"], job["rows_inserted"]) == ("completed", 1)
    await still_answers(client)


async def test_escapes_and_inline_strings(client: TestClient, settings: Settings) -> None:
    data = workbook(
        [HEADER, row_with(1, first_name="Ada_x000D_", last_name="Love_x006C_ace"), row_with(2, first_name="Inline")]
    )
    job = await _import(client, settings, "escapes.xlsx", data)
    assert (job["status"], job["rows_inserted"]) == ("completed", 2)
    items = (await (await client.get("/customers?limit=10")).json())["items"]
    assert {(c["first_name"], c["last_name"]) for c in items} == {("Ada", "Lovelace"), ("Inline", "Last2")}
    await still_answers(client)


async def test_csv_nul_bytes_and_ragged_rows_are_row_errors(client: TestClient, settings: Settings) -> None:
    # A NUL past the first 64 KB (where the file is recognised as text) is just a character.
    data = csv_bytes(customers(1500)) + b"Nul\x00Name,x\n" + b"only,two\n" + b",".join([b"x"] * 14) + b"\n"
    job = await _import(client, settings, "ragged.csv", data)
    assert (job["status"], job["rows_inserted"], job["rows_invalid"]) == ("completed", 1500, 3)
    assert all("values but the header has 10 columns" in e["message"] for e in job["errors"])
    await still_answers(client)


async def run_worker_once(settings: Settings) -> None:
    """A burst worker that tries each job once: a job that crashes is not retried for a minute."""
    kwargs = build_worker_settings(settings)
    kwargs["cron_jobs"] = []
    kwargs["functions"] = [dataclasses.replace(f, max_tries=1) for f in kwargs["functions"]]
    worker = Worker(**kwargs, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def test_a_header_of_16384_columns_imports(client: TestClient, settings: Settings) -> None:
    header = [*HEADER, *(f"extra_column_{i}" for i in range(16384 - len(HEADER)))]
    response = await client.post("/upload", data=form("wide.xlsx", workbook([header, row_with(1)])))
    assert response.status == 202
    await run_worker_once(settings)
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["status"] == "completed", job
    await still_answers(client)


async def test_a_csv_wider_than_excel_is_refused_quickly(client: TestClient) -> None:
    header = ",".join([*HEADER, *(["x"] * 40_000)]).encode()  # the required columns, then 40,000 more
    started = time.monotonic()
    response = await client.post("/upload", data=form("wide.csv", header + b"\n" + b",".join([b"v"] * 10) + b"\n"))
    elapsed = time.monotonic() - started
    assert response.status == 422 and "16,384" in (await response.json())["detail"], response.status
    assert elapsed < 1, elapsed
    await still_answers(client)


async def test_an_encoding_with_a_nul_is_422_not_500(client: TestClient) -> None:
    # Found by schemathesis (POST /jobs/{id}/start): codecs.lookup raises ValueError for a NUL.
    response = await client.post("/upload", params={"encoding": "utf-8\x00"}, data=form("a.csv", CSV))
    assert response.status == 422 and (await response.json())["errors"][0]["field"] == "encoding"
    response = await client.post("/upload?preview=true", data=form("a.csv", CSV))
    job_id = (await response.json())["job_id"]
    response = await client.post(f"/jobs/{job_id}/start", json={"encoding": "\x00"})
    assert response.status == 422 and (await response.json())["errors"][0]["field"] == "encoding"
    await still_answers(client)

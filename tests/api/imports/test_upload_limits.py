"""The caps on uploads: MAX_CONCURRENT_UPLOADS, MAX_ROWS_PER_JOB (at upload and in the worker),
MAX_INFLATED_MB, MAX_UPLOAD_MB (refused without reading the rest, with or without a Content-Length)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from gateway.app import create_app
from gateway.routes import imports
from shared.config import Settings
from tests.support import openapi_check
from tests.support.api import form, still_answers, stored
from tests.support.hostile import (
    workbook,
    zip_bomb,
)
from tests.support.jobs import run_burst_worker
from tests.support.rawhttp import exchange, upload_head
from tests.support.workbooks import HEADER, csv_bytes, customers, row_with


async def test_concurrent_uploads_are_capped_per_process(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_concurrent_uploads=1)))
    gate = asyncio.Event()
    boundary = "SlowBoundary"

    async def slow_body() -> AsyncIterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.csv"\r\n\r\n'.encode()
        await gate.wait()
        yield csv_bytes(customers(2)) + f"\r\n--{boundary}--\r\n".encode()

    first = asyncio.create_task(
        client.post("/upload", data=slow_body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    )
    deadline = time.monotonic() + 5
    while imports._UPLOADS_IN_FLIGHT.get(client.app, 0) < 1:
        assert time.monotonic() < deadline and not first.done()
        await asyncio.sleep(0.01)
    refused = await client.post("/upload", data=form("b.csv", csv_bytes(customers(2))))
    assert refused.status == 503 and refused.headers["Retry-After"] == "5"
    assert "MAX_CONCURRENT_UPLOADS" in (await refused.json())["detail"]
    gate.set()
    assert (await first).status == 202
    assert imports._UPLOADS_IN_FLIGHT[client.app] == 0
    assert (await client.post("/upload", data=form("c.csv", csv_bytes(customers(2))))).status == 202
    await still_answers(client)


async def test_a_file_over_max_rows_per_job_is_refused_at_upload(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_rows_per_job=10)))
    before = stored(settings)
    response = await client.post("/upload", data=form("eleven.csv", csv_bytes(customers(11))))
    assert response.status == 413
    problem = await response.json()
    assert problem["title"] == "Too many rows"
    assert "MAX_ROWS_PER_JOB" in problem["detail"] and "10" in problem["detail"] and "11" in problem["detail"]
    assert stored(settings) == before
    assert (await client.post("/upload", data=form("ten.csv", csv_bytes(customers(10))))).status == 202
    await still_answers(client)


async def test_the_worker_enforces_max_rows_per_job(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    capped = replace(settings, max_rows_per_job=10, import_batch_size=4)
    client = await aiohttp_client(create_app(capped))
    # No <dimension>: nothing tells the gateway how many rows there are; the worker counts them.
    data = workbook([HEADER, *(row_with(i) for i in range(25))])
    response = await client.post("/upload", data=form("many.xlsx", data))
    assert response.status == 202
    await run_burst_worker(capped)
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["status"] == "failed"
    assert "MAX_ROWS_PER_JOB" in job["error"] and "10" in job["error"]
    assert job["rows_read"] <= 10  # batches before the limit are kept, none past it
    await still_answers(client)


async def test_a_workbook_inflating_past_max_inflated_mb_is_413(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_inflated_mb=50)))
    response = await client.post("/upload", data=form("big.xlsx", zip_bomb(60)))
    assert response.status == 413 and "would inflate" in (await response.json())["detail"]
    await still_answers(client)


async def test_an_upload_over_max_upload_mb_is_413_without_reading_the_rest(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_upload_mb=1)))
    status, headers, body = await exchange(client, upload_head(5 * 1024 * 1024), b"x" * 4096)
    assert status == 413 and "1 MB" in json.loads(body)["detail"]
    openapi_check.check("POST", "/upload", status, headers, body)
    await still_answers(client)


async def test_upload_over_the_limit_is_413(aiohttp_client, settings: Settings, clean: None) -> None:  # type: ignore[no-untyped-def]
    small = replace(settings, max_upload_mb=1)
    client = await aiohttp_client(create_app(small))
    big = csv_bytes(customers(15000))
    assert len(big) > 1024 * 1024
    response = await client.post("/upload", data=form("big.csv", big))
    assert response.status == 413
    assert "1 MB" in (await response.json())["detail"]
    assert [f for f in stored(small) if f.endswith(".part")] == []


async def test_streamed_upload_over_the_limit_without_content_length(
    aiohttp_client,
    settings: Settings,
    clean: None,  # type: ignore[no-untyped-def]
) -> None:
    small = replace(settings, max_upload_mb=1)
    client = await aiohttp_client(create_app(small))

    async def body():  # chunked transfer: no Content-Length to refuse early
        boundary = "XyZ"
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'.encode()
        for _ in range(40):
            yield b"a" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post("/upload", data=body(), headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert response.status == 413
    assert [f for f in stored(small) if f.endswith(".part")] == []

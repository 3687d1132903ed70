"""GET /jobs/{id}/events: Server-Sent Events from a real worker, through Redis, to any gateway replica."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from shared.config import Settings
from tests.support.api import form
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import csv_bytes, customers

pytestmark = pytest.mark.usefixtures("clean")


async def read_events(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """Parse an SSE body into events: {id, event, data, comments-before}."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    comments = 0
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            comments += 1
        elif line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            current["comments_before"] = comments
            events.append(current)
            current = {}
    return events


async def test_progress_after_every_batch_then_completed_on_another_replica(
    client: TestClient, aiohttp_client: Any, settings: Settings
) -> None:
    rows = 2200  # 5 batches of 500
    response = await client.post("/upload", data=form("c.csv", csv_bytes(customers(rows))))
    job_id = (await response.json())["job_id"]
    # The client follows the job on a second gateway replica; the worker publishes through Redis.
    other = await aiohttp_client(create_app(settings))
    stream = await other.get(f"/jobs/{job_id}/events")
    assert stream.status == 200 and stream.content_type == "text/event-stream"
    reader = asyncio.create_task(read_events(stream))
    await run_burst_worker(settings)
    events = await asyncio.wait_for(reader, 30)
    kinds = [e["event"] for e in events]
    assert kinds == ["progress"] * 5 + ["completed"], kinds
    progress = [e["data"]["rows_read"] for e in events[:-1]]
    assert progress == [500, 1000, 1500, 2000, 2200]
    final = events[-1]["data"]
    assert final["status"] == "completed" and final["rows_inserted"] == rows
    # Resuming after the second event gives the rest, nothing twice.
    again = await client.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": events[1]["id"]})
    resumed = await asyncio.wait_for(read_events(again), 10)
    # The job has ended: its final event comes at once, alone.
    assert [e["event"] for e in resumed] == ["completed"]


async def test_resume_while_running_skips_what_was_seen(client: TestClient, settings: Settings) -> None:
    response = await client.post("/upload", data=form("c.csv", csv_bytes(customers(1600))))
    job_id = (await response.json())["job_id"]
    first = await client.get(f"/jobs/{job_id}/events")
    reader = asyncio.create_task(read_events(first))
    await run_burst_worker(settings)
    events = await asyncio.wait_for(reader, 30)
    assert [e["event"] for e in events] == ["progress"] * 4 + ["completed"]
    # The stream itself, replayed from the second event id, as a client that lost its connection sees it.
    from gateway.http.keys import DB_POOL, EVENTS
    from shared.imports.events import follow_job
    from shared.imports.service import get_job

    pool, events_store = client.app[DB_POOL], client.app[EVENTS]
    # As seen while the job was still running: the job document of that moment.
    running = dict(events[1]["data"], status="running")
    replay = [
        item async for item in follow_job(lambda job_id: get_job(pool, job_id), events_store, running, events[1]["id"])
    ]
    assert [(e[0], e[1]) for e in replay] == [(e["id"], e["event"]) for e in events[2:]]


async def test_unknown_job_is_404_and_keepalive_comments_flow(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, sse_keepalive_s=1)))
    missing = await client.get("/jobs/00000000-0000-0000-0000-000000000000/events")
    assert missing.status == 404
    preview = await client.post("/upload?preview=true", data=form("c.csv", csv_bytes(customers(2))))
    job_id = (await preview.json())["job_id"]
    stream = await client.get(f"/jobs/{job_id}/events")
    seen = b""
    async with asyncio.timeout(5):
        while b": ping" not in seen:
            seen += await stream.content.readany()
    stream.close()


async def test_a_job_that_fails_ends_its_stream_with_a_failed_event(client: TestClient, settings: Settings) -> None:
    # A quote opened after the first batch (the upload's header check passes) and never closed.
    content = csv_bytes(customers(2500))  # the reader works 1,024 records ahead: batches come first
    content += b'"First,Last,Co,1 Road,Leeds,WY,LS1,0113,open@failed.example,web\n'
    content += csv_bytes(customers(3, start=9000), header=None)
    response = await client.post("/upload", data=form("broken.csv", content))
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    stream = await client.get(f"/jobs/{job_id}/events")
    reader = asyncio.create_task(read_events(stream))
    await run_burst_worker(settings)
    events = await asyncio.wait_for(reader, 30)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "failed" and set(kinds[:-1]) == {"progress"}, kinds
    committed = events[-2]["data"]["rows_read"]
    assert [e["data"]["rows_read"] for e in events[:-1]] == list(range(500, committed + 1, 500))
    final = events[-1]["data"]
    assert final["status"] == "failed" and "quote" in final["error"] and final["rows_inserted"] == committed
    # Asked again once it has ended: the failed event at once, alone.
    again = await asyncio.wait_for(read_events(await client.get(f"/jobs/{job_id}/events")), 10)
    assert [e["event"] for e in again] == ["failed"]

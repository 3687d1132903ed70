"""Helpers of the in-process API tests (tests/api/): upload forms, the API keys the auth and rate-limit tests
configure, the upload directory's listing, and the check that the service still answers after a hostile
request."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from gateway.http.keys import REDIS
from shared.config import Settings
from tests.support.jobs import run_burst_worker

PROBLEM = "application/problem+json"

CI_KEY = "ci-" + "k" * 40
OPS_KEY = "ops-" + "o" * 40
BARE_KEY = "bare-" + "b" * 40
# A named key, a named key given by its SHA-256, a bare key (named key3 by its position).
KEYS = (f"ci={CI_KEY}", f"ops=sha256:{hashlib.sha256(OPS_KEY.encode()).hexdigest()}", BARE_KEY)
AS_CI = {"Authorization": f"Bearer {CI_KEY}"}
AS_OPS = {"X-API-Key": OPS_KEY}


def form(
    filename: str, data: bytes, field: str = "file", content_type: str = "application/octet-stream", **fields: str
) -> aiohttp.FormData:
    """A multipart upload: the file as `field`, then the other form fields (options) in order. The part's
    content type is only a label (the service recognises a file by its content)."""
    fd = aiohttp.FormData()
    fd.add_field(field, data, filename=filename, content_type=content_type)
    for name, value in fields.items():
        fd.add_field(name, value)
    return fd


async def queued_arq_jobs(client: TestClient, settings: Settings) -> int:
    """arq jobs in the run's queue (a rejected upload must queue none)."""
    return int(await client.app[REDIS].zcard(settings.queue_name))


def stored(settings: Settings) -> list[str]:
    """The files in the upload directory (a rejected upload must leave none)."""
    return sorted(os.listdir(settings.upload_dir)) if os.path.isdir(settings.upload_dir) else []


async def still_answers(client: TestClient, headers: dict[str, str] | None = None) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/jobs?limit=1", headers=headers or {})
    assert response.status == 200, await response.text()


# tests/data/uk-500.csv has no header row: its columns by letter.
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

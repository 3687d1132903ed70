"""Previews (shared/spreadsheet/preview.py): POST /upload?preview=true describes the file (its sheets, the
header row found, each column with samples and the field it seems to hold, the suggested mapping), nothing is
queued until POST /jobs/{id}/start; a preview not started expires. Real app, real worker, MariaDB and Redis."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import openpyxl
import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.conftest import DATA
from tests.support.api import UK_500_BY_LETTER, counters, finished, form, queued_arq_jobs
from tests.support.workbooks import HEADER, csv_bytes, customers

pytestmark = pytest.mark.usefixtures("clean")


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
    assert await queued_arq_jobs(client, settings) == 0  # nothing imported or queued yet
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


async def test_missing_columns_answer_with_the_preview(client: TestClient) -> None:
    response = await client.post("/upload", data=form("people.csv", b"Vorname,Nachname,Notes\nAda,Lovelace,x\n"))
    assert response.status == 422
    body = await response.json()
    assert body["missing_columns"] == ["email"]
    assert [c["suggested_field"] for c in body["preview"]["columns"]] == ["first_name", "last_name", None]


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

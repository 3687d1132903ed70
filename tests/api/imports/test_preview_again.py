"""Previews without re-uploads (issue 20 point 2): POST /jobs/{id}/preview reads an uploaded preview's
stored file again with another header row, sheet or encoding; DELETE /jobs/{id} discards a preview that
will not be started; GET /jobs leaves previews out unless asked. The real app (every answer checked
against the OpenAPI document), real storage, a real worker, MariaDB and Redis."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.conftest import DATA
from tests.support.api import form, stored
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import HEADER, csv_bytes, customers, write_two_sheets

pytestmark = pytest.mark.usefixtures("clean")

# uk-500.csv has no header row: its columns by letter (H is phone1, I phone2).
UK_500_BY_LETTER = dict(zip(HEADER, "ABCDEFGHJK", strict=True))


async def preview_upload(client: TestClient, filename: str, data: bytes) -> dict[str, Any]:
    response = await client.post("/upload?preview=true", data=form(filename, data))
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def preview_again(client: TestClient, job_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/jobs/{job_id}/preview", json=body)
    return response.status, await response.json()


async def listed(client: TestClient, **query: str) -> list[str]:
    response = await client.get("/jobs", params={"limit": "200", **query})
    assert response.status == 200, await response.text()
    return [job["job_id"] for job in (await response.json())["items"]]


async def test_a_header_row_change_reads_the_stored_file_again_and_the_start_uses_it(
    client: TestClient, settings: Settings
) -> None:
    job = await preview_upload(client, "uk-500.csv", (DATA / "uk-500.csv").read_bytes())
    job_id = job["job_id"]
    files = stored(settings)
    assert f"{job_id}.csv" in files

    status, first_row = await preview_again(client, job_id, {"header_row": 1})
    assert status == 200 and first_row["preview"]["header_row"] == 1
    assert first_row["preview"]["columns"][0]["header"] == "Aleshia"  # its first customer, read as titles
    status, again = await preview_again(client, job_id, {"header_row": 0})
    assert status == 200, again
    assert again["job_id"] == job_id and again["status"] == "uploaded"
    assert again["start_url"] == f"/jobs/{job_id}/start" and again["status_url"] == f"/jobs/{job_id}"
    preview = again["preview"]
    assert preview["header_row"] == 0 and preview["columns"][0]["header"] is None
    assert preview["rows"][0]["row"] == 1 and preview["rows"][0]["values"][0] == "Aleshia"  # now a data row
    # Read from the file already stored: no second file, no second job.
    assert stored(settings) == files
    assert await listed(client, include_previews="true") == [job_id]

    # Back to row 1, and to 0 again: the preview follows each time, still one job.
    assert (await preview_again(client, job_id, {"header_row": 1}))[1]["preview"]["header_row"] == 1
    status, again = await preview_again(client, job_id, {"header_row": 0})
    assert status == 200 and again["preview"]["header_row"] == 0

    # A start that names only the mapping imports with the header row of the last preview.
    started = await client.post(f"/jobs/{job_id}/start", json={"mapping": UK_500_BY_LETTER})
    assert started.status == 202, await started.text()
    await run_burst_worker(settings)
    done = await (await client.get(f"/jobs/{job_id}")).json()
    assert done["status"] == "completed", done
    assert done["header_row"] == 0 and done["rows_read"] == 1500  # Aleshia's row imported too

    # Started: no preview any more.
    status, problem = await preview_again(client, job_id, {"header_row": 1})
    assert status == 409 and "not an uploaded preview" in problem["detail"]


async def test_a_sheet_change_reads_another_sheet_and_a_header_row_change_keeps_it(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    book = write_two_sheets(tmp_path / "two.xlsx", customers(4, domain="sheets.example"))
    job = await preview_upload(client, "two.xlsx", book.read_bytes())
    job_id = job["job_id"]
    assert job["preview"]["sheet"] in ("Notes", "People")

    status, people = await preview_again(client, job_id, {"sheet": "People"})
    assert status == 200 and people["preview"]["sheet"] == "People" and people["preview"]["header_row"] == 1
    assert people["preview"]["mapping"]["email"] == "email"
    assert [c["header"] for c in people["preview"]["columns"]] == HEADER
    # The header row alone: the sheet read is still the one chosen last.
    status, same_sheet = await preview_again(client, job_id, {"header_row": 2})
    assert status == 200 and same_sheet["preview"]["sheet"] == "People"
    assert same_sheet["preview"]["header_row"] == 2 and same_sheet["preview"]["columns"][0]["header"] == "First0"

    # Another sheet: its header row and mapping are found anew (row 2 of People means nothing there).
    status, notes = await preview_again(client, job_id, {"sheet": "Notes"})
    assert status == 200 and notes["preview"]["sheet"] == "Notes" and notes["preview"]["header_row"] == 1
    assert "email" not in notes["preview"]["mapping"]
    status, people = await preview_again(client, job_id, {"sheet": "People"})
    assert status == 200 and people["preview"]["header_row"] == 1
    assert people["preview"]["mapping"]["email"] == "email"

    # A sheet the workbook does not have: 422 naming the field; the preview and its file stay.
    status, problem = await preview_again(client, job_id, {"sheet": "Elsewhere"})
    assert status == 422 and any(e["field"] == "sheet" for e in problem["errors"]), problem
    assert f"{job_id}.xlsx" in stored(settings)
    assert (await (await client.get(f"/jobs/{job_id}")).json())["status"] == "uploaded"
    started = await client.post(f"/jobs/{job_id}/start")
    assert started.status == 202, await started.text()
    await run_burst_worker(settings)
    done = await (await client.get(f"/jobs/{job_id}")).json()
    assert (done["status"], done["sheet"], done["rows_inserted"]) == ("completed", "People", 4), done


async def test_preview_again_refuses_what_it_cannot_do(client: TestClient) -> None:
    status, problem = await preview_again(client, str(uuid.uuid4()), {"header_row": 0})
    assert status == 404, problem
    response = await client.post("/jobs/not-a-uuid/preview", json={})
    assert response.status == 400
    job = await preview_upload(client, "c.csv", csv_bytes(customers(3)))
    status, problem = await preview_again(client, job["job_id"], {"dry_run": True})
    assert status == 422 and problem["errors"][0]["field"] == "dry_run"
    status, problem = await preview_again(client, job["job_id"], {"header_row": -1})
    assert status == 422 and problem["errors"][0]["field"] == "header_row"
    response = await client.post(
        f"/jobs/{job['job_id']}/preview", data=b"[1]", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    # A queued job (uploaded without preview) is no preview.
    queued = await client.post("/upload", data=form("q.csv", csv_bytes(customers(2))))
    status, problem = await preview_again(client, (await queued.json())["job_id"], {})
    assert status == 409 and "queued" in problem["detail"]


async def test_delete_discards_a_preview_and_its_file_and_nothing_else(client: TestClient, settings: Settings) -> None:
    job = await preview_upload(client, "c.csv", csv_bytes(customers(3)))
    job_id = job["job_id"]
    before = stored(settings)
    assert f"{job_id}.csv" in before
    response = await client.delete(f"/jobs/{job_id}")
    assert response.status == 204 and await response.read() == b""
    assert stored(settings) == [name for name in before if name != f"{job_id}.csv"]
    assert (await client.get(f"/jobs/{job_id}")).status == 404
    assert (await client.delete(f"/jobs/{job_id}")).status == 404
    assert (await client.post(f"/jobs/{job_id}/start")).status == 404
    assert await listed(client, include_previews="true") == []

    # Any other job is kept, with its file: 409.
    queued = await (await client.post("/upload", data=form("q.csv", csv_bytes(customers(2))))).json()
    response = await client.delete(f"/jobs/{queued['job_id']}")
    assert response.status == 409
    assert "not a preview" in (await response.json())["detail"]
    assert f"{queued['job_id']}.csv" in stored(settings)
    await run_burst_worker(settings)
    assert (await client.delete(f"/jobs/{queued['job_id']}")).status == 409  # completed: kept too
    assert (await (await client.get(f"/jobs/{queued['job_id']}")).json())["status"] == "completed"
    assert (await client.delete("/jobs/not-a-uuid")).status == 400


async def test_recent_jobs_leave_previews_out_unless_asked(client: TestClient, settings: Settings) -> None:
    imported = await (await client.post("/upload", data=form("a.csv", csv_bytes(customers(2))))).json()
    await run_burst_worker(settings)
    queued = await (await client.post("/upload", data=form("b.csv", csv_bytes(customers(2, start=5))))).json()
    preview = await preview_upload(client, "c.csv", csv_bytes(customers(2, start=9)))
    done, waiting, shown = imported["job_id"], queued["job_id"], preview["job_id"]

    assert await listed(client) == [waiting, done]  # newest first, no preview
    assert await listed(client, include_previews="true") == [shown, waiting, done]
    assert await listed(client, status="uploaded") == [shown]
    assert await listed(client, status="queued,completed") == [waiting, done]
    assert await listed(client, status="completed", include_previews="true") == [shown, done]
    assert await listed(client, status="running") == []
    # Pages follow the filter: the cursor of a page of one goes on to the next.
    first = await (await client.get("/jobs", params={"limit": "1", "include_previews": "true"})).json()
    assert [j["job_id"] for j in first["items"]] == [shown]
    second = await (
        await client.get("/jobs", params={"limit": "1", "include_previews": "true", "cursor": first["next_cursor"]})
    ).json()
    assert [j["job_id"] for j in second["items"]] == [waiting]

    for bad in ("bogus", "Queued", "queued,", "queued, running", ""):
        response = await client.get("/jobs", params={"status": bad})
        assert response.status == 422, bad
        assert (await response.json())["errors"][0]["field"] == "status"
    response = await client.get("/jobs", params={"include_previews": "maybe"})
    assert response.status == 422

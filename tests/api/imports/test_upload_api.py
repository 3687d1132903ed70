"""POST /upload and the job endpoints, through the real app (pytest-aiohttp) and real storage."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.conftest import DATA
from tests.support.api import PROBLEM, form, queued_arq_jobs, stored
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import csv_bytes, customers

ODD = DATA / "odd-xlsx"


async def test_upload_answers_202_with_job_id_and_location(client: TestClient, settings: Settings) -> None:
    data = (DATA / "Sample_Employee_data_xlsx.xlsx").read_bytes()
    response = await client.post("/upload", data=form("Sample_Employee_data_xlsx.xlsx", data))
    assert response.status == 202
    body = await response.json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/jobs/{body['job_id']}"
    assert response.headers["Location"] == body["status_url"]
    # Stored under the job id, never the client's filename.
    assert f"{body['job_id']}.xlsx" in stored(settings)
    job = await (await client.get(body["status_url"])).json()
    assert job["status"] == "queued" and job["filename"] == "Sample_Employee_data_xlsx.xlsx"
    assert job["size_bytes"] == len(data)
    assert await queued_arq_jobs(client, settings) >= 1


@pytest.mark.parametrize(
    ("filename", "data", "status", "fragment"),
    [
        ("empty.xlsx", b"", 400, "empty"),
        ("empty.csv", b"", 400, "empty"),
        ("notes.pdf", b"%PDF-1.7 not a sheet", 415, "not a supported file"),
        ("binary.csv", b"\x00\x01\x02\x03", 415, "binary"),
        ("broken.xlsx", b"PK\x03\x04this is not a zip", 422, "not a valid .xlsx"),
        (
            "calamine__pass_protected.xlsx",
            (ODD / "calamine__pass_protected.xlsx").read_bytes(),
            415,
            "password-protected",
        ),
        # 68 bytes of text named .xls: read as the text it is, whose first line is no header.
        ("calamine__too_small.xls", (ODD / "calamine__too_small.xls").read_bytes(), 422, "missing required column"),
        (
            "tealeg__badfile_noWorksheets.xlsx",
            (ODD / "tealeg__badfile_noWorksheets.xlsx").read_bytes(),
            422,
            "worksheet part",
        ),
    ],
)
async def test_bad_files_get_a_problem_and_nothing_is_queued(
    client: TestClient, settings: Settings, filename: str, data: bytes, status: int, fragment: str
) -> None:
    before_files = stored(settings)
    before_jobs = await queued_arq_jobs(client, settings)
    response = await client.post("/upload", data=form(filename, data))
    assert response.status == status
    assert response.content_type == PROBLEM
    problem = await response.json()
    assert problem["status"] == status and fragment in problem["detail"]
    assert stored(settings) == before_files
    assert await queued_arq_jobs(client, settings) == before_jobs
    listing = await (await client.get("/jobs")).json()
    assert listing["items"] == []


async def test_job_endpoints_after_an_import(client: TestClient, settings: Settings) -> None:
    rows = customers(30)
    rows[4][8] = "nope"
    rows[9][8] = "also-bad"
    response = await client.post("/upload", data=form("people.csv", csv_bytes(rows)))
    job_id = (await response.json())["job_id"]
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed"
    assert (job["rows_read"], job["rows_inserted"], job["rows_invalid"]) == (30, 28, 2)
    assert job["progress"]["percent"] == 100.0
    assert [e["row"] for e in job["errors"]] == [6, 11]
    page = await (await client.get(f"/jobs/{job_id}/errors?limit=1")).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    page2 = await (await client.get(f"/jobs/{job_id}/errors?limit=1&cursor={page['next_cursor']}")).json()
    assert page2["items"][0]["row"] == 11 and page2["next_cursor"] is None
    csv_response = await client.get(f"/jobs/{job_id}/errors?format=csv")
    assert csv_response.content_type == "text/csv"
    text = await csv_response.text()
    lines = text.splitlines()
    assert lines[0] == "row,column,field,value,message" and lines[1].startswith("6,email,email,")
    listing = await (await client.get("/jobs?limit=1")).json()
    assert listing["items"][0]["job_id"] == job_id
    # A list item leaves the row errors out rather than claim there are none.
    assert "errors" not in listing["items"][0] and listing["items"][0]["rows_invalid"] == 2
    assert job["request_id"] == response.headers["X-Request-ID"]
    assert job["progress"]["rows_total_estimate"] == 30 and job["duration_s"] >= 0


async def test_jobs_listing_is_newest_first_and_paginated(client: TestClient) -> None:
    ids = []
    for i in range(3):
        response = await client.post("/upload", data=form(f"f{i}.csv", csv_bytes(customers(1, start=i))))
        ids.append((await response.json())["job_id"])
    first = await (await client.get("/jobs?limit=2")).json()
    second = await (await client.get(f"/jobs?limit=2&cursor={first['next_cursor']}")).json()
    seen = [j["job_id"] for j in first["items"] + second["items"]]
    assert seen == list(reversed(ids))
    assert second["next_cursor"] is None


async def test_job_lookups_validate_ids(client: TestClient) -> None:
    response = await client.get("/jobs/not-a-uuid")
    assert response.status == 400 and response.content_type == PROBLEM
    response = await client.get("/jobs/00000000-0000-4000-8000-000000000000")
    assert response.status == 404 and response.content_type == PROBLEM
    response = await client.get("/jobs?limit=0")
    assert response.status == 422
    response = await client.get("/jobs?cursor=%%%")
    assert response.status == 400


async def test_health_metrics_and_docs(client: TestClient) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await (await client.get("/readyz")).json()
    assert ready["checks"] == {"mysql": "up", "redis": "up"}
    await client.get("/jobs")
    metrics = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="GET",route="/jobs",status="200"}' in metrics
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.") and "/upload" in spec["paths"] and "/customers/{id}" in spec["paths"]
    docs = await client.get("/docs")
    assert "openapi.json" in await docs.text()
    response = await client.get("/no/such/path")
    assert response.status == 404 and response.content_type == PROBLEM
    assert response.headers["X-Request-ID"]


def test_odd_files_list_is_complete() -> None:
    # Every odd seed gets an answer somewhere in the suite (upload here, or a job in test_import).
    assert {p.name for p in Path(ODD).glob("*.xls*")} == {
        "calamine__empty_shared_string_value.xlsx",
        "calamine__empty_sheet.xlsx",
        "calamine__has_x000D_.xlsx",
        "calamine__inlineStr_cdata.xlsx",
        "calamine__pass_protected.xlsx",
        "calamine__strict_iso_paths.xlsx",
        "calamine__too_small.xls",
        "tealeg__badfile_noWorksheets.xlsx",
    }


async def test_a_csv_under_an_xlsx_name_imports(client: TestClient, settings: Settings) -> None:
    response = await client.post("/upload", data=form("customers.xlsx", csv_bytes(customers(4))))
    assert response.status == 202, await response.text()
    await run_burst_worker(settings)
    job = await (await client.get((await response.json())["status_url"])).json()
    assert (job["status"], job["file_kind"], job["rows_inserted"]) == ("completed", "csv", 4)


async def test_a_header_without_required_columns_is_422_at_upload(client: TestClient, settings: Settings) -> None:
    before = stored(settings)
    for filename, data in (
        ("notes.txt", b"hello\n"),
        ("no-email.csv", b"first_name,last_name,phone\nAda,Lovelace,0113 496 0000\n"),
    ):
        response = await client.post("/upload", data=form(filename, data))
        assert response.status == 422, await response.text()
        body = await response.json()
        assert "missing required column(s)" in body["detail"]
        assert body["missing_columns"] == ["email"]  # the only column a file must have
        assert body["header"] == data.decode().splitlines()[0].split(",")
    assert await queued_arq_jobs(client, settings) == 0
    assert stored(settings) == before
    assert (await (await client.get("/jobs")).json())["items"] == []


async def test_options_may_come_as_form_fields_after_the_file(client: TestClient, settings: Settings) -> None:
    before = stored(settings)
    fd = form("a.csv", csv_bytes(customers(2)))
    fd.add_field("dry_run", "true")
    response = await client.post("/upload", data=fd)
    assert response.status == 202 and (await response.json())["dry_run"] is True
    fd = form("a.csv", csv_bytes(customers(2)))
    fd.add_field("colour", "blue")
    response = await client.post("/upload", data=fd)
    assert response.status == 400 and (await response.json())["errors"][0]["field"] == "colour"
    fd = form("a.csv", csv_bytes(customers(2)))
    fd.add_field("dry_run", "true")
    response = await client.post("/upload?dry_run=false", data=fd)
    assert response.status == 400 and (await response.json())["errors"][0]["field"] == "dry_run"
    accepted = (await (await client.get("/jobs")).json())["items"][0]["job_id"]
    assert sorted(set(stored(settings)) - set(before)) == [f"{accepted}.csv"]

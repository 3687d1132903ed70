"""The job document (shared.imports.document): dumped by the one schema the API document shows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.imports import document
from shared.imports.document import JobSchema, job_document
from shared.imports.job_repo import Job
from shared.imports.options import ImportOptions

AT = dt.datetime(2026, 12, 5, 9, 0, 0, 123456)


def job(**changes: Any) -> Job:
    values: dict[str, Any] = {
        "id": "0f0e0d0c-0000-4000-8000-000000000001",
        "kind": "import",
        "reverts": None,
        "reverted_by": None,
        "params": {},
        "filename": "a.csv",
        "file_kind": "csv",
        "size_bytes": 10,
        "sha256": "ab",
        "dry_run": False,
        "options": ImportOptions(mapping={"email": "A", "address": ["B", "C"]}, mode="insert"),
        "callback_url": None,
        "webhook": None,
        "status": "running",
        "rows_read": 5,
        "rows_inserted": 1,
        "rows_updated": 1,
        "rows_unchanged": 1,
        "rows_invalid": 1,
        "rows_skipped": 1,
        "rows_deleted": 0,
        "rows_restored": 0,
        "rows_total_estimate": 50,
        "checkpoint_row": 6,
        "errors_stored": 1,
        "error_rows_stored": 1,
        "reader": "csv",
        "sheet": None,
        "encoding": "utf-8",
        "header_row": 1,
        "source_header": ["x"],
        "warnings": ["w"],
        "error": None,
        "attempts": 1,
        "request_id": "r",
        "uploaded_by": None,
        "created_at": AT,
        "started_at": AT,
        "finished_at": None,
        "updated_at": AT,
    }
    values.update(changes)
    return Job(**values)


def test_the_document_has_every_field_the_schema_declares_and_no_other() -> None:
    declared = set(JobSchema().fields)
    listed = job_document(job(), None)
    assert set(listed) == declared - {"errors", "parts"}  # list items carry neither
    full = job_document(job(), [(7, 4, "Email", "email", "bad", "Not an email")], [])
    assert set(full) == declared
    assert full["errors"] == [
        {"row": 4, "column": "Email", "field": "email", "value": "bad", "message": "Not an email"}
    ]
    assert full["parts"] == []


def test_what_the_row_does_not_hold_is_computed_by_the_fields() -> None:
    running = job_document(job(), None)
    assert running["job_id"] == "0f0e0d0c-0000-4000-8000-000000000001"
    assert running["progress"] == {"rows_processed": 5, "rows_total_estimate": 50, "percent": 10.0}
    assert (running["mode"], running["blank_cells"], running["match_on"]) == ("insert", "keep", "email")
    assert running["mapping"] == {"email": "A", "address": ["B", "C"]}
    assert running["created_at"] == "2026-12-05T09:00:00.123456Z" and running["finished_at"] is None
    assert running["duration_s"] is None
    done = job_document(job(status="completed", finished_at=AT + dt.timedelta(seconds=3.2104)), None)
    assert done["progress"]["percent"] == 100.0 and done["duration_s"] == 3.21
    queued = job_document(job(status="queued", rows_total_estimate=None, file_kind=""), None)
    assert queued["progress"]["percent"] == 0.0 and queued["file_kind"] is None


def test_the_api_document_shows_the_schema_that_dumps_it() -> None:
    from gateway.openapi import schemas

    assert schemas.JobSchema is document.JobSchema
    assert schemas.RowErrorSchema is document.RowErrorSchema

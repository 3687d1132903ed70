"""SQL for `import_jobs` and `import_errors`: the durable record of every import.

A running job is held under a lease (`lease_owner`, `lease_expires_at`) that its worker renews with
every batch. A worker killed outright stops renewing; once the lease lapses the sweeper re-queues
the job and another worker resumes it from `checkpoint_row`. Every batch commit checks the lease, so
a worker that lost its lease can never commit rows a second time.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomysql

from shared.imports.options import ImportOptions

JOB_COLUMNS = (
    "id",
    "kind",
    "reverts",
    "reverted_by",
    "params",
    "filename",
    "file_kind",
    "size_bytes",
    "sha256",
    "dry_run",
    "options",
    "callback_url",
    "webhook",
    "status",
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_invalid",
    "rows_skipped",
    "rows_deleted",
    "rows_restored",
    "rows_total_estimate",
    "checkpoint_row",
    "errors_stored",
    "error_rows_stored",
    "reader",
    "sheet",
    "encoding",
    "header_row",
    "source_header",
    "warnings",
    "error",
    "attempts",
    "request_id",
    "uploaded_by",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
)
_SELECT = "SELECT " + ", ".join(JOB_COLUMNS) + " FROM import_jobs"

UPLOADED, QUEUED, RUNNING, COMPLETED, FAILED = "uploaded", "queued", "running", "completed", "failed"
UNFINISHED = (UPLOADED, QUEUED, RUNNING)
CANCELLED = "cancelled"
FINAL_STATUSES = (COMPLETED, FAILED, CANCELLED)  # a job in one of these never changes again
STATUSES = (*UNFINISHED, *FINAL_STATUSES)  # every status a job can have
# What a job does: imports a file, undoes an import (or a bulk delete), deletes customers by search.
IMPORT, REVERT, DELETE = "import", "revert", "delete"


@dataclass
class Job:
    id: str
    kind: str  # IMPORT, REVERT (undoes the job `reverts` names) or DELETE (a bulk delete by search)
    reverts: str | None
    reverted_by: str | None  # the revert job queued for this one
    params: dict[str, Any]  # a revert's `force`, a delete's `q`
    filename: str
    file_kind: str
    size_bytes: int
    sha256: str
    dry_run: bool
    options: ImportOptions
    callback_url: str | None
    webhook: dict[str, Any] | None
    status: str
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_invalid: int
    rows_skipped: int  # left alone by the import's mode (insert: known emails; update: new ones)
    rows_deleted: int
    rows_restored: int
    rows_total_estimate: int | None
    checkpoint_row: int
    errors_stored: int
    error_rows_stored: int
    reader: str | None
    sheet: str | None
    encoding: str | None
    header_row: int | None
    source_header: list[str | None] | None
    warnings: list[str]
    error: str | None
    attempts: int
    request_id: str | None
    uploaded_by: str | None  # the name of the API key that uploaded it (never the key)
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        values = dict(zip(JOB_COLUMNS, row, strict=True))
        values["dry_run"] = bool(values["dry_run"])
        values["params"] = json.loads(values["params"]) if values["params"] else {}
        values["warnings"] = json.loads(values["warnings"]) if values["warnings"] else []
        values["options"] = ImportOptions.from_json(values["options"])
        values["webhook"] = json.loads(values["webhook"]) if values["webhook"] else None
        values["source_header"] = json.loads(values["source_header"]) if values["source_header"] else None
        return cls(**values)


RowError = tuple[int, str | None, str | None, str | None, str]
StoredError = tuple[int, int, str | None, str | None, str | None, str]


def row_error(
    row: int, message: str, *, column: str | None = None, field: str | None = None, value: str | None = None
) -> RowError:
    """A row error as BatchResult.errors holds it (a revert's conflicts use the customer id as `row`)."""
    return (row, column, field, value, message)


@dataclass
class BatchResult:
    """What one committed batch adds to the job."""

    last_row: int
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    invalid: int
    # RowError: (row, the column as the file shows it (header text or letter), the field, the offending
    # value (at most 100 characters), a plain message); any of the middle three None when not known.
    errors: list[RowError]
    # The cells of the invalid rows, as read, for the rejected-rows download.
    rejected: list[tuple[int, list[str | None]]] = field(default_factory=list)
    # A revert's and a bulk delete's: customers deleted, customers given back their earlier values.
    deleted: int = 0
    restored: int = 0
    skipped: int = 0  # rows the import's mode left alone


class LeaseLost(Exception):
    """Another worker owns the job now; this one must stop without committing."""


async def create(
    cur: aiomysql.Cursor,
    *,
    job_id: str,
    filename: str,
    file_kind: str,
    size_bytes: int,
    sha256: str,
    dry_run: bool,
    request_id: str | None = None,
    options: ImportOptions | None = None,
    status: str = QUEUED,
    callback_url: str | None = None,
    uploaded_by: str | None = None,
) -> None:
    await cur.execute(
        "INSERT INTO import_jobs (id, filename, file_kind, size_bytes, sha256, dry_run, options, status, request_id,"
        " callback_url, uploaded_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            job_id,
            filename,
            file_kind,
            size_bytes,
            sha256,
            int(dry_run),
            (options or ImportOptions()).to_json(),
            status,
            request_id,
            callback_url,
            uploaded_by,
        ),
    )


async def start(
    cur: aiomysql.Cursor, job_id: str, options: ImportOptions, dry_run: bool | None, callback_url: str | None
) -> bool:
    """Queue a job that was uploaded for a preview; False if it is not waiting any more."""
    await cur.execute(
        "UPDATE import_jobs SET status = %s, options = %s, dry_run = COALESCE(%s, dry_run),"
        " callback_url = COALESCE(%s, callback_url) WHERE id = %s AND status = %s",
        (QUEUED, options.to_json(), None if dry_run is None else int(dry_run), callback_url, job_id, UPLOADED),
    )
    return bool(cur.rowcount)


async def set_preview_options(cur: aiomysql.Cursor, job_id: str, options: ImportOptions) -> bool:
    """A preview read again (other header row, sheet, encoding): the options its start builds on now.
    False when the job is no longer a preview (updated_at moves, so a matched row always counts as changed)."""
    await cur.execute(
        "UPDATE import_jobs SET options = %s, updated_at = CURRENT_TIMESTAMP(6) WHERE id = %s AND status = %s",
        (options.to_json(), job_id, UPLOADED),
    )
    return bool(cur.rowcount)


async def delete_preview(cur: aiomysql.Cursor, job_id: str) -> bool:
    """Forget a preview nobody will start (a preview has no errors, parts or history to keep). False
    when the job is not (or no longer) a preview."""
    await cur.execute("DELETE FROM import_jobs WHERE id = %s AND status = %s", (job_id, UPLOADED))
    return bool(cur.rowcount)


async def expire_uploaded(cur: aiomysql.Cursor, older_than_s: int) -> list[str]:
    """Fail previews nobody started within `older_than_s`; returns their ids (their files go)."""
    await cur.execute(
        "SELECT id FROM import_jobs WHERE status = %s AND created_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND"
        " LIMIT 500",
        (UPLOADED, older_than_s),
    )
    ids = [row[0] for row in await cur.fetchall()]
    if ids:
        marks = ", ".join(["%s"] * len(ids))
        await cur.execute(
            "UPDATE import_jobs SET status = %s, error = %s, finished_at = CURRENT_TIMESTAMP(6)"
            f" WHERE status = %s AND id IN ({marks})",
            (
                FAILED,
                f"the preview was not started within {older_than_s} s and has expired: upload the file again",
                UPLOADED,
                *ids,
            ),
        )
    return ids


async def get(cur: aiomysql.Cursor, job_id: str) -> Job | None:
    await cur.execute(_SELECT + " WHERE id = %s", (job_id,))
    row = await cur.fetchone()
    return Job.from_row(row) if row else None


async def list_recent(
    cur: aiomysql.Cursor,
    *,
    before: tuple[dt.datetime, str] | None,
    limit: int,
    statuses: Sequence[str] | None = None,
) -> list[Job]:
    """Newest first, after the keyset `before`; only jobs in `statuses` when given."""
    where: list[str] = []
    args: list[Any] = []
    if statuses is not None:
        where.append(f"status IN ({', '.join(['%s'] * len(statuses))})")
        args += statuses
    if before is not None:
        created, job_id = before
        where.append("(created_at < %s OR (created_at = %s AND id < %s))")
        args += [created, created, job_id]
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    await cur.execute(_SELECT + condition + " ORDER BY created_at DESC, id DESC LIMIT %s", (*args, limit))
    return [Job.from_row(row) for row in await cur.fetchall()]


async def delete(cur: aiomysql.Cursor, job_id: str) -> None:
    await cur.execute("DELETE FROM import_jobs WHERE id = %s", (job_id,))


async def claim(cur: aiomysql.Cursor, job_id: str, owner: str, lease_s: int) -> Job | None:
    """Take the job's lease if it is free, lapsed or already ours; None if another worker holds it
    or the job is finished."""
    await cur.execute(
        "UPDATE import_jobs SET status = %s, lease_owner = %s,"
        " lease_expires_at = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND,"
        " attempts = attempts + 1, started_at = COALESCE(started_at, CURRENT_TIMESTAMP(6))"
        " WHERE id = %s AND status IN (%s, %s)"
        " AND (lease_owner IS NULL OR lease_owner = %s OR lease_expires_at < CURRENT_TIMESTAMP(6))",
        (RUNNING, owner, lease_s, job_id, QUEUED, RUNNING, owner),
    )
    if not cur.rowcount:
        return None
    return await get(cur, job_id)


async def renew(cur: aiomysql.Cursor, job_id: str, owner: str, lease_s: int) -> None:
    await cur.execute(
        "UPDATE import_jobs SET lease_expires_at = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND"
        " WHERE id = %s AND lease_owner = %s AND status = %s",
        (lease_s, job_id, owner, RUNNING),
    )
    if not cur.rowcount:
        raise LeaseLost(job_id)


# A header cell kept for the rejected-rows download is cut to this many characters, so a header of
# Excel's 16,384 columns fits source_header (MEDIUMTEXT, 16 MB) whatever its cells hold.
HEADER_TEXT_MAX = 255


def _cut_header(text: str | None) -> str | None:
    return text if text is None or len(text) <= HEADER_TEXT_MAX else text[:HEADER_TEXT_MAX]


async def set_reader(
    cur: aiomysql.Cursor,
    job_id: str,
    owner: str,
    reader: str,
    total: int | None,
    warnings: list[str],
    *,
    sheet: str | None = None,
    encoding: str | None = None,
    header_row: int | None = None,
    source_header: list[str | None] | None = None,
) -> None:
    """What the worker found in the file: the reader, sheet, encoding, header and the estimate."""
    await cur.execute(
        "UPDATE import_jobs SET reader = %s, rows_total_estimate = %s, warnings = %s, sheet = %s, encoding = %s,"
        " header_row = %s, source_header = %s WHERE id = %s AND lease_owner = %s",
        (
            reader,
            total,
            json.dumps(warnings),
            sheet,
            encoding,
            header_row,
            None if source_header is None else json.dumps([_cut_header(text) for text in source_header]),
            job_id,
            owner,
        ),
    )


async def append_warnings(cur: aiomysql.Cursor, job_id: str, warnings: Sequence[str]) -> None:
    """Inside the caller's transaction: add warnings the job does not hold yet (a part of a split job
    reports its own; a part resumed after a crash reports the same ones again)."""
    await cur.execute("SELECT warnings FROM import_jobs WHERE id = %s FOR UPDATE", (job_id,))
    row = await cur.fetchone()
    if row is None:
        return
    held = json.loads(row[0]) if row[0] else []
    added = [warning for warning in warnings if warning not in held]
    if added:
        await cur.execute("UPDATE import_jobs SET warnings = %s WHERE id = %s", (json.dumps(held + added), job_id))


async def commit_batch(
    cur: aiomysql.Cursor, job_id: str, owner: str, lease_s: int, batch: BatchResult, max_error_rows: int
) -> None:
    """Inside the batch's transaction: advance counters and checkpoint, renew the lease and store
    the errors of up to `max_error_rows` rows per job (rows, not messages: a row with three problems
    counts once). Raises LeaseLost (the caller rolls back) if the lease is gone."""
    await cur.execute(
        "SELECT error_rows_stored FROM import_jobs WHERE id = %s AND lease_owner = %s AND status = %s FOR UPDATE",
        (job_id, owner, RUNNING),
    )
    row = await cur.fetchone()
    if row is None:
        raise LeaseLost(job_id)
    errors, error_rows = await store_errors(cur, job_id, batch, max(max_error_rows - row[0], 0))
    await cur.execute(
        "UPDATE import_jobs SET rows_read = rows_read + %s, rows_inserted = rows_inserted + %s,"
        " rows_updated = rows_updated + %s, rows_unchanged = rows_unchanged + %s,"
        " rows_invalid = rows_invalid + %s, rows_deleted = rows_deleted + %s, rows_restored = rows_restored + %s,"
        " rows_skipped = rows_skipped + %s, checkpoint_row = %s, errors_stored = errors_stored + %s,"
        " error_rows_stored = error_rows_stored + %s,"
        " lease_expires_at = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND WHERE id = %s",
        (
            batch.rows_read,
            batch.inserted,
            batch.updated,
            batch.unchanged,
            batch.invalid,
            batch.deleted,
            batch.restored,
            batch.skipped,
            batch.last_row,
            len(errors),
            error_rows,
            lease_s,
            job_id,
        ),
    )


async def store_errors(cur: aiomysql.Cursor, job_id: str, batch: BatchResult, room: int) -> tuple[list[RowError], int]:
    """Store the errors (and rejected cells) of the batch's first `room` invalid rows; returns the
    errors stored and how many rows they belong to."""
    errors, error_rows = cap_error_rows(batch.errors, room)
    if errors:
        await cur.executemany(
            "INSERT INTO import_errors (job_id, excel_row, column_name, field_name, cell_value, message)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (job_id, number, _cut(column, 255), _cut(name, 80), _cut(value, 100), message[:512])
                for number, column, name, value, message in errors
            ],
        )
        kept = {error[0] for error in errors}
        messages: dict[int, list[str]] = {}
        for number, column, _name, _value, message in errors:
            messages.setdefault(number, []).append(f"{column}: {message}" if column else message)
        rejected = [
            (job_id, number, json.dumps(cells), "; ".join(messages[number]))
            for number, cells in batch.rejected
            if number in kept
        ]
        if rejected:
            await cur.executemany(
                "INSERT INTO import_rejected_rows (job_id, excel_row, cells, errors) VALUES (%s, %s, %s, %s)",
                rejected,
            )
    return errors, error_rows


def _cut(text: str | None, size: int) -> str | None:
    return None if text is None else text[:size]


def cap_error_rows(errors: Sequence[RowError], room: int) -> tuple[list[RowError], int]:
    """The errors of the first `room` rows (every message of a kept row), and how many rows that is."""
    kept: list[RowError] = []
    rows: set[int] = set()
    for error in errors:
        if error[0] not in rows:
            if len(rows) >= room:
                break
            rows.add(error[0])
        kept.append(error)
    return kept, len(rows)


_END = (
    "UPDATE import_jobs SET status = %s, error = %s, finished_at = CURRENT_TIMESTAMP(6),"
    " rows_total_estimate = IF(%s, rows_read, rows_total_estimate),"
    " webhook = IF(callback_url IS NULL, NULL, %s),"
    " webhook_due_at = IF(callback_url IS NULL, NULL, CURRENT_TIMESTAMP(6)),"
    " lease_owner = NULL, lease_expires_at = NULL WHERE id = %s"
)


async def finish(cur: aiomysql.Cursor, job_id: str, owner: str | None, status: str, error: str | None) -> bool:
    """End the job (held by `owner`; None: a job split into parts, which holds no lease of its own).
    A completed job's total is no longer an estimate: it is the rows read. A job with a callback_url
    gets its webhook delivery due now, in the same statement: whatever happens to this worker next,
    the sweep finds the delivery owed."""
    args = (status, error, status == COMPLETED, json.dumps(new_webhook_state()), job_id)
    if owner is None:
        await cur.execute(_END, args)
    else:
        await cur.execute(_END + " AND lease_owner = %s", (*args, owner))
    return bool(cur.rowcount)


async def fail_unclaimed(cur: aiomysql.Cursor, job_id: str, error: str) -> None:
    await cur.execute(
        "UPDATE import_jobs SET status = %s, error = %s, finished_at = CURRENT_TIMESTAMP(6),"
        " lease_owner = NULL, lease_expires_at = NULL WHERE id = %s AND status IN (%s, %s)",
        (FAILED, error, job_id, QUEUED, RUNNING),
    )


async def release(cur: aiomysql.Cursor, job_id: str, owner: str) -> None:
    """Give the lease back at once (clean shutdown) so another worker can resume without waiting."""
    await cur.execute(
        "UPDATE import_jobs SET lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = %s AND lease_owner = %s AND status = %s",
        (job_id, owner, RUNNING),
    )


async def kinds(cur: aiomysql.Cursor, ids: Sequence[str]) -> dict[str, str]:
    """The kind of each of these jobs (the sweep queues each with its own function)."""
    if not ids:
        return {}
    marks = ", ".join(["%s"] * len(ids))
    await cur.execute(f"SELECT id, kind FROM import_jobs WHERE id IN ({marks})", list(ids))
    return {row[0]: row[1] for row in await cur.fetchall()}


async def needing_a_worker(cur: aiomysql.Cursor, queued_grace_s: int) -> list[tuple[str, int]]:
    """Jobs nobody is working on: running with a lapsed or released lease, or queued for longer
    than the grace period (their enqueue may have been lost)."""
    await cur.execute(
        "SELECT id, attempts FROM import_jobs WHERE"
        " (status = %s AND (lease_expires_at IS NULL OR lease_expires_at < CURRENT_TIMESTAMP(6))"
        # A job split into parts has no lease of its own: its parts do (shared.imports.part_repo).
        " AND NOT EXISTS (SELECT 1 FROM import_job_parts p WHERE p.job_id = import_jobs.id))"
        " OR (status = %s AND created_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND)"
        " ORDER BY created_at LIMIT 100",
        (RUNNING, QUEUED, queued_grace_s),
    )
    return [(row[0], int(row[1])) for row in await cur.fetchall()]


async def count_unfinished(cur: aiomysql.Cursor) -> dict[str, int]:
    """Jobs not yet finished, by status (for /metrics): a range of ix_import_jobs_status, so its cost
    follows the jobs in flight, not the history of finished ones."""
    await cur.execute(
        "SELECT status, COUNT(*) FROM import_jobs WHERE status IN (%s, %s, %s) GROUP BY status", UNFINISHED
    )
    return {str(row[0]): int(row[1]) for row in await cur.fetchall()}


async def list_errors(cur: aiomysql.Cursor, job_id: str, *, after_id: int, limit: int | None) -> list[StoredError]:
    """(id, row, column, field, value, message) of the job's stored row errors after `after_id`."""
    sql = (
        "SELECT id, excel_row, column_name, field_name, cell_value, message FROM import_errors"
        " WHERE job_id = %s AND id > %s ORDER BY id"
    )
    params: list[Any] = [job_id, after_id]
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    await cur.execute(sql, params)
    return [(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5]) for r in await cur.fetchall()]


async def list_rejected(cur: aiomysql.Cursor, job_id: str) -> list[tuple[int, list[str | None], str]]:
    """(row, cells as read, what is wrong) of the job's stored invalid rows, in file order."""
    await cur.execute(
        "SELECT excel_row, cells, errors FROM import_rejected_rows WHERE job_id = %s ORDER BY id", (job_id,)
    )
    return [(int(r[0]), json.loads(r[1]), r[2]) for r in await cur.fetchall()]


def new_webhook_state() -> dict[str, Any]:
    return {"status": "pending", "delivery_id": str(uuid.uuid4()), "attempts": []}


async def record_webhook(cur: aiomysql.Cursor, job_id: str, state: dict[str, Any], retry_in_s: float | None) -> None:
    """The delivery's state after an attempt; `retry_in_s` None: no more attempts are owed."""
    await cur.execute(
        "UPDATE import_jobs SET webhook = %s,"
        " webhook_due_at = IF(%s, CURRENT_TIMESTAMP(6) + INTERVAL %s MICROSECOND, NULL) WHERE id = %s",
        (json.dumps(state), retry_in_s is not None, int((retry_in_s or 0) * 1_000_000), job_id),
    )


async def webhooks_overdue(cur: aiomysql.Cursor, grace_s: int) -> list[tuple[str, int]]:
    """(job id, attempts made) of deliveries due more than `grace_s` ago: their queued attempt was
    lost (a worker died between recording the job's end and queueing it, say)."""
    await cur.execute(
        "SELECT id, webhook FROM import_jobs WHERE webhook_due_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND"
        " ORDER BY webhook_due_at LIMIT 100",
        (grace_s,),
    )
    return [(row[0], len(json.loads(row[1] or "{}").get("attempts", []))) for row in await cur.fetchall()]


# -- revert, bulk delete, cancel ---------------------------------------------------------------------
async def create_task(
    cur: aiomysql.Cursor,
    *,
    job_id: str,
    kind: str,
    label: str,
    params: dict[str, Any],
    reverts: str | None = None,
    total: int | None = None,
    request_id: str | None = None,
    uploaded_by: str | None = None,
) -> None:
    """Record a queued job that reads no file (a revert, a bulk delete): `label` stands for the
    filename, `total` is its progress's total."""
    await cur.execute(
        "INSERT INTO import_jobs (id, kind, reverts, params, filename, file_kind, size_bytes, sha256, dry_run,"
        " status, rows_total_estimate, request_id, uploaded_by)"
        " VALUES (%s, %s, %s, %s, %s, '', 0, '', 0, %s, %s, %s, %s)",
        (job_id, kind, reverts, json.dumps(params), label[:255], QUEUED, total, request_id, uploaded_by),
    )


async def get_for_update(cur: aiomysql.Cursor, job_id: str) -> Job | None:
    await cur.execute(_SELECT + " WHERE id = %s FOR UPDATE", (job_id,))
    row = await cur.fetchone()
    return Job.from_row(row) if row else None


async def set_reverted_by(cur: aiomysql.Cursor, job_id: str, revert_id: str) -> None:
    await cur.execute("UPDATE import_jobs SET reverted_by = %s WHERE id = %s", (revert_id, job_id))


async def reverts_of(cur: aiomysql.Cursor, job_id: str) -> list[str]:
    """The ids of every revert job queued for `job_id` (a failed or cancelled one may be followed by another)."""
    await cur.execute("SELECT id FROM import_jobs WHERE reverts = %s", (job_id,))
    return [row[0] for row in await cur.fetchall()]


async def set_total(cur: aiomysql.Cursor, job_id: str, owner: str, total: int) -> None:
    await cur.execute(
        "UPDATE import_jobs SET rows_total_estimate = %s WHERE id = %s AND lease_owner = %s", (total, job_id, owner)
    )


async def cancel(cur: aiomysql.Cursor, job_id: str) -> bool:
    """End a queued or running job as cancelled, now: a worker running it finds its lease gone at its
    next batch (commit_batch raises LeaseLost, rolling that batch back) and stops; what it committed
    stays. False when the job had already ended (or is a preview)."""
    await cur.execute(
        "UPDATE import_jobs SET status = %s, finished_at = CURRENT_TIMESTAMP(6),"
        " lease_owner = NULL, lease_expires_at = NULL,"
        " webhook = IF(callback_url IS NULL, NULL, %s),"
        " webhook_due_at = IF(callback_url IS NULL, NULL, CURRENT_TIMESTAMP(6))"
        " WHERE id = %s AND status IN (%s, %s)",
        (CANCELLED, json.dumps(new_webhook_state()), job_id, QUEUED, RUNNING),
    )
    return bool(cur.rowcount)

"""SQL for `import_job_parts`: a big file's import split over several workers (docs/scaling.md).

A job over FANOUT_MIN_ROWS is split into `parts` parts by the email's hash (shared.imports.parts): every
row of one email falls in one part, which reads them in file order, so duplicate emails count and
store exactly as one worker would (the first inserted, each later one updated or unchanged, the last
row's values kept). Each part has its own lease and checkpoint, like a job (shared.imports.job_repo); its
batches add to the part's counters and to the job's in one transaction, so the job's counters are
the parts' sums at every moment. The job itself holds no lease while its parts run: the sweep looks
after the parts, and the part that completes last completes the job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import aiomysql

from shared.imports.job_repo import COMPLETED, FAILED, QUEUED, RUNNING, BatchResult, LeaseLost, finish, store_errors


@dataclass
class Part:
    job_id: str
    part: int
    parts: int
    status: str
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_invalid: int
    rows_skipped: int
    checkpoint_row: int
    attempts: int
    worker: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


_COLUMNS = (
    "job_id, part, parts, status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_invalid,"
    " rows_skipped, checkpoint_row, attempts, worker, started_at, finished_at"
)


async def create(cur: aiomysql.Cursor, job_id: str, parts: int) -> None:
    """The job's parts, queued (a second call, after a crash between this and the enqueue, adds nothing)."""
    await cur.executemany(
        "INSERT IGNORE INTO import_job_parts (job_id, part, parts, status) VALUES (%s, %s, %s, %s)",
        [(job_id, part, parts, QUEUED) for part in range(parts)],
    )


async def list_parts(cur: aiomysql.Cursor, job_id: str) -> list[Part]:
    await cur.execute(f"SELECT {_COLUMNS} FROM import_job_parts WHERE job_id = %s ORDER BY part", (job_id,))
    return [Part(*row) for row in await cur.fetchall()]


async def get(cur: aiomysql.Cursor, job_id: str, part: int) -> Part | None:
    await cur.execute(f"SELECT {_COLUMNS} FROM import_job_parts WHERE job_id = %s AND part = %s", (job_id, part))
    row = await cur.fetchone()
    return None if row is None else Part(*row)


async def claim(cur: aiomysql.Cursor, job_id: str, part: int, owner: str, lease_s: int) -> Part | None:
    """Take the part's lease if it is free, lapsed or already ours, while its job runs; None if
    another worker holds it, or the part or its job is finished."""
    await cur.execute(
        "UPDATE import_job_parts p JOIN import_jobs j ON j.id = p.job_id"
        " SET p.status = %s, p.lease_owner = %s, p.worker = %s,"
        " p.lease_expires_at = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND,"
        " p.attempts = p.attempts + 1, p.started_at = COALESCE(p.started_at, CURRENT_TIMESTAMP(6))"
        " WHERE p.job_id = %s AND p.part = %s AND p.status IN (%s, %s) AND j.status = %s"
        " AND (p.lease_owner IS NULL OR p.lease_owner = %s OR p.lease_expires_at < CURRENT_TIMESTAMP(6))",
        (RUNNING, owner, owner, lease_s, job_id, part, QUEUED, RUNNING, RUNNING, owner),
    )
    if not cur.rowcount:
        return None
    return await get(cur, job_id, part)


async def renew(cur: aiomysql.Cursor, job_id: str, part: int, owner: str, lease_s: int) -> None:
    await cur.execute(
        "UPDATE import_job_parts SET lease_expires_at = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND"
        " WHERE job_id = %s AND part = %s AND lease_owner = %s AND status = %s",
        (lease_s, job_id, part, owner, RUNNING),
    )
    if not cur.rowcount:
        raise LeaseLost(f"{job_id} part {part}")


async def _lock(cur: aiomysql.Cursor, job_id: str, part: int, owner: str) -> int:
    """Lock the job's row, then the part's (always in this order), while the job runs and the part
    is ours; the job's error_rows_stored. Raises LeaseLost otherwise."""
    await cur.execute(
        "SELECT error_rows_stored FROM import_jobs WHERE id = %s AND status = %s FOR UPDATE", (job_id, RUNNING)
    )
    job = await cur.fetchone()
    await cur.execute(
        "SELECT 1 FROM import_job_parts WHERE job_id = %s AND part = %s AND lease_owner = %s AND status = %s"
        " FOR UPDATE",
        (job_id, part, owner, RUNNING),
    )
    if job is None or await cur.fetchone() is None:
        raise LeaseLost(f"{job_id} part {part}")
    return int(job[0])


async def commit_batch(
    cur: aiomysql.Cursor, job_id: str, part: int, owner: str, lease_s: int, batch: BatchResult, max_error_rows: int
) -> None:
    """Inside the batch's transaction: the part's counters and checkpoint (its lease renewed), the
    same counters added to the job's, and the errors under the job's cap."""
    error_rows_stored = await _lock(cur, job_id, part, owner)
    errors, error_rows = await store_errors(cur, job_id, batch, max(max_error_rows - error_rows_stored, 0))
    counters = (batch.rows_read, batch.inserted, batch.updated, batch.unchanged, batch.invalid, batch.skipped)
    await cur.execute(
        "UPDATE import_job_parts SET rows_read = rows_read + %s, rows_inserted = rows_inserted + %s,"
        " rows_updated = rows_updated + %s, rows_unchanged = rows_unchanged + %s,"
        " rows_invalid = rows_invalid + %s, rows_skipped = rows_skipped + %s, checkpoint_row = %s,"
        " lease_expires_at = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND WHERE job_id = %s AND part = %s",
        (*counters, batch.last_row, lease_s, job_id, part),
    )
    await cur.execute(
        "UPDATE import_jobs SET rows_read = rows_read + %s, rows_inserted = rows_inserted + %s,"
        " rows_updated = rows_updated + %s, rows_unchanged = rows_unchanged + %s,"
        " rows_invalid = rows_invalid + %s, rows_skipped = rows_skipped + %s, errors_stored = errors_stored + %s,"
        " error_rows_stored = error_rows_stored + %s WHERE id = %s",
        (*counters, len(errors), error_rows, job_id),
    )


async def release(cur: aiomysql.Cursor, job_id: str, part: int, owner: str) -> None:
    await cur.execute(
        "UPDATE import_job_parts SET lease_owner = NULL, lease_expires_at = NULL"
        " WHERE job_id = %s AND part = %s AND lease_owner = %s AND status = %s",
        (job_id, part, owner, RUNNING),
    )


async def complete(cur: aiomysql.Cursor, job_id: str, part: int, owner: str) -> bool | None:
    """Inside a transaction: the part is completed; so is the job when no other part is left (True).
    None when the part was not ours any more (lease lost, or the job ended)."""
    try:
        await _lock(cur, job_id, part, owner)
    except LeaseLost:
        return None
    await cur.execute(
        "UPDATE import_job_parts SET status = %s, finished_at = CURRENT_TIMESTAMP(6), lease_owner = NULL,"
        " lease_expires_at = NULL WHERE job_id = %s AND part = %s",
        (COMPLETED, job_id, part),
    )
    await cur.execute("SELECT COUNT(*) FROM import_job_parts WHERE job_id = %s AND status <> %s", (job_id, COMPLETED))
    row = await cur.fetchone()
    if row is not None and int(row[0]):
        return False
    await finish(cur, job_id, None, COMPLETED, None)
    return True


async def fail(cur: aiomysql.Cursor, job_id: str, part: int, error: str) -> bool:
    """The part cannot be imported (a damaged file, too many attempts): it and its job fail; the
    other parts stop at their next batch. False when the job had already ended."""
    await cur.execute("SELECT 1 FROM import_jobs WHERE id = %s AND status = %s FOR UPDATE", (job_id, RUNNING))
    if await cur.fetchone() is None:
        return False
    await cur.execute(
        "UPDATE import_job_parts SET status = %s, finished_at = CURRENT_TIMESTAMP(6), lease_owner = NULL,"
        " lease_expires_at = NULL WHERE job_id = %s AND part = %s",
        (FAILED, job_id, part),
    )
    await finish(cur, job_id, None, FAILED, error)
    return True


async def needing_a_worker(cur: aiomysql.Cursor, queued_grace_s: int) -> list[tuple[str, int, int]]:
    """(job id, part, attempts) of the parts of running jobs that nobody works on: running with a
    lapsed or released lease, or queued for longer than the grace period."""
    await cur.execute(
        "SELECT p.job_id, p.part, p.attempts FROM import_job_parts p JOIN import_jobs j ON j.id = p.job_id"
        " WHERE j.status = %s AND ("
        " (p.status = %s AND (p.lease_expires_at IS NULL OR p.lease_expires_at < CURRENT_TIMESTAMP(6)))"
        " OR (p.status = %s AND p.created_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND))"
        " ORDER BY p.created_at, p.part LIMIT 100",
        (RUNNING, RUNNING, QUEUED, queued_grace_s),
    )
    return [(row[0], int(row[1]), int(row[2])) for row in await cur.fetchall()]


async def cancel(cur: aiomysql.Cursor, job_id: str) -> int:
    """With the job's cancel (same transaction): its unfinished parts end cancelled; a worker running
    one finds the job no longer running at its next batch (_lock raises LeaseLost) and stops."""
    await cur.execute(
        "UPDATE import_job_parts SET status = 'cancelled', finished_at = CURRENT_TIMESTAMP(6), lease_owner = NULL,"
        " lease_expires_at = NULL WHERE job_id = %s AND status IN (%s, %s)",
        (job_id, QUEUED, RUNNING),
    )
    return int(cur.rowcount)

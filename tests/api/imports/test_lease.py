"""The job lease (worker/pipeline/lease.py): a job whose worker died resumes after its checkpoint with
nothing imported twice; a job a live worker holds is not run again. (Process-level takeovers, a worker
SIGKILLed or SIGTERMed mid-import, are in tests/system/test_e2e.py; parts' leases in test_fanout.py.)"""

from __future__ import annotations

import aiomysql
import pytest

from shared.config import Settings
from shared.imports import job_repo
from shared.infra.db import connection
from tests.support.db import scalar
from tests.support.jobs import import_file, run_burst_worker, submit
from tests.support.workbooks import csv_bytes, customers

pytestmark = pytest.mark.usefixtures("clean")


async def test_resume_from_checkpoint_imports_nothing_twice(settings: Settings, pool: aiomysql.Pool) -> None:
    """A job that crashed after some batches resumes after its checkpoint with exact counters."""
    rows = customers(1200)
    # A worker committed the first two batches (500 rows each, rows 2-1001) and died.
    await import_file(settings, pool, "prefix.csv", csv_bytes(rows[:1000]))
    job_id = await submit(settings, pool, "resume.csv", csv_bytes(rows))
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM import_jobs WHERE filename = 'prefix.csv'")
        await cur.execute(
            "UPDATE import_jobs SET status='running', rows_read=1000, rows_inserted=1000, checkpoint_row=1001,"
            " attempts=1, lease_owner='dead-worker', lease_expires_at=CURRENT_TIMESTAMP(6) - INTERVAL 1 SECOND"
            " WHERE id=%s",
            (job_id,),
        )
    await run_burst_worker(settings)
    async with connection(pool) as conn, conn.cursor() as cur:
        job = await job_repo.get(cur, job_id)
    assert job is not None and job.status == "completed"
    assert (job.rows_read, job.rows_inserted, job.rows_updated) == (1200, 1200, 0)
    assert await scalar(pool, "SELECT COUNT(*) FROM customers") == 1200
    assert await scalar(pool, "SELECT MAX(version) FROM customers") == 1


async def test_a_job_held_by_a_live_worker_is_not_run_twice(settings: Settings, pool: aiomysql.Pool) -> None:
    job_id = await submit(settings, pool, "held.csv", csv_bytes(customers(5)))
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE import_jobs SET status='running', lease_owner='alive',"
            " lease_expires_at=CURRENT_TIMESTAMP(6) + INTERVAL 60 SECOND WHERE id=%s",
            (job_id,),
        )
    await run_burst_worker(settings)
    assert await scalar(pool, "SELECT COUNT(*) FROM customers") == 0
    assert await scalar(pool, "SELECT status FROM import_jobs WHERE id=%s", job_id) == "running"

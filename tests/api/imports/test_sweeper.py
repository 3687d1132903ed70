"""The workers' sweep (worker/sweeper.py): a job nobody is working on is queued again. (A delivery owed by a
worker that died is in test_webhooks.py; a takeover after a SIGKILL in tests/system/test_e2e.py.)"""

from __future__ import annotations

import aiomysql
import pytest

from shared.config import Settings
from shared.imports import job_repo
from shared.infra.db import connection
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import csv_bytes, customers

pytestmark = pytest.mark.usefixtures("clean")


async def test_the_sweep_queues_a_job_whose_enqueue_was_lost(settings: Settings, pool: aiomysql.Pool) -> None:
    """An upload accepted while Redis was down is recorded but not queued: the workers' sweep queues it."""
    import uuid

    from arq import create_pool

    from shared.customers.cache import CustomerCache
    from shared.infra.storage import UploadStore
    from worker.importer import WorkerDeps
    from worker.settings import redis_settings
    from worker.sweeper import sweep_jobs

    job_id = str(uuid.uuid4())
    store = UploadStore(settings.upload_dir)
    store.ensure()
    store.path_for(job_id, "csv").write_bytes(csv_bytes(customers(7)))
    async with connection(pool) as conn, conn.cursor() as cur:
        await job_repo.create(
            cur, job_id=job_id, filename="lost.csv", file_kind="csv", size_bytes=1, sha256="0" * 64, dry_run=False
        )
        await cur.execute(
            "UPDATE import_jobs SET created_at = CURRENT_TIMESTAMP(6) - INTERVAL 120 SECOND WHERE id = %s", (job_id,)
        )
    arq = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    try:
        deps = WorkerDeps(settings, pool, CustomerCache(arq, prefix=settings.redis_prefix), store)
        assert await sweep_jobs({"deps": deps, "redis": arq}) == 1
    finally:
        await arq.aclose()
    await run_burst_worker(settings)
    async with connection(pool) as conn, conn.cursor() as cur:
        job = await job_repo.get(cur, job_id)
    assert job is not None and job.status == "completed" and job.rows_inserted == 7

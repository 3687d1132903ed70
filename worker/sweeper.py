"""The periodic sweep (arq cron): re-queue jobs nobody is working on.

arq alone would leave a job whose worker was SIGKILLed until its in-progress key expires (the job
timeout plus 10 s). The job's lease in MySQL lapses within JOB_LEASE_S instead, and this sweep,
which every worker runs, queues a fresh arq job that resumes it from its checkpoint.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from arq.constants import job_key_prefix

from shared.customers import history_repo
from shared.imports import job_repo, part_repo
from shared.imports.queue import (
    enqueue_delivery,
    enqueue_job,
    enqueue_part,
    first_arq_id,
    first_part_id,
    requeued_arq_id,
    requeued_part_id,
)
from shared.infra.db import DatabaseUnavailable, connection, transaction
from worker.importer import MAX_ATTEMPTS, WorkerDeps

log = logging.getLogger(__name__)


async def sweep_jobs(ctx: dict[str, Any]) -> int:
    deps: WorkerDeps = ctx["deps"]
    settings = deps.settings
    grace = max(30, 3 * settings.sweep_interval_s)
    try:
        async with connection(deps.pool) as conn, conn.cursor() as cur:
            expired = await job_repo.expire_uploaded(cur, settings.preview_ttl_s)
            # Due for longer than an attempt can take plus two sweeps: its queued attempt was lost.
            webhooks = await job_repo.webhooks_overdue(
                cur, int(settings.webhook_timeout_s) + 2 * settings.sweep_interval_s + 1
            )
            stale = await job_repo.needing_a_worker(cur, grace)
            stale_parts = await part_repo.needing_a_worker(cur, grace)
            kinds = await job_repo.kinds(cur, [job_id for job_id, _ in stale])
            for job_id, attempts in stale:
                if attempts >= MAX_ATTEMPTS:
                    await job_repo.fail_unclaimed(
                        cur, job_id, f"gave up after {attempts} attempts; see the worker logs for this job id"
                    )
                    if ctx.get("metrics") is not None:
                        ctx["metrics"].failures.labels("gave_up").inc()
        for job_id, part, attempts in stale_parts:
            if attempts >= MAX_ATTEMPTS:
                async with transaction(deps.pool) as cur:
                    ended = await part_repo.fail(
                        cur, job_id, part, f"part {part + 1}: gave up after {attempts} attempts; see the worker logs"
                    )
                if ended:
                    expired.append(job_id)
    except DatabaseUnavailable as exc:
        log.warning("sweep skipped: mysql unavailable", extra={"error": str(exc)})
        return 0
    await _expire_history(deps)
    tick = int(time.time() // settings.sweep_interval_s)
    for job_id, attempts in webhooks:
        await enqueue_delivery(ctx["redis"], settings, job_id, f"{attempts}:{tick}")
        log.info("re-queued an overdue webhook delivery", extra={"job": job_id, "attempts": attempts})
    for job_id in expired + [job_id for job_id, attempts in stale if attempts >= MAX_ATTEMPTS]:
        await deps.store.remove_job_files(job_id)
        log.info(
            "a job ended without a worker (a preview expired, or it was given up); its file is deleted",
            extra={"job": job_id},
        )
    queued = 0
    for job_id, attempts in stale:
        if attempts >= MAX_ATTEMPTS:
            continue
        if attempts == 0 and await ctx["redis"].exists(job_key_prefix + first_arq_id(job_id)):
            continue  # still waiting in the queue behind other work
        # A fresh arq id: the original may still sit "in progress" in arq after a SIGKILL.
        kind = kinds.get(job_id, job_repo.IMPORT)
        if await enqueue_job(ctx["redis"], settings, job_id, kind, requeued_arq_id(job_id, attempts, tick)):
            queued += 1
            log.info("re-queued an import nobody was working on", extra={"job": job_id, "attempts": attempts})
    for job_id, part, attempts in stale_parts:
        if attempts >= MAX_ATTEMPTS:
            continue
        if attempts == 0 and await ctx["redis"].exists(job_key_prefix + first_part_id(job_id, part)):
            continue
        if await enqueue_part(ctx["redis"], settings, job_id, part, requeued_part_id(job_id, part, attempts, tick)):
            queued += 1
            log.info(
                "re-queued a part nobody was working on", extra={"job": job_id, "part": part, "attempts": attempts}
            )
    return queued


async def _expire_history(deps: WorkerDeps) -> int:
    """HISTORY_RETENTION_DAYS: delete customer history older than that (0 keeps it all), a bounded
    chunk a sweep so no sweep holds locks for long; the next sweeps take the rest."""
    days = deps.settings.history_retention_days
    if not days:
        return 0
    try:
        async with connection(deps.pool) as conn, conn.cursor() as cur:
            removed = await history_repo.expire(cur, days)
    except DatabaseUnavailable as exc:
        log.warning("history retention skipped: mysql unavailable", extra={"error": str(exc)})
        return 0
    if removed:
        log.info("deleted expired customer history", extra={"rows": removed, "retention_days": days})
    return removed

"""Splitting a big job into parts that several workers import at once (shared.imports.part_repo)."""

from __future__ import annotations

import logging

from shared.imports import job_repo, part_repo
from shared.imports.job_repo import Job
from shared.imports.queue import first_part_id
from shared.infra.db import transaction
from worker.pipeline.deps import WorkerDeps
from worker.pipeline.messages import SheetInfo

log = logging.getLogger("worker.importer")


def wants_split(deps: WorkerDeps, job: Job, info: SheetInfo) -> bool:
    """A fresh job (nothing committed yet) whose sheet holds FANOUT_MIN_ROWS data rows or more. A dry
    run is not split: it counts duplicates in file order against what it saw, in one process."""
    settings = deps.settings
    return (
        settings.fanout_parts > 1
        and deps.enqueue_part is not None
        and not job.dry_run
        and not job.checkpoint_row
        and info.total_estimate is not None
        and info.total_estimate >= settings.fanout_min_rows
    )


async def split_job(deps: WorkerDeps, job: Job, owner: str, info: SheetInfo) -> bool:
    """Split the job if it is big enough: its parts recorded and queued (the caller then gives the
    job's lease back: the parts hold leases of their own). False: import it in one piece."""
    if not wants_split(deps, job, info):
        return False
    parts = deps.settings.fanout_parts
    async with transaction(deps.pool) as cur:
        await job_repo.renew(cur, job.id, owner, deps.settings.job_lease_s)  # LeaseLost: not ours now
        await part_repo.create(cur, job.id, parts)
    log.info("job split into parts", extra={"parts": parts, "rows_estimate": info.total_estimate})
    await enqueue_parts(deps, job.id, list(range(parts)))
    return True


async def enqueue_parts(deps: WorkerDeps, job_id: str, parts: list[int], suffix: str = "") -> int:
    """Queue the parts' arq jobs; one that could not be queued (Redis down) is queued by the sweep."""
    assert deps.enqueue_part is not None
    queued = 0
    for part in parts:
        try:
            if await deps.enqueue_part(job_id, part, first_part_id(job_id, part) + suffix):
                queued += 1
        except Exception as exc:  # the parts are recorded in MySQL: the sweep queues them later
            log.warning("a part could not be queued", extra={"part": part, "error": repr(exc)})
    return queued

"""The import job's arq entry points (a whole job, one part of a split job): claim the job, run the
pipeline (worker.pipeline), and turn its outcome into the job's state (run_claimed, the one frame both
go through): completed, failed (a file that cannot be imported), released for another worker
(shutdown, a dependency down) or retried (a crash)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiomysql
from arq import Retry

from shared.customers.cache import CacheUnavailable
from shared.imports import job_repo, part_repo
from shared.imports.job_repo import LeaseLost
from shared.imports.options import OptionError
from shared.imports.queue import Outcome
from shared.infra.db import DatabaseUnavailable, connection, transaction
from shared.infra.logs import job_id_var, request_id_var
from shared.infra.runtime import release_memory
from shared.spreadsheet.readers import WorkbookError
from shared.spreadsheet.rules import HeaderError
from worker.pipeline.commit import write_rows
from worker.pipeline.deps import WorkerDeps
from worker.pipeline.fanout import enqueue_parts
from worker.pipeline.lease import JobLease, PartLease
from worker.pipeline.messages import ParsedBatch
from worker.pipeline.run import run_import

__all__ = [
    "MAX_ATTEMPTS",
    "ParsedBatch",
    "WorkerDeps",
    "import_part",
    "import_workbook",
    "run_claimed",
    "worker_identity",
]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def import_workbook(ctx: dict[str, Any], job_id: str) -> Outcome:
    """arq entry point. Idempotent: runs at least once, resumes from the job's checkpoint."""

    async def claim(cur: aiomysql.Cursor, owner: str) -> JobLease | None:
        job = await job_repo.claim(cur, job_id, owner, ctx["deps"].settings.job_lease_s)
        return None if job is None else JobLease(ctx["deps"], job, owner)

    return await run_claimed(ctx, job_id, claim, _import_job)


async def _import_job(deps: WorkerDeps, lease: JobLease) -> Outcome:
    job = lease.job
    async with connection(deps.pool) as conn, conn.cursor() as cur:
        parts = await part_repo.list_parts(cur, job.id)
    if parts:
        return await _resume_parts(deps, lease, parts)
    log.info("import started", extra={"attempt": job.attempts, "resume_after_row": job.checkpoint_row})
    outcome = await run_import(deps, job, lease.owner, lease)
    if outcome == Outcome.SPLIT:
        await lease.release()  # the parts hold leases of their own
    return outcome


async def _resume_parts(deps: WorkerDeps, lease: JobLease, parts: list[part_repo.Part]) -> Outcome:
    """The job was split (this is a late or repeated run of it): make sure its unfinished parts are
    queued, and hand its lease back."""
    unfinished = [p.part for p in parts if p.status in (job_repo.QUEUED, job_repo.RUNNING)]
    if deps.enqueue_part is not None and unfinished:
        await enqueue_parts(deps, lease.job.id, unfinished, f":{lease.job.attempts}")
    await lease.release()
    return Outcome.SPLIT


async def import_part(ctx: dict[str, Any], job_id: str, part: int) -> Outcome:
    """arq entry point of one part of a split job: like import_workbook, under the part's lease."""
    parts = 1

    async def claim(cur: aiomysql.Cursor, owner: str) -> JobLease | None:
        nonlocal parts
        claimed = await part_repo.claim(cur, job_id, part, owner, ctx["deps"].settings.job_lease_s)
        job = None if claimed is None else await job_repo.get(cur, job_id)
        if claimed is None or job is None:
            return None
        # The job as this part sees it: the part's checkpoint and attempts.
        job.checkpoint_row, job.attempts, parts = claimed.checkpoint_row, claimed.attempts, claimed.parts
        return PartLease(ctx["deps"], job, owner, part)

    async def run(deps: WorkerDeps, lease: JobLease) -> Outcome:
        job = lease.job
        extra = {"part": part, "parts": parts, "attempt": job.attempts, "resume_after_row": job.checkpoint_row}
        log.info("import of a part started", extra=extra)
        return await run_import(deps, job, lease.owner, lease, parts)

    return await run_claimed(ctx, job_id, claim, run, part=part)


async def run_claimed(
    ctx: dict[str, Any],
    job_id: str,
    claim: Callable[[aiomysql.Cursor, str], Awaitable[JobLease | None]],
    run: Callable[[WorkerDeps, JobLease], Awaitable[Outcome]],
    *,
    part: int | None = None,
) -> Outcome:
    """The frame every run of a job goes through: claim it under a lease of this worker's (`claim`,
    in one transaction: None when it is finished or another worker holds it), run it, and turn how the
    run ended into the job's state and the Outcome arq records: completed, failed (a file that cannot
    be imported), lease lost, released for another worker (shutdown, a dependency down) or retried
    (a crash). The job's id and request id are on every log line meanwhile."""
    deps: WorkerDeps = ctx["deps"]
    token = job_id_var.set(job_id)
    try:
        try:
            async with transaction(deps.pool) as cur:
                lease = await claim(cur, worker_identity())
        except DatabaseUnavailable as exc:
            raise Retry(defer=5) from exc
        if lease is None:
            what = "job" if part is None else "part"
            log.info(f"{what} finished or held by another worker; nothing to do", extra={"part": part})
            return Outcome.SKIPPED
        request_token = request_id_var.set(lease.job.request_id)
        try:
            outcome = await _guarded(deps, lease, run)
        finally:
            request_id_var.reset(request_token)
        log.debug("run ended", extra={"outcome": outcome.value, "part": part})
        return outcome
    finally:
        release_memory()
        job_id_var.reset(token)


async def _guarded(
    deps: WorkerDeps, lease: JobLease, run: Callable[[WorkerDeps, JobLease], Awaitable[Outcome]]
) -> Outcome:
    job = lease.job
    try:
        try:
            return await run(deps, lease)
        except Exception as exc:
            # A driver may raise its own error while it is being cancelled (aiomysql does, in
            # the middle of LOAD DATA LOCAL): during a shutdown that is still the shutdown.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            raise
    except asyncio.CancelledError:
        # A clean shutdown (SIGTERM): hand the lease back so another worker resumes at once.
        await asyncio.shield(lease.release())
        log.info("import interrupted by shutdown; lease released")
        raise
    except LeaseLost:
        log.warning("lease lost to another worker; stopping without committing")
        return Outcome.LEASE_LOST
    except (WorkbookError, HeaderError, OptionError) as exc:
        await lease.finish(job_repo.FAILED, f"{exc}")
        return Outcome.FAILED
    except (DatabaseUnavailable, CacheUnavailable) as exc:
        await lease.release()
        log.warning("import paused: a dependency is unavailable", extra={"error": str(exc)})
        raise Retry(defer=5) from exc
    except Exception as exc:
        log.exception("import crashed")
        if job.attempts >= MAX_ATTEMPTS:
            await lease.finish(job_repo.FAILED, f"internal error while importing: {exc!r}")
            return Outcome.FAILED
        await lease.release()
        raise Retry(defer=5) from exc


async def _upsert(
    deps: WorkerDeps, cur: aiomysql.Cursor, batch: ParsedBatch, latest: dict[str, dict[str, Any]]
) -> tuple[tuple[int, int, int], list[tuple[dict[str, Any], int, int, str, str]]]:
    """Write a prepared batch's rows (the pipeline's commit step, without the checkpoint): returns
    (inserted, updated, unchanged) and (data, id, version, created_at, updated_at) per customer."""
    assert batch.staged is not None
    written = await write_rows(deps, cur, batch.staged)
    emails = batch.staged.emails
    return (
        (written.inserted, written.updated, written.unchanged),
        [
            (latest[emails[seq]], customer_id, version, created, updated)
            for seq, customer_id, version, created, updated in written.stamps
        ],
    )

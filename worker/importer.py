"""The import job's arq entry point: claim the job, run the pipeline (worker.pipeline), and turn its
outcome into the job's state: completed, failed (a file that cannot be imported), released for
another worker (shutdown, a dependency down) or retried (a crash)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import Any

import aiomysql
from arq import Retry

from shared.customers.cache import CacheUnavailable
from shared.imports import job_repo, part_repo
from shared.imports.job_repo import Job, LeaseLost
from shared.infra.db import DatabaseUnavailable, connection, transaction
from shared.infra.logs import job_id_var, request_id_var
from shared.infra.runtime import release_memory
from shared.spreadsheet.mapping import OptionError
from shared.spreadsheet.readers import WorkbookError
from shared.spreadsheet.rules import HeaderError
from worker.pipeline.commit import write_rows
from worker.pipeline.deps import WorkerDeps
from worker.pipeline.fanout import SPLIT, enqueue_parts
from worker.pipeline.lease import JobLease, PartLease
from worker.pipeline.messages import ParsedBatch
from worker.pipeline.run import run_import

__all__ = ["MAX_ATTEMPTS", "ParsedBatch", "WorkerDeps", "import_part", "import_workbook", "worker_identity"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def import_workbook(ctx: dict[str, Any], job_id: str) -> str:
    """arq entry point. Idempotent: runs at least once, resumes from the job's checkpoint."""
    deps: WorkerDeps = ctx["deps"]
    token = job_id_var.set(job_id)
    owner = worker_identity()
    try:
        try:
            async with transaction(deps.pool) as cur:
                job = await job_repo.claim(cur, job_id, owner, deps.settings.job_lease_s)
        except DatabaseUnavailable as exc:
            raise Retry(defer=5) from exc
        if job is None:
            log.info("job finished or held by another worker; nothing to do")
            return "skipped"
        request_token = request_id_var.set(job.request_id)
        try:
            async with connection(deps.pool) as conn, conn.cursor() as cur:
                parts = await part_repo.list_parts(cur, job_id)
            if parts:
                return await _resume_parts(deps, job, owner, parts)
            log.info("import started", extra={"attempt": job.attempts, "resume_after_row": job.checkpoint_row})
            lease = JobLease(deps, job, owner)
            outcome = await _run(deps, job, lease)
            if outcome == SPLIT:
                await lease.release()  # the parts hold leases of their own
            return outcome
        finally:
            request_id_var.reset(request_token)
    finally:
        release_memory()
        job_id_var.reset(token)


async def _resume_parts(deps: WorkerDeps, job: Job, owner: str, parts: list[part_repo.Part]) -> str:
    """The job was split (this is a late or repeated run of it): make sure its unfinished parts are
    queued, and hand its lease back."""
    unfinished = [p.part for p in parts if p.status in (job_repo.QUEUED, job_repo.RUNNING)]
    if deps.enqueue_part is not None and unfinished:
        await enqueue_parts(deps, job.id, unfinished, f":{job.attempts}")
    await JobLease(deps, job, owner).release()
    return SPLIT


async def import_part(ctx: dict[str, Any], job_id: str, part: int) -> str:
    """arq entry point of one part of a split job: like import_workbook, under the part's lease."""
    deps: WorkerDeps = ctx["deps"]
    token = job_id_var.set(job_id)
    owner = worker_identity()
    try:
        try:
            async with transaction(deps.pool) as cur:
                claimed = await part_repo.claim(cur, job_id, part, owner, deps.settings.job_lease_s)
                job = None if claimed is None else await job_repo.get(cur, job_id)
        except DatabaseUnavailable as exc:
            raise Retry(defer=5) from exc
        if claimed is None or job is None:
            log.info("part finished or held by another worker; nothing to do", extra={"part": part})
            return "skipped"
        request_token = request_id_var.set(job.request_id)
        # The job as this part sees it: the part's checkpoint and attempts.
        job.checkpoint_row, job.attempts = claimed.checkpoint_row, claimed.attempts
        log.info(
            "import of a part started",
            extra={
                "part": part,
                "parts": claimed.parts,
                "attempt": claimed.attempts,
                "resume_after_row": claimed.checkpoint_row,
            },
        )
        try:
            return await _run(deps, job, PartLease(deps, job, owner, part), claimed.parts)
        finally:
            request_id_var.reset(request_token)
    finally:
        release_memory()
        job_id_var.reset(token)


async def _run(deps: WorkerDeps, job: Job, lease: JobLease, parts: int = 1) -> str:
    try:
        try:
            return await run_import(deps, job, lease.owner, lease, parts)
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
        return "lease-lost"
    except (WorkbookError, HeaderError, OptionError) as exc:
        await lease.finish(job_repo.FAILED, f"{exc}")
        return job_repo.FAILED
    except (DatabaseUnavailable, CacheUnavailable) as exc:
        await lease.release()
        log.warning("import paused: a dependency is unavailable", extra={"error": str(exc)})
        raise Retry(defer=5) from exc
    except Exception as exc:
        log.exception("import crashed")
        if job.attempts >= MAX_ATTEMPTS:
            await lease.finish(job_repo.FAILED, f"internal error while importing: {exc!r}")
            return job_repo.FAILED
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

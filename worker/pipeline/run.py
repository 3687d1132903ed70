"""One import job through the stages: source (child process) → commit → warm, under the job's lease."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.customers.cache import CacheUnavailable
from shared.imports import job_repo
from shared.imports.job_repo import Job
from shared.imports.queue import Outcome
from shared.infra.db import connection
from shared.spreadsheet.readers import WorkbookError
from worker.pipeline.child import SourceProcess
from worker.pipeline.commit import BatchCommitter
from worker.pipeline.deps import WorkerDeps
from worker.pipeline.fanout import split_job
from worker.pipeline.lease import JobLease, PartLease
from worker.pipeline.messages import ParsedBatch, SheetEnd, SheetInfo, SourceFailed, SourceMessage
from worker.pipeline.source import SourceParams
from worker.pipeline.warm import CacheWarmer

log = logging.getLogger("worker.importer")


@dataclass
class LoopTimes:
    """Where an import's wall time went, in seconds (its "import completed" log line): batches of new
    customers are bound by their commits, a re-import of an unchanged file by the parser."""

    waiting_for_parser: float = 0.0
    committing: float = 0.0
    publishing_progress: float = 0.0
    waiting_for_warmup: float = 0.0  # the previous batch's cache warm-up, still running

    def fields(self) -> dict[str, float]:
        return {f"{name}_s": round(seconds, 3) for name, seconds in asdict(self).items()}


async def run_import(deps: WorkerDeps, job: Job, owner: str, lease: JobLease | None = None, parts: int = 1) -> Outcome:
    """Import the job's file from its checkpoint on (or, under a PartLease, one part of it, of
    `parts`); raises WorkbookError (and the like) for a file that cannot be imported, LeaseLost, or
    the errors of MySQL and Redis. A job big enough is split into parts instead (Outcome.SPLIT)."""
    # A local file for the readers: the upload itself, or the object streamed from the bucket into
    # this worker's UPLOAD_DIR (deleted when the attempt ends; the object stays until the job ends).
    async with deps.store.local_copy(job.id, job.file_kind) as path:
        if path is None:
            raise WorkbookError(f"the uploaded file is no longer in the upload store ({deps.store})")
        return await _import_file(deps, job, lease or JobLease(deps, job, owner), path, parts)


async def _import_file(deps: WorkerDeps, job: Job, lease: JobLease, path: Path, parts: int) -> Outcome:
    settings = deps.settings
    params = SourceParams(
        path,
        job.file_kind,
        job.options,
        memory_budget_bytes=settings.reader_memory_budget_mb * 1024 * 1024,
        batch_size=settings.import_batch_size,
        resume_after_row=job.checkpoint_row,
        max_rows=settings.max_rows_per_job,
        phone_region=settings.phone_default_region,
        part=lease.part if isinstance(lease, PartLease) else 0,
        parts=parts,
    )
    info = SheetInfo("", None, [])
    times = LoopTimes()
    clock = time.perf_counter
    async with (
        lease.kept_alive(),
        SourceProcess(params, deps.parsers) as source,
        CacheWarmer(deps.cache) as warmer,
        BatchCommitter(deps, lease) as committer,
    ):

        async def commit(batch: ParsedBatch) -> None:
            started = clock()
            documents = await committer.commit(batch)
            committed = clock()
            await lease.publish_progress()
            published = clock()
            # Warm the cache with this batch while the next one is written.
            await warmer.submit(documents)
            times.committing += committed - started
            times.publishing_progress += published - committed
            times.waiting_for_warmup += clock() - published

        async def receive() -> SourceMessage | None:
            started = clock()
            message = await source.receive()
            times.waiting_for_parser += clock() - started
            return message

        # A batch whose lookup was started (committer.prefetch) waits here while the next message is
        # read, and is committed while the next batch's lookup runs; batches stay in file order.
        held: ParsedBatch | None = None
        while (message := await receive()) is not None:
            if isinstance(message, ParsedBatch) and committer.prefetch(message):
                if held is not None:
                    await commit(held)
                held = message
                continue
            if held is not None:
                await commit(held)
                held = None
            if isinstance(message, ParsedBatch):
                await commit(message)
            elif isinstance(message, SheetInfo):
                info = message
                await lease.set_reader(info)
                if not isinstance(lease, PartLease) and await split_job(deps, job, lease.owner, info):
                    return Outcome.SPLIT
            elif isinstance(message, SheetEnd):
                info.warnings = [*info.warnings, *message.warnings]
                await lease.set_reader(info)
                await lease.add_warnings(message.warnings)
            elif isinstance(message, SourceFailed):
                if message.detail:
                    log.warning("reader error", extra={"error": message.message, "traceback": message.detail})
                raise WorkbookError(message.message)
        if held is not None:
            await commit(held)
        await warmer.drain()
    if not job.dry_run:
        try:
            await deps.cache.bump_generation()
        except CacheUnavailable:
            pass
    await lease.finish(job_repo.COMPLETED, None)
    async with connection(deps.pool) as conn, conn.cursor() as cur:
        final = await job_repo.get(cur, job.id)
    if final is not None:
        log.info("import completed", extra={**summary(final), **times.fields()})
    return Outcome.COMPLETED


def summary(job: Job) -> dict[str, object]:
    """What a log line says of a finished job: its counters and how long it ran."""
    duration = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
    return {
        "rows_read": job.rows_read,
        "rows_inserted": job.rows_inserted,
        "rows_updated": job.rows_updated,
        "rows_unchanged": job.rows_unchanged,
        "rows_invalid": job.rows_invalid,
        "duration_s": None if duration is None else round(duration, 3),
        "reader": job.reader,
        "attempts": job.attempts,
    }

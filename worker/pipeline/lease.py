"""The job's lease and checkpoint in one place: heartbeat, per-batch checkpoint with the counters,
the reader's details, release (another worker resumes at once) and finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiomysql

from shared.imports import job_repo, part_repo
from shared.imports.document import job_document
from shared.imports.job_repo import BatchResult, Job, LeaseLost
from shared.imports.service import get_job
from shared.infra.db import DatabaseUnavailable, connection, transaction
from worker.pipeline.deps import WorkerDeps
from worker.pipeline.messages import SheetInfo

log = logging.getLogger("worker.importer")


class JobLease:
    def __init__(self, deps: WorkerDeps, job: Job, owner: str) -> None:
        self.deps = deps
        self.job = job
        self.owner = owner

    @contextlib.asynccontextmanager
    async def kept_alive(self) -> AsyncIterator[None]:
        """Renew the lease while the body runs; a lease lost cancels the body (the caller sees
        CancelledError turned into LeaseLost)."""
        main = asyncio.current_task()
        assert main is not None
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(main, lost))
        try:
            yield
        except asyncio.CancelledError:
            if lost.is_set():
                main.uncancel()
                raise LeaseLost(self.job.id) from None
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, main: asyncio.Task[object], lost: asyncio.Event) -> None:
        interval = max(self.deps.settings.job_lease_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                async with connection(self.deps.pool) as conn, conn.cursor() as cur:
                    await self.renew(cur)
            except LeaseLost:
                lost.set()
                main.cancel("lease lost")
                return
            except DatabaseUnavailable:
                continue

    async def renew(self, cur: aiomysql.Cursor) -> None:
        await job_repo.renew(cur, self.job.id, self.owner, self.deps.settings.job_lease_s)

    async def set_reader(self, info: SheetInfo) -> None:
        async with connection(self.deps.pool) as conn, conn.cursor() as cur:
            await job_repo.set_reader(
                cur,
                self.job.id,
                self.owner,
                info.reader,
                info.total_estimate,
                info.warnings,
                sheet=info.sheet,
                encoding=info.encoding,
                header_row=info.header_row,
                source_header=info.source_header,
            )

    async def add_warnings(self, warnings: list[str]) -> None:
        """Warnings found at the end of the file (set_reader recorded them with the others)."""

    async def checkpoint(self, cur: aiomysql.Cursor, result: BatchResult) -> None:
        """Inside the batch's transaction: the counters, the checkpoint and the errors, and the lease
        renewed (LeaseLost, rolling the batch back, if it is gone)."""
        settings = self.deps.settings
        await job_repo.commit_batch(
            cur, self.job.id, self.owner, settings.job_lease_s, result, settings.max_errors_per_job
        )

    async def publish_progress(self) -> None:
        if self.deps.events is None:
            return
        async with connection(self.deps.pool) as conn, conn.cursor() as cur:
            current = await job_repo.get(cur, self.job.id)
        if current is not None:
            await self.deps.events.publish(self.job.id, "progress", job_document(current, None))

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            async with connection(self.deps.pool) as conn, conn.cursor() as cur:
                await job_repo.release(cur, self.job.id, self.owner)

    async def finish(self, status: str, error: str | None) -> None:
        async with connection(self.deps.pool) as conn, conn.cursor() as cur:
            finished = await job_repo.finish(cur, self.job.id, self.owner, status, error)
        await self.ended(finished, status, error)

    async def ended(self, finished: bool, status: str, error: str | None) -> None:
        """After the job's row says it ended: its final event, its webhook, its files."""
        deps, job = self.deps, self.job
        if finished and deps.events is not None:
            await deps.events.publish(job.id, status, await get_job(deps.pool, job.id))
        if finished and job.callback_url and deps.on_finished is not None:
            await deps.on_finished(job.id)
        if status == job_repo.FAILED:
            log.warning("import failed", extra={"error": error})
        if finished:
            await deps.store.remove_job_files(job.id)


class PartLease(JobLease):
    """The lease of one part of a split job (shared.imports.part_repo): the part's checkpoint and counters,
    the job's counters with them; the part that completes last ends the job."""

    def __init__(self, deps: WorkerDeps, job: Job, owner: str, part: int) -> None:
        super().__init__(deps, job, owner)
        self.part = part

    async def renew(self, cur: aiomysql.Cursor) -> None:
        await part_repo.renew(cur, self.job.id, self.part, self.owner, self.deps.settings.job_lease_s)

    async def set_reader(self, info: SheetInfo) -> None:
        return  # recorded once, when the job was split

    async def add_warnings(self, warnings: list[str]) -> None:
        """A part's own warnings (its repeated emails) join the job's."""
        if warnings:
            async with transaction(self.deps.pool) as cur:
                await job_repo.append_warnings(cur, self.job.id, warnings)

    async def checkpoint(self, cur: aiomysql.Cursor, result: BatchResult) -> None:
        settings = self.deps.settings
        await part_repo.commit_batch(
            cur, self.job.id, self.part, self.owner, settings.job_lease_s, result, settings.max_errors_per_job
        )

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            async with connection(self.deps.pool) as conn, conn.cursor() as cur:
                await part_repo.release(cur, self.job.id, self.part, self.owner)

    async def finish(self, status: str, error: str | None) -> None:
        async with transaction(self.deps.pool) as cur:
            if status == job_repo.COMPLETED:
                ended = await part_repo.complete(cur, self.job.id, self.part, self.owner)
            else:
                ended = await part_repo.fail(cur, self.job.id, self.part, f"part {self.part + 1}: {error}")
        log.info("part ended", extra={"part": self.part, "status": status, "job_ended": bool(ended)})
        if ended:
            await self.ended(True, status, error)

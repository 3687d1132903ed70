"""Import jobs as the API sees them: `JobService` (upload, start, the reads), its errors, the job document.

Like CustomerService, the service bounds its own MySQL work (DB_TIMEOUT_S: a stalled server becomes a
503, never a request that hangs) and raises errors the gateway maps once (gateway.http.middlewares):
JobNotFound (404), JobConflict and its NotWaiting (409), UploadRejected (400/413/415/422).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomysql
from arq.connections import ArqRedis

from shared.config import Settings
from shared.customers import customer_repo, history_repo
from shared.customers.cache import REDIS_ERRORS
from shared.imports import job_repo, mappings, part_repo
from shared.imports.document import error_documents, job_document
from shared.imports.events import JobEvents, follow_job
from shared.imports.job_repo import Job
from shared.imports.options import ImportOptions
from shared.imports.queue import enqueue_job
from shared.infra import cursors
from shared.infra.cursors import BadCursor, decode_cursor, encode_cursor
from shared.infra.db import OutcomeUnknown, connection, mysql_deadline, transaction
from shared.infra.storage import StoredUpload, UploadStore
from shared.spreadsheet.preview import Preview, build_preview, problem_extra
from shared.spreadsheet.readers import Rejection, UploadRejected, inspect_upload
from shared.spreadsheet.rules import HeaderError, column_letter

log = logging.getLogger(__name__)

__all__ = [
    "BadCursor",
    "JobConflict",
    "JobNotFound",
    "JobService",
    "NotWaiting",
    "UploadRequest",
    "get_job",
]

FIRST_ERRORS = 10
# Every status a job can have, and those GET /jobs lists unless asked: previews (`uploaded`, nothing
# imported yet, deleted or expiring by themselves) only with ?status=uploaded or ?include_previews=true.
LISTED_STATUSES = tuple(status for status in job_repo.STATUSES if status != job_repo.UPLOADED)
Event = tuple[str, str, dict[str, Any]]


class JobNotFound(Exception):
    """No job of that id (the gateway answers 404)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"No import job {job_id}.")
        self.job_id = job_id


class JobConflict(Exception):
    """The job's state does not allow the operation (the gateway answers 409 with this message)."""

    def __init__(self, job_id: str, detail: str) -> None:
        super().__init__(detail)
        self.job_id = job_id


class CountMismatch(JobConflict):
    """A bulk delete's expected_count is not the number of customers its search matches now."""

    def __init__(self, count: int, expected: int) -> None:
        super().__init__(
            "", f"{count} customers match now, not {expected} (expected_count): nothing was deleted; check the search."
        )
        self.count = count


class NotWaiting(JobConflict):
    """The job is not an uploaded preview waiting to be started."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(job_id, f"Job {job_id} is {state}, not an uploaded preview waiting to be started.")
        self.state = state


@dataclass(frozen=True)
class UploadRequest:
    """One upload, as received: the stored file and what the client asked for with it."""

    upload: StoredUpload
    filename: str
    options: ImportOptions = field(default_factory=ImportOptions)
    dry_run: bool = False
    preview: bool = False
    callback_url: str | None = None
    request_id: str | None = None
    uploaded_by: str | None = None


class JobService:
    """Import jobs: built once per gateway (gateway/app.py), read by handlers as `request.app[JOBS]`."""

    def __init__(
        self, settings: Settings, pool: aiomysql.Pool, arq: ArqRedis, store: UploadStore, events: JobEvents
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.arq = arq
        self.store = store
        self.events = events
        self.db_timeout_s = float(settings.db_timeout_s)

    @asynccontextmanager
    async def _mysql(self) -> AsyncIterator[None]:
        """Bound MySQL work as CustomerService does: past DB_TIMEOUT_S, DatabaseUnavailable (503)."""
        try:
            async with mysql_deadline(self.db_timeout_s):
                yield
        except TimeoutError:
            raise OutcomeUnknown(f"MySQL did not answer within {self.db_timeout_s:g} s") from None

    # -- writes --------------------------------------------------------------------------------
    async def receive(self, chunks: AsyncIterator[bytes]) -> StoredUpload:
        """Stream the upload to storage under a new job id (the client's filename is never a path).
        Raises UploadTooLarge past MAX_UPLOAD_MB; nothing is recorded yet."""
        return await self.store.receive(str(uuid.uuid4()), chunks, self.settings.max_upload_bytes)

    async def upload(self, request: UploadRequest) -> dict[str, Any]:
        """Check a received upload's container and its columns (from the first rows), record the job and
        queue it; with `preview`, record it as `uploaded` (nothing queued) and return the preview too.
        Raises UploadRejected (the stored file removed) before anything is recorded or queued: a file
        whose columns do not fit gets a 422 whose problem carries the preview, to build a mapping from."""
        upload, filename, options, settings = request.upload, request.filename, request.options, self.settings
        job_id = upload.job_id
        try:
            kind, found = await asyncio.to_thread(_check_upload, upload.path, filename, settings, options)
            async with self._mysql():
                found = await mappings.recall(self.pool, found, upload.path, filename, kind, options)
            _check_rows(found, filename, settings.max_rows_per_job)
            if found.problem is not None and not request.preview:
                raise UploadRejected(
                    Rejection.UNPROCESSABLE,
                    "Missing columns" if isinstance(found.problem, HeaderError) else "Invalid mapping",
                    f"{filename!r}: {str(found.problem).rstrip('.')}.",
                    **problem_extra(found),
                )
            await self.store.commit(upload, job_id, kind)
        except BaseException:
            self.store.discard(upload.path)
            raise
        try:
            async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
                await job_repo.create(
                    cur,
                    job_id=job_id,
                    filename=filename[:255],
                    file_kind=kind,
                    size_bytes=upload.size,
                    sha256=upload.sha256,
                    dry_run=request.dry_run,
                    request_id=request.request_id,
                    options=mappings.effective_options(options, found),
                    status=job_repo.UPLOADED if request.preview else job_repo.QUEUED,
                    callback_url=request.callback_url,
                    uploaded_by=request.uploaded_by,
                )
                if not request.preview:
                    await mappings.remember(cur, found, filename, job_id)
        except BaseException:
            await self.store.remove_job_files(job_id)
            raise
        if not request.preview:
            await self._enqueue_or_leave_to_sweep(job_id)
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            job = await job_repo.get(cur, job_id)
        assert job is not None
        document = job_document(job, [])
        if request.preview:
            document["preview"] = found.document
        return document

    async def start(
        self, job_id: str, options: ImportOptions, *, dry_run: bool | None, callback_url: str | None = None
    ) -> dict[str, Any]:
        """Queue a previewed job with the options given (mapping, header row, sheet, encoding), after
        checking they fit the file: UploadRejected (422, with the preview) when they do not."""
        job = await self._job(job_id)
        if job.status != job_repo.UPLOADED:
            raise NotWaiting(job_id, job.status)
        merged = job.options.merged(options)
        async with self.store.local_copy(job_id, job.file_kind) as path:
            if path is None:
                raise NotWaiting(job_id, "without its uploaded file")
            found = await asyncio.to_thread(build_preview, path, job.filename, job.file_kind, merged)
            async with self._mysql():
                found = await mappings.recall(self.pool, found, path, job.filename, job.file_kind, merged)
        if found.problem is not None:
            raise UploadRejected(
                Rejection.UNPROCESSABLE,
                "Invalid mapping",
                f"{str(found.problem).rstrip('.')}.",
                **problem_extra(found),
            )
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            if not await job_repo.start(cur, job_id, mappings.effective_options(merged, found), dry_run, callback_url):
                raise NotWaiting(job_id, "started")
            await mappings.remember(cur, found, job.filename, job_id)
        await self._enqueue_or_leave_to_sweep(job_id)
        return await self.get(job_id)

    async def preview_again(self, job_id: str, options: ImportOptions) -> dict[str, Any]:
        """An uploaded preview's stored file read again with other options (header_row, sheet, encoding,
        mapping): the same job with its new preview; nothing is uploaded again. The header row and mapping
        the previous preview settled on are not carried over (they belong to that reading); the sheet,
        encoding and import modes are, unless given. NotWaiting once the job is no longer a preview."""
        job = await self._job(job_id)
        if job.status != job_repo.UPLOADED:
            raise NotWaiting(job_id, job.status)
        wanted = dataclasses.replace(job.options, mapping=None, header_row=None).merged(options)
        async with self.store.local_copy(job_id, job.file_kind) as path:
            if path is None:
                raise NotWaiting(job_id, "without its uploaded file")
            found = await asyncio.to_thread(build_preview, path, job.filename, job.file_kind, wanted)
            async with self._mysql():
                found = await mappings.recall(self.pool, found, path, job.filename, job.file_kind, wanted)
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            if not await job_repo.set_preview_options(cur, job_id, mappings.effective_options(wanted, found)):
                raise NotWaiting(job_id, "started")
            updated = await job_repo.get(cur, job_id)
        if updated is None:
            raise JobNotFound(job_id)
        document = job_document(updated, [])
        document["preview"] = found.document
        return document

    async def discard_preview(self, job_id: str) -> None:
        """DELETE /jobs/{id}: a preview that will not be started is forgotten and its stored file deleted.
        JobConflict for any other job (an import's record is kept; cancel or revert it instead)."""
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            deleted = await job_repo.delete_preview(cur, job_id)
            job = None if deleted else await job_repo.get(cur, job_id)
        if not deleted:
            if job is None:
                raise JobNotFound(job_id)
            raise JobConflict(
                job_id,
                f"Job {job_id} is {job.status}, not a preview: only a preview that was never started is deleted.",
            )
        await self.store.remove_job_files(job_id)

    async def _enqueue_or_leave_to_sweep(self, job_id: str, kind: str = job_repo.IMPORT) -> None:
        try:
            await enqueue_job(self.arq, self.settings, job_id, kind)
        except REDIS_ERRORS:
            # The job row is durable: the workers' sweep queues it once Redis answers again.
            log.warning("could not enqueue import; the sweep will", extra={"job": job_id})

    # -- reads ---------------------------------------------------------------------------------
    async def _job(self, job_id: str) -> Job:
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            job = await job_repo.get(cur, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def get(self, job_id: str) -> dict[str, Any]:
        """The job document with its first errors and its parts."""
        async with self._mysql():
            return await get_job(self.pool, job_id)

    async def follow(self, job_id: str, last_event_id: str | None) -> AsyncIterator[Event]:
        """The job's events (GET /jobs/{id}/events), after a first bounded read: an unknown job is a
        JobNotFound before any stream starts."""
        current = await self.get(job_id)
        return follow_job(lambda job_id: get_job(self.pool, job_id), self.events, current, last_event_id)

    async def list_page(
        self, *, limit: int, cursor: str | None, statuses: Sequence[str] | None = LISTED_STATUSES
    ) -> dict[str, Any]:
        """Recent jobs, newest first: those in `statuses` (by default every one but previews; None: all)."""
        before: tuple[dt.datetime, str] | None = None
        if cursor is not None:
            payload = decode_cursor(cursor)
            before = (cursors.timestamp(payload, "created_at"), cursors.text(payload, "id"))
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            jobs = await job_repo.list_recent(cur, before=before, limit=limit + 1, statuses=statuses)
        next_cursor = None
        if len(jobs) > limit:
            last = jobs[limit - 1]
            next_cursor = encode_cursor({"created_at": last.created_at.isoformat(), "id": last.id})
        return {"items": [job_document(job, None) for job in jobs[:limit]], "next_cursor": next_cursor}

    async def errors(self, job_id: str, *, limit: int | None, cursor: str | None) -> dict[str, Any]:
        """A page of the job's row errors (limit None: all of them)."""
        after_id = 0 if cursor is None else cursors.whole_number(decode_cursor(cursor), "after")
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            job = await job_repo.get(cur, job_id)
            if job is None:
                raise JobNotFound(job_id)
            rows = await job_repo.list_errors(
                cur, job_id, after_id=after_id, limit=None if limit is None else limit + 1
            )
        next_cursor = None
        if limit is not None and len(rows) > limit:
            next_cursor = encode_cursor({"after": rows[limit - 1][0]})
            rows = rows[:limit]
        return {
            "items": error_documents(rows),
            "next_cursor": next_cursor,
            "rows_invalid": job.rows_invalid,
            "errors_stored": job.errors_stored,
        }

    async def rejected(self, job_id: str) -> tuple[list[str], list[list[str | None]]]:
        """The job's invalid rows as uploaded, plus an `errors` column saying what is wrong with each:
        (header, rows). The header names each mapped column by its field (so the file imports as it is,
        without a mapping) and the others by their own header text; fixed and uploaded again, the rows
        import (the `errors` column is ignored)."""
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            job = await job_repo.get(cur, job_id)
            if job is None:
                raise JobNotFound(job_id)
            stored = await job_repo.list_rejected(cur, job_id)
        source = job.source_header or []
        width = max([len(source), *(len(cells) for _, cells, _ in stored)], default=0)
        header = [(source[i] if i < len(source) else None) or f"column_{column_letter(i)}" for i in range(width)]
        rows = [[*cells, *([None] * (width - len(cells))), errors] for _, cells, errors in stored]
        return [*header, "errors"], rows

    # -- undo: revert, cancel, bulk delete, what a job changed -------------------------------------
    async def revert(
        self, job_id: str, *, force: bool, requested_by: str | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        """Queue a `revert` job undoing a finished import (or bulk delete): JobConflict when the job is
        not one, is still running, was a dry run or was already reverted (a revert that failed or was
        cancelled may be followed by another)."""
        revert_id = str(uuid.uuid4())
        async with self._mysql(), transaction(self.pool) as cur:
            job = await job_repo.get_for_update(cur, job_id)
            if job is None:
                raise JobNotFound(job_id)
            await self._check_revertable(cur, job)
            total = await history_repo.count_job_customers(cur, job_id)
            await job_repo.create_task(
                cur,
                job_id=revert_id,
                kind=job_repo.REVERT,
                label=f"revert of {job.filename}",
                params={"force": force},
                reverts=job_id,
                total=total,
                request_id=request_id,
                uploaded_by=requested_by,
            )
            await job_repo.set_reverted_by(cur, job_id, revert_id)
        await self._enqueue_or_leave_to_sweep(revert_id, job_repo.REVERT)
        return await self.get(revert_id)

    async def _check_revertable(self, cur: aiomysql.Cursor, job: Job) -> None:
        if job.kind == job_repo.REVERT:
            raise JobConflict(job.id, f"Job {job.id} is a revert: it cannot be reverted (revert what it undid again).")
        if job.status not in (job_repo.COMPLETED, job_repo.CANCELLED):
            raise JobConflict(job.id, f"Job {job.id} is {job.status}: only a completed or cancelled job is reverted.")
        if job.dry_run:
            raise JobConflict(job.id, f"Job {job.id} was a dry run: it changed nothing to revert.")
        if job.reverted_by is not None:
            reverting = await job_repo.get(cur, job.reverted_by)
            if reverting is not None and reverting.status not in (job_repo.FAILED, job_repo.CANCELLED):
                raise JobConflict(job.id, f"Job {job.id} was already reverted by job {job.reverted_by}.")
        days = self.settings.history_retention_days
        if days and job.finished_at is not None:
            if job.finished_at < dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=days):
                raise JobConflict(
                    job.id, f"Job {job.id} ended over {days} days ago: its history is gone (HISTORY_RETENTION_DAYS)."
                )

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """A queued job ends `cancelled` now; a running one too, and its worker (its parts' workers)
        stops at its next batch: what it committed stays (and can be reverted). JobConflict once it
        has ended (or for a preview, which DELETE /jobs/{id} discards)."""
        async with self._mysql(), transaction(self.pool) as cur:
            job = await job_repo.get_for_update(cur, job_id)
            if job is None:
                raise JobNotFound(job_id)
            if not await job_repo.cancel(cur, job_id):
                raise JobConflict(job_id, f"Job {job_id} is {job.status}: only a queued or running job is cancelled.")
            await part_repo.cancel(cur, job_id)
        document = await self.get(job_id)
        await self.events.publish(job_id, job_repo.CANCELLED, document)
        await self.store.remove_job_files(job_id)
        return document

    async def bulk_delete(
        self, search: str | None, expected_count: int, *, requested_by: str | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        """Queue a `delete` job deleting every customer `search` matches (as GET /customers?q=),
        once `expected_count` is what matches now (else CountMismatch: nothing is queued)."""
        job_id = str(uuid.uuid4())
        async with self._mysql(), transaction(self.pool) as cur:
            count = await customer_repo.count_matching(cur, search)
            if count != expected_count:
                raise CountMismatch(count, expected_count)
            await job_repo.create_task(
                cur,
                job_id=job_id,
                kind=job_repo.DELETE,
                label=f"delete customers matching {search!r}" if search else "delete every customer",
                params={"q": search or ""},
                total=count,
                request_id=request_id,
                uploaded_by=requested_by,
            )
        await self._enqueue_or_leave_to_sweep(job_id, job_repo.DELETE)
        return await self.get(job_id)

    async def changes(self, job_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
        """What the job did to each customer, by customer id: `{customer_id, email, action, changes}`
        (changes merged over the job's batches: each field's value before the job and after it)."""
        after_id = 0 if cursor is None else cursors.whole_number(decode_cursor(cursor), "after")
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            if await job_repo.get(cur, job_id) is None:
                raise JobNotFound(job_id)
            ids = await history_repo.job_customers(cur, job_id, after_id=after_id, limit=limit + 1)
            shown = ids[:limit]
            entries = await history_repo.job_entries(cur, job_id, shown)
            emails = await customer_repo.emails_of(cur, shown)
        next_cursor = encode_cursor({"after": shown[-1]}) if len(ids) > limit else None
        return {"items": job_changes(entries, emails), "next_cursor": next_cursor}


def _check_rows(found: Preview, filename: str, limit: int) -> None:
    """MAX_ROWS_PER_JOB, from the estimate the first rows give (a CSV's records scaled to its size, a
    workbook's plausible <dimension>); the worker enforces the exact count as it reads."""
    estimate = found.document.get("rows_total_estimate")
    if estimate is not None and estimate > limit:
        raise UploadRejected(
            Rejection.TOO_LARGE,
            "Too many rows",
            f"{filename!r} holds about {estimate:,} data rows, more than one job takes (MAX_ROWS_PER_JOB, "
            f"{limit:,}): split it into files of at most {limit:,} rows.",
        )


def _check_upload(path: Path, filename: str, settings: Settings, options: ImportOptions) -> tuple[str, Preview]:
    """In a thread: the container first (cheap, from the zip directory), then the columns."""
    kind = inspect_upload(
        path,
        filename,
        max_inflated_bytes=settings.max_inflated_mb * 1024 * 1024,
        max_ratio=settings.max_zip_ratio,
    )
    return kind, build_preview(path, filename, kind, options)


async def get_job(pool: aiomysql.Pool, job_id: str) -> dict[str, Any]:
    """The job document with its first errors and its parts, unbounded (the workers' reads;
    JobService.get bounds it)."""
    async with connection(pool) as conn, conn.cursor() as cur:
        job = await job_repo.get(cur, job_id)
        if job is None:
            raise JobNotFound(job_id)
        errors = await job_repo.list_errors(cur, job_id, after_id=0, limit=FIRST_ERRORS)
        parts = await part_repo.list_parts(cur, job_id)
    return job_document(job, errors, parts)


# A history row's action as GET /jobs/{id}/changes names what the job did.
CHANGE_ACTIONS = {
    history_repo.CREATED: "inserted",
    history_repo.UPDATED: "updated",
    history_repo.DELETED: "deleted",
    history_repo.RESTORED: "restored",
}


def job_changes(entries: list[history_repo.Entry], emails: dict[int, str]) -> list[dict[str, Any]]:
    """Per customer (entries by customer, oldest first): what the job did first, and each field's
    value before the job and after it. The email: the one the job left, else the stored one."""
    items: list[dict[str, Any]] = []
    for customer_id, group in itertools.groupby(entries, key=lambda entry: entry.customer_id):
        rows = list(group)
        merged: dict[str, list[Any]] = {}
        for entry in rows:
            for name, (old, new) in history_repo.readable_changes(entry.changes).items():
                merged[name] = [merged[name][0] if name in merged else old, new]
        email = (merged.get("email") or [None, None])[1] or emails.get(customer_id)
        if email is None and "email" in merged:
            email = merged["email"][0]  # deleted: the email it had
        items.append(
            {
                "customer_id": customer_id,
                "email": email,
                "action": CHANGE_ACTIONS[rows[0].action],
                "changes": {name: pair for name, pair in merged.items() if pair[0] != pair[1]},
            }
        )
    return items

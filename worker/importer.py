"""The import job: stream the sheet, validate rows, upsert in batches, warm the cache.

A parser thread reads the file, maps the header, normalises cells and validates rows, handing over
batches through a bounded queue; the event loop upserts each batch and commits it together with the
job's counters and checkpoint, so parsing, validation and database writes overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomysql
from arq import Retry
from marshmallow import ValidationError

from shared import customer_repo, job_repo
from shared.cache import CacheUnavailable, CustomerCache, encode_document
from shared.db import DatabaseUnavailable, connection, savepoint, transaction
from shared.events import JobEvents
from shared.job_repo import BatchResult, Job, LeaseLost
from shared.jobs import get_job, job_document
from shared.logs import job_id_var, request_id_var
from shared.mapping import ImportOptions, OptionError, choose_header
from shared.readers import HEAD_ROWS, WorkbookError, open_reader
from shared.runtime import release_memory
from shared.schemas import RowValidator, flatten_errors
from shared.settings import Settings
from shared.spreadsheet import CUSTOMER_FIELDS, HeaderError, extract_row, normalize_cell, row_is_empty
from shared.storage import UploadStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


@dataclass
class WorkerDeps:
    settings: Settings
    pool: aiomysql.Pool
    cache: CustomerCache
    store: UploadStore
    events: JobEvents | None = None
    bulk_load: bool = True
    # Called with the job id once a job with a callback_url has ended: queues its webhook.
    on_finished: Callable[[str], Awaitable[None]] | None = None


@dataclass
class ParsedBatch:
    last_row: int = 0
    rows_read: int = 0
    valid: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[int, str | None, str]] = field(default_factory=list)
    rejected: list[tuple[int, list[str | None]]] = field(default_factory=list)
    invalid: int = 0
    # Prepared in the parser thread, so the event loop only waits on MySQL: the valid rows in
    # CUSTOMER_FIELDS order, and the staging file built from them.
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    staged: str | None = None

    def prepare(self) -> ParsedBatch:
        self.rows = [tuple(data[name] for name in CUSTOMER_FIELDS) for _, data in self.valid]
        self.staged = customer_repo.stage_text(self.rows)
        return self


@dataclass
class SheetInfo:
    reader: str
    total_estimate: int | None
    warnings: list[str]
    sheet: str | None = None
    encoding: str | None = None
    header_row: int | None = None
    # The header a rejected-rows download carries: the field name of each mapped column, the
    # file's own header text for the others.
    source_header: list[str | None] | None = None


@dataclass
class SheetEnd:
    """The sheet was read to its end; what the rows as a whole call for saying."""

    warnings: list[str]


class _Stopped(Exception):
    pass


def width_problem(cells: list[Any], width: int) -> str | None:
    """For a CSV, where every record should hold one value per header column: what is wrong with
    this record's count, if anything (trailing empty values are harmless)."""
    count = len(cells)
    if count > width:
        while count > width and (cells[count - 1] is None or not str(cells[count - 1]).strip()):
            count -= 1
    if count == width:
        return None
    if count > width:
        return (
            f"the row has {count} values but the header has {width} columns: a value holds an unquoted "
            "separator, or there are values under no header. Nothing of this row was imported"
        )
    return (
        f"the row has {count} values but the header has {width} columns: some values are missing. "
        "Nothing of this row was imported"
    )


def _head(rows: Iterator[tuple[int, list[Any]]]) -> list[tuple[int, list[Any]]]:
    """The first rows, enough of them to find the header in: HEAD_ROWS non-empty ones at most."""
    head: list[tuple[int, list[Any]]] = []
    filled = 0
    for item in rows:
        head.append(item)
        if not row_is_empty(item[1]):
            filled += 1
            if filled >= HEAD_ROWS:
                break
    return head


def parse_file(
    path: Path,
    kind: str,
    *,
    options: ImportOptions,
    memory_budget_bytes: int,
    batch_size: int,
    resume_after_row: int,
    emit: Callable[[Any], None],
    stop: threading.Event,
    max_rows: int | None = None,
) -> None:
    """Runs in a thread: emits a SheetInfo, then ParsedBatch objects, and returns at the end.
    `max_rows` (MAX_ROWS_PER_JOB): a file with more data rows fails before any row past the limit is
    emitted (the batches before it are committed, as with any job that fails part-way)."""
    validate_row = RowValidator()
    reader = open_reader(path, kind, memory_budget_bytes, sheet=options.sheet, encoding=options.encoding)
    try:
        rows = reader.rows()
        head = _head(rows)
        if all(row_is_empty(cells) for _, cells in head):
            raise WorkbookError("the sheet is empty: no header row and no data")
        choice = choose_header(head, options)
        header = choice.columns
        width = choice.width
        by_index = {index: name for name, index in header.positions.items()}
        header_text = choice.cells or []
        emit(
            SheetInfo(
                reader.name,
                None if reader.total_estimate is None else reader.total_estimate + (1 if choice.row == 0 else 0),
                header.warnings,
                sheet=reader.sheet_name,
                encoding=reader.encoding,
                header_row=choice.row,
                source_header=[
                    by_index.get(i) or (normalize_cell(header_text[i]) if i < len(header_text) else None)
                    for i in range(width)
                ],
            )
        )
        data_rows = 0
        batch = ParsedBatch()
        for number, cells in itertools.chain(head, rows):
            if number <= choice.row or row_is_empty(cells):
                continue
            data_rows += 1
            if max_rows is not None and data_rows > max_rows:
                raise WorkbookError(too_many_rows(max_rows))
            if number <= resume_after_row:
                continue
            batch.last_row = number
            batch.rows_read += 1
            problem = width_problem(cells, width) if reader.strict_width else None
            if problem is not None:
                batch.invalid += 1
                batch.errors.append((number, None, problem))
                batch.rejected.append((number, [normalize_cell(c) for c in cells]))
            else:
                data = extract_row(cells, header)
                try:
                    batch.valid.append((number, validate_row(data)))
                except ValidationError as exc:
                    batch.invalid += 1
                    batch.errors.extend((number, column, message) for column, message in flatten_errors(exc.messages))
                    batch.rejected.append((number, [normalize_cell(c) for c in cells]))
            if batch.rows_read >= batch_size:
                if stop.is_set():
                    raise _Stopped
                emit(batch.prepare())
                batch = ParsedBatch()
        if batch.rows_read:
            emit(batch.prepare())
        if not data_rows:
            emit(SheetEnd(["no data rows: the file holds a header row and nothing under it"]))
    finally:
        reader.close()


def too_many_rows(limit: int) -> str:
    return (
        f"the file has more than {limit:,} data rows, the most one job takes (MAX_ROWS_PER_JOB): "
        f"split it into files of at most {limit:,} rows"
    )


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
        log.info("import started", extra={"attempt": job.attempts, "resume_after_row": job.checkpoint_row})
        try:
            try:
                status = await _run(deps, job, owner)
            except Exception as exc:
                # A driver may raise its own error while it is being cancelled (aiomysql does, in
                # the middle of LOAD DATA LOCAL): during a shutdown that is still the shutdown.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc
                raise
        except asyncio.CancelledError:
            # A clean shutdown (SIGTERM): hand the lease back so another worker resumes at once.
            await asyncio.shield(_release(deps, job_id, owner))
            log.info("import interrupted by shutdown; lease released")
            raise
        except LeaseLost:
            log.warning("lease lost to another worker; stopping without committing")
            return "lease-lost"
        except (WorkbookError, HeaderError, OptionError) as exc:
            await _finish(deps, job, owner, job_repo.FAILED, f"{exc}")
            return job_repo.FAILED
        except (DatabaseUnavailable, CacheUnavailable) as exc:
            await _release(deps, job_id, owner)
            log.warning("import paused: a dependency is unavailable", extra={"error": str(exc)})
            raise Retry(defer=5) from exc
        except Exception as exc:
            log.exception("import crashed")
            if job.attempts >= MAX_ATTEMPTS:
                await _finish(deps, job, owner, job_repo.FAILED, f"internal error while importing: {exc!r}")
                return job_repo.FAILED
            await _release(deps, job_id, owner)
            raise Retry(defer=5) from exc
        finally:
            request_id_var.reset(request_token)
        return status
    finally:
        release_memory()
        job_id_var.reset(token)


async def _release(deps: WorkerDeps, job_id: str, owner: str) -> None:
    with contextlib.suppress(Exception):
        async with connection(deps.pool) as conn, conn.cursor() as cur:
            await job_repo.release(cur, job_id, owner)


async def _publish_progress(deps: WorkerDeps, job_id: str) -> None:
    if deps.events is None:
        return
    async with connection(deps.pool) as conn, conn.cursor() as cur:
        current = await job_repo.get(cur, job_id)
    if current is not None:
        await deps.events.publish(job_id, "progress", job_document(current, None))


async def _finish(deps: WorkerDeps, job: Job, owner: str, status: str, error: str | None) -> None:
    async with connection(deps.pool) as conn, conn.cursor() as cur:
        finished = await job_repo.finish(cur, job.id, owner, status, error)
    if finished and deps.events is not None:
        await deps.events.publish(job.id, status, await get_job(deps.pool, job.id))
    if finished and job.callback_url and deps.on_finished is not None:
        await deps.on_finished(job.id)
    if status == job_repo.FAILED:
        log.warning("import failed", extra={"error": error})
    await deps.store.remove_job_files(job.id)


async def _heartbeat(deps: WorkerDeps, job_id: str, owner: str, main: asyncio.Task[Any]) -> None:
    """Renew the lease while the parser may be busy (a whole-sheet load can take seconds)."""
    interval = max(deps.settings.job_lease_s / 3, 0.5)
    while True:
        await asyncio.sleep(interval)
        try:
            async with connection(deps.pool) as conn, conn.cursor() as cur:
                await job_repo.renew(cur, job_id, owner, deps.settings.job_lease_s)
        except LeaseLost:
            main.cancel("lease lost")
            return
        except DatabaseUnavailable:
            continue


async def _run(deps: WorkerDeps, job: Job, owner: str) -> str:
    # A local file for the readers: the upload itself, or the object streamed from the bucket into
    # this worker's UPLOAD_DIR (deleted when the attempt ends; the object stays until the job ends).
    async with deps.store.local_copy(job.id, job.file_kind) as path:
        if path is None:
            raise WorkbookError(f"the uploaded file is no longer in the upload store ({deps.store})")
        return await _import_file(deps, job, owner, path)


async def _import_file(deps: WorkerDeps, job: Job, owner: str, path: Path) -> str:
    settings = deps.settings
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=4)
    stop = threading.Event()
    done = object()

    def emit(item: Any) -> None:
        if stop.is_set():
            raise _Stopped
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def produce() -> None:
        try:
            parse_file(
                path,
                job.file_kind,
                options=job.options,
                memory_budget_bytes=settings.reader_memory_budget_mb * 1024 * 1024,
                batch_size=settings.import_batch_size,
                resume_after_row=job.checkpoint_row,
                emit=emit,
                stop=stop,
                max_rows=settings.max_rows_per_job,
            )
            emit(done)
        except _Stopped:
            pass
        except (WorkbookError, HeaderError, OptionError) as exc:
            with contextlib.suppress(_Stopped, RuntimeError):
                emit(exc)
        except Exception as exc:
            # A damaged file surfaces as zlib, zipfile, XML or value errors from deep in a reader:
            # the job fails with the reason rather than being retried as if the worker had crashed.
            log.warning("reader error", exc_info=True)
            with contextlib.suppress(_Stopped, RuntimeError):
                emit(WorkbookError(f"the file could not be read: {type(exc).__name__}: {exc}"))

    main = asyncio.current_task()
    assert main is not None
    heartbeat = asyncio.create_task(_heartbeat(deps, job.id, owner, main))
    parser = asyncio.create_task(asyncio.to_thread(produce))
    seen: dict[str, int] = {}
    info = SheetInfo("", None, [])
    warming: asyncio.Task[None] | None = None
    try:
        while True:
            item = await queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, SheetInfo | SheetEnd):
                if isinstance(item, SheetInfo):
                    info = item
                else:
                    info.warnings = [*info.warnings, *item.warnings]
                async with connection(deps.pool) as conn, conn.cursor() as cur:
                    await job_repo.set_reader(
                        cur,
                        job.id,
                        owner,
                        info.reader,
                        info.total_estimate,
                        info.warnings,
                        sheet=info.sheet,
                        encoding=info.encoding,
                        header_row=info.header_row,
                        source_header=info.source_header,
                    )
                continue
            warm = await _commit_batch(deps, job, owner, item, seen)
            await _publish_progress(deps, job.id)
            # Warm the cache with this batch while the next one is parsed and upserted.
            if warming is not None:
                await warming
            warming = asyncio.create_task(warm) if warm is not None else None
        if warming is not None:
            await warming
            warming = None
    finally:
        if warming is not None:
            warming.cancel()
        stop.set()
        heartbeat.cancel()
        # Unblock a parser waiting on a full queue, then let it finish.
        while not parser.done():
            while not queue.empty():
                queue.get_nowait()
            await asyncio.sleep(0.01)
        with contextlib.suppress(BaseException):
            await parser
    if not job.dry_run:
        with contextlib.suppress(CacheUnavailable):
            await deps.cache.bump_generation()
    await _finish(deps, job, owner, job_repo.COMPLETED, None)
    async with connection(deps.pool) as conn, conn.cursor() as cur:
        final = await job_repo.get(cur, job.id)
    if final is not None:
        log.info("import completed", extra=_summary(final))
    return job_repo.COMPLETED


def _summary(job: Job) -> dict[str, Any]:
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


async def _commit_batch(
    deps: WorkerDeps, job: Job, owner: str, batch: ParsedBatch, seen: dict[str, int]
) -> Coroutine[Any, Any, None] | None:
    """Commit one batch; returns the cache warm-up for it (to run while the next batch goes on)."""
    settings = deps.settings
    # The last row of an email wins, in the database as in the documents built for the cache.
    latest = {data["email"]: data for _, data in batch.valid}
    stamps: list[tuple[dict[str, Any], int, int, str, str]] = []
    async with transaction(deps.pool) as cur:
        if job.dry_run:
            outcomes = _dry_run_outcomes(batch, await customer_repo.by_emails(cur, list(latest)), seen)
        else:
            outcomes, stamps = await _upsert(deps, cur, batch, latest)
        inserted, updated, unchanged = outcomes
        await job_repo.commit_batch(
            cur,
            job.id,
            owner,
            settings.job_lease_s,
            BatchResult(
                batch.last_row,
                batch.rows_read,
                inserted,
                updated,
                unchanged,
                batch.invalid,
                batch.errors,
                batch.rejected,
            ),
            settings.max_errors_per_job,
        )
    return _warm_cache(deps, stamps) if stamps else None


def _dry_run_outcomes(batch: ParsedBatch, stored: list[dict[str, Any]], seen: dict[str, int]) -> tuple[int, int, int]:
    """What an import would have counted, without writing: `seen` holds a hash of the values of
    every email met earlier in the file, as the table would hold them by now."""
    for doc in stored:
        seen.setdefault(doc["email"], hash(tuple(doc[name] for name in CUSTOMER_FIELDS)))
    inserted = updated = unchanged = 0
    for values in batch.rows:
        email = values[_EMAIL_AT]
        digest = hash(values)
        before = seen.get(email)
        if before is None:
            inserted += 1
        elif before == digest:
            unchanged += 1
        else:
            updated += 1
        seen[email] = digest
    return inserted, updated, unchanged


_EMAIL_AT = CUSTOMER_FIELDS.index("email")


async def _upsert(
    deps: WorkerDeps, cur: aiomysql.Cursor, batch: ParsedBatch, latest: dict[str, dict[str, Any]]
) -> tuple[tuple[int, int, int], list[tuple[dict[str, Any], int, int, str, str]]]:
    """Upsert a batch; returns (inserted, updated, unchanged) and (data, id, version, created_at,
    updated_at) per customer."""
    rows = batch.rows
    if deps.bulk_load:
        try:
            async with savepoint(cur):
                outcomes, by_seq = await customer_repo.bulk_upsert(cur, rows, batch.staged)
        except customer_repo.LocalInfileRefused as exc:
            log.warning("LOAD DATA LOCAL INFILE refused; using multi-row INSERT", extra={"error": str(exc)})
            deps.bulk_load = False
        else:
            # Several rows of one email map to one customer; the last row's data is what was stored.
            final: dict[int, tuple[int, tuple[int, int, str, str]]] = {}
            for seq, stamp in by_seq.items():
                if stamp[0] not in final or final[stamp[0]][0] < seq:
                    final[stamp[0]] = (seq, stamp)
            named = dict(zip(CUSTOMER_FIELDS, range(len(CUSTOMER_FIELDS)), strict=True))
            stamps = [
                ({name: rows[seq][index] for name, index in named.items()}, customer_id, version, created, changed)
                for seq, (customer_id, version, created, changed) in final.values()
            ]
            return outcomes, stamps
    outcomes = await customer_repo.upsert_many(cur, rows)
    found = await customer_repo.stamps_by_email(cur, list(latest))
    return (
        outcomes,
        [
            (latest[email], customer_id, version, created, changed)
            for email, customer_id, version, created, changed in found
            if email in latest
        ],
    )


async def _warm_cache(deps: WorkerDeps, stamps: list[tuple[dict[str, Any], int, int, str, str]]) -> None:
    documents = []
    for data, customer_id, version, created_at, updated_at in stamps:
        doc: dict[str, Any] = {"id": customer_id, "version": version}
        doc.update(data)
        doc["created_at"] = created_at
        doc["updated_at"] = updated_at
        documents.append(encode_document(doc))
    try:
        await deps.cache.put_encoded(documents)
    except CacheUnavailable as exc:
        log.warning("cache warm-up skipped: redis unavailable", extra={"error": str(exc)})

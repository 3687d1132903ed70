"""The commit step: a batch's changed rows into MySQL, its counters and checkpoint with them, in one
transaction; what the cache needs of the rows that changed comes back.

Unchanged rows are skipped before MySQL: one query per batch fetches (email, id, version, row_hash)
of the batch's emails (customer_repo.known); a row whose hash equals what its email holds by then
(the table's, or an earlier row of the file's in this batch) counts as unchanged and is not sent. A
stored row without a hash (written before migration 6, or by UPSERT_SQL) is compared by its values,
and its hash stored when it is unchanged. The rest is upserted (LOAD DATA LOCAL into a staging table,
INSERT ... SELECT; or a multi-row INSERT where LOCAL INFILE is refused), which counts inserted,
updated and unchanged rows exactly as before.

A file of new customers skips that query: after a batch that only inserted, the next one is planned
as if the table held none of its emails, and the upsert's own count shows whether that was so (if
not, it is undone to a savepoint and planned from the table). The history of a batch is written by
MySQL around the upsert (shared.customers.history_repo says how).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiomysql
import orjson
import pymysql

from shared.customers import customer_repo, history_repo
from shared.customers.fields import ATTRIBUTES, STORED_FIELDS
from shared.imports.job_repo import BatchResult
from shared.infra.db import DatabaseUnavailable, acquire, connection, savepoint, transaction
from worker.pipeline.deps import WorkerDeps
from worker.pipeline.lease import JobLease
from worker.pipeline.messages import ParsedBatch, StagedRows
from worker.pipeline.modes import BY_ID, Modes, Plan, State, all_unchanged, plan_batch, plan_new, state_from

log = logging.getLogger("worker.importer")
DEFAULT_MODES = Modes()
KnownRows = customer_repo.KnownRows


@dataclass
class Written:
    """What writing a batch's rows did: (inserted, updated, unchanged) and, per customer written, the
    stamp (row index, id, version, created_at, updated_at) of the last row that wrote it."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stamps: list[tuple[int, int, int, str, str]] = field(default_factory=list)
    # Rows the mode left alone, and row errors found against the table (row index, column, message).
    skipped: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    # documents(), when built already (while MySQL wrote the batch's history).
    built: list[bytes] | None = None

    @property
    def all_new(self) -> bool:
        """Every row it wrote was a new customer: the next batch is guessed so (write_rows' guess_new)."""
        return self.inserted > 0 and not (self.updated or self.unchanged or self.skipped)

    def documents(self, staged: StagedRows) -> list[bytes]:
        """The cache documents of the rows written (only these: an unchanged row costs nothing here):
        id and version first, as the cache's guard reads them, then the fields, then the timestamps
        (shared.customers.cache.encode_document's order)."""
        if self.built is not None:
            return self.built
        lines, dumps, values_of_line, names = staged.lines, orjson.dumps, customer_repo.values_of_line, STORED_FIELDS
        decode = customer_repo.decode_attributes
        documents = []
        for seq, customer_id, version, created, updated in self.stamps:
            doc: dict[str, object] = {"id": customer_id, "version": version}
            doc.update(zip(names, values_of_line(lines[seq]), strict=True))
            doc[ATTRIBUTES] = decode(doc[ATTRIBUTES])  # type: ignore[arg-type]
            doc["created_at"] = created
            doc["updated_at"] = updated
            documents.append(dumps(doc))
        return documents


async def write_rows(
    deps: WorkerDeps,
    cur: aiomysql.Cursor,
    staged: StagedRows,
    history: history_repo.Source | None = None,
    *,
    modes: Modes = DEFAULT_MODES,
    guess_new: bool = False,
    warm: bool = True,
    known: KnownRows | None = None,
    preloaded: bool = False,
) -> Written:
    """Inside the caller's transaction: decide each row by the import's modes (worker.pipeline.modes),
    skip the unchanged ones, update by id (match_on=id) and upsert the others; with `history`, the
    changes written are recorded in the same transaction. `guess_new`: try the batch as all new
    customers first (_write_guessed_new). `warm`: the cache documents of the rows written are wanted
    (without, a batch of new customers is written without reading their ids back). `known`: what the
    table holds of the batch's emails, read already (BatchCommitter.prefetch). `preloaded`: every
    line of the batch is in this connection's staging table already (customer_repo.load_stage)."""
    if not len(staged):
        return Written()
    if guess_new and modes.match_on != BY_ID:
        guessed = await _write_guessed_new(deps, cur, staged, history, modes, warm, preloaded)
        if guessed is not None:
            return guessed
    if known is None:
        known = await customer_repo.known(cur, staged.known_query)
    if all_unchanged(staged, known, modes):
        return Written(unchanged=len(staged))
    state, unhashed = state_from(known)
    stored_ids = {email: customer.id for email, customer in state.by_email.items()}
    plan = plan_batch(staged, state, modes, unhashed)
    if plan.hashes_found:
        await customer_repo.store_hashes(cur, plan.hashes_found)
    written = None
    if history is not None and _recordable_from_stage(deps, staged, plan):
        try:
            written = await _upsert_checked(deps, cur, staged, plan, stored_ids, history, warm)
        except _Raced:
            log.info("batch met rows written since it read the table; writing it again")
    if written is None:
        written = await _write_snapshotted(deps, cur, staged, plan, stored_ids, history)
    return _finish(written, plan)


def _finish(written: Written, plan: Plan) -> Written:
    written.unchanged += plan.unchanged
    written.skipped = plan.skipped
    written.errors = plan.errors
    return written


async def _write_guessed_new(
    deps: WorkerDeps,
    cur: aiomysql.Cursor,
    staged: StagedRows,
    history: history_repo.Source | None,
    modes: Modes,
    warm: bool,
    preloaded: bool = False,
) -> Written | None:
    """The batch written as if the table held none of its emails, without asking it (`known`, ~5 us of
    mysqld a row): what a file of new customers is, batch after batch. The upsert shows whether it
    was so (it inserted every email); if not, it is undone and None returned (the caller plans the
    batch from what the table holds, as any other). Only for a batch whose emails are all different:
    planning one against an empty table then changes nothing of it (no blank cell filled from an
    earlier row)."""
    if len(set(staged.emails)) != len(staged):
        return None
    plan = plan_new(staged, modes)
    if plan.errors or not _recordable_from_stage(deps, staged, plan):
        return None
    try:
        return _finish(await _upsert_checked(deps, cur, staged, plan, {}, history, warm, preloaded), plan)
    except _Raced:
        return None


def _recordable_from_stage(deps: WorkerDeps, staged: StagedRows, plan: Plan) -> bool:
    """Whether the batch's history can be written from the staging table (the common case): rows
    upserted by email through it, each email once and as `known` matched it."""
    if not (deps.bulk_load and plan.exact and plan.upsert) or plan.update:
        return False
    emails = staged.emails
    return len({emails[index] for index in plan.upsert}) == len(plan.upsert)


class _Raced(Exception):
    """The upsert did not meet the table the plan expected (see _upsert_checked)."""


async def _upsert_checked(
    deps: WorkerDeps,
    cur: aiomysql.Cursor,
    staged: StagedRows,
    plan: Plan,
    stored_ids: Mapping[str, int | None],
    history: history_repo.Source | None,
    warm: bool = True,
    preloaded: bool = False,
) -> Written:
    """The planned upsert, checked: it must insert exactly the emails the plan found new and write the
    others under the ids `stored_ids` says; else it is undone (to a savepoint) and _Raced raised: the
    table changed since it was read (another import inserted or deleted one of the emails), or the plan
    guessed. With `history`, and no copy of any row: the updates are recorded from the staging table
    just before the upsert (history_repo.record_staged_updates), the creations after it. Without
    `warm`, a batch the plan found all new has no stamps: nothing then needs its customers' ids but
    the history, and the count alone shows the plan held (their creations are recorded by id range
    where the server numbers a bulk insert's rows consecutively, else from the staging table)."""
    # Nothing to compare when the plan found none of the emails stored (the check then sees they were not).
    updating = history is not None and plan.inserting < len(plan.upsert)
    recorded = not updating
    read_stamps = warm or bool(stored_ids)

    async def record_updates(cur: aiomysql.Cursor) -> None:
        nonlocal recorded
        assert history is not None
        await history_repo.record_staged_updates(cur, history)
        recorded = True

    async with savepoint(cur, "before_upsert"):
        written = await _upsert(
            deps,
            cur,
            staged,
            plan.upsert,
            plan.inserting,
            before_upsert=record_updates if updating else None,
            read_stamps=read_stamps,
            preloaded=preloaded,
        )
        emails = staged.emails
        if (
            not recorded
            or written.inserted != plan.inserting
            or any(stored_ids.get(emails[seq], cid) != cid for seq, cid, *_ in written.stamps)
        ):
            raise _Raced
        if history is not None and not written.stamps:
            # Not read back, every row inserted (the count says so): by the ids first .. first + n - 1
            # where the server numbers one insert's rows so, else by email from the staging table.
            first = await customer_repo.first_id_if_numbered_consecutively(cur)
            if first is None:
                await history_repo.record_staged_created(cur, history)
                return written
            last = first + written.inserted - 1
            if await history_repo.record_created_range(cur, history, first, last) != written.inserted:
                raise _Raced  # not so numbered after all: undone, and written the general way
            return written
    if history is None:
        return written
    stored = set(stored_ids.values())
    created = sorted(stamp[1] for stamp in written.stamps if stamp[1] not in stored)
    # The stamps are final: the cache documents (~5 us a row of this process), when wanted, are built
    # while mysqld writes the creations' history (~8 us a row), instead of after it.
    recording = asyncio.create_task(history_repo.record_created(cur, history, created))
    await asyncio.sleep(0)  # the statement is sent
    try:
        if warm:
            written.built = written.documents(staged)
    except BaseException:
        recording.cancel()
        raise
    await recording
    return written


async def _write_snapshotted(
    deps: WorkerDeps,
    cur: aiomysql.Cursor,
    staged: StagedRows,
    plan: Plan,
    stored_ids: dict[str, int | None],
    history: history_repo.Source | None,
) -> Written:
    """Update by id and upsert the planned rows; with `history`, the stored rows they may change are
    copied first and compared after (history_repo.record_written)."""
    if history is not None and (plan.update or plan.upsert):
        # By id, and by the emails it upserts: one another import inserted since `known` read is no creation.
        ids = {cid for _, cid in plan.update}
        ids.update(i for i in (stored_ids.get(staged.emails[index]) for index in plan.upsert) if i is not None)
        await history_repo.snapshot(cur, sorted(ids), [staged.emails[index] for index in plan.upsert])
    by_id = Written()
    if plan.update:
        values_of_line = customer_repo.values_of_line
        await customer_repo.update_many_by_id(
            cur, [(cid, values_of_line(staged.lines[i]), staged.hashes[i]) for i, cid in plan.update]
        )
        last = {cid: i for i, cid in plan.update}
        by_id.updated = len(plan.update)
        by_id.stamps = [(last[cid], cid, v, c, u) for cid, v, c, u in await customer_repo.stamps_by_id(cur, list(last))]
    written = await _upsert(deps, cur, staged, plan.upsert, plan.inserting if plan.exact else None)
    written.updated += by_id.updated
    written.stamps += by_id.stamps
    if history is not None and written.stamps:
        await history_repo.record_written(cur, history, sorted({stamp[1] for stamp in written.stamps}))
    return written


async def _upsert(
    deps: WorkerDeps,
    cur: aiomysql.Cursor,
    staged: StagedRows,
    chosen: list[int],
    new_emails: int | None,
    *,
    before_upsert: Callable[[aiomysql.Cursor], Awaitable[object]] | None = None,
    read_stamps: bool = True,
    preloaded: bool = False,
) -> Written:
    """Upsert the chosen rows on email; `new_emails`: how many distinct emails of them the table does
    not hold (None: counted by a query). `before_upsert` runs when they are in the staging table (not
    at all when LOCAL INFILE is refused). Without `read_stamps`, the stamps may be left out (when the
    rows go through the staging table). `preloaded`: the staging table holds every line of the batch
    (used only when every line is chosen)."""
    if not chosen:
        return Written()
    if deps.bulk_load:
        preloaded = preloaded and len(chosen) == len(staged)  # chosen: distinct indices
        # Loaded already: the file is not built (~0.3 ms of this process a batch).
        data = b"" if preloaded else ("\n".join([staged.lines[i] for i in chosen]) + "\n").encode("utf-8")
        try:
            async with savepoint(cur):
                outcomes, by_seq = await customer_repo.upsert_staged(
                    cur,
                    data,
                    len(chosen),
                    new_emails=new_emails,
                    before_upsert=before_upsert,
                    read_stamps=read_stamps,
                    preloaded=preloaded,
                )
        except customer_repo.LocalInfileRefused as exc:
            log.warning("LOAD DATA LOCAL INFILE refused; using multi-row INSERT", extra={"error": str(exc)})
            deps.bulk_load = False
        else:
            # Several rows of one email map to one customer; the last row's data is what was stored.
            final: dict[int, tuple[int, int, int, str, str]] = {}
            for seq in sorted(by_seq):
                customer_id, version, created, updated = by_seq[seq]
                final[customer_id] = (seq, customer_id, version, created, updated)
            return Written(*outcomes, stamps=list(final.values()))
    rows = [customer_repo.values_of_line(staged.lines[i]) for i in chosen]
    outcomes = await customer_repo.upsert_many(cur, rows, new_emails=new_emails)
    last = {staged.emails[i]: i for i in chosen}
    found = await customer_repo.stamps_by_email(cur, list(last))
    return Written(
        *outcomes,
        stamps=[
            (last[email], customer_id, version, created, updated)
            for email, customer_id, version, created, updated in found
            if email in last
        ],
    )


class DryRunCounter:
    """What an import would have counted, without writing: `state` holds every customer met earlier
    in the file as the table would hold it by now (the modes decide each row as a real import does)."""

    def __init__(self, modes: Modes = DEFAULT_MODES) -> None:
        self.modes = modes
        self.state = State()

    async def count(self, cur: aiomysql.Cursor, staged: StagedRows) -> Written:
        if not len(staged):
            return Written()
        found, _ = state_from(await customer_repo.known(cur, staged.known_query))
        state = self.state
        for customer in found.by_email.values():
            if customer.email not in state.by_email and customer.id not in state.by_id:
                state.add(customer)
        plan = plan_batch(staged, state, self.modes)
        keep = self.modes.blank_cells == "keep"
        for index in (*plan.upsert, *(i for i, _ in plan.update)):
            customer = state.by_email[staged.emails[index]]
            if customer.line == index:  # its values are this batch's: keep them only if needed later
                customer.values = customer_repo.values_of_line(staged.lines[index]) if keep else None
                customer.line = None
        inserted = plan.inserting
        return Written(
            inserted,
            len(plan.upsert) - inserted + len(plan.update),
            plan.unchanged,
            skipped=plan.skipped,
            errors=plan.errors,
        )


def row_errors(
    batch: ParsedBatch, staged: StagedRows, found: list[tuple[int, str, str]]
) -> tuple[list[Any], list[Any]]:
    """The batch's errors and rejected rows with those the modes found (row index, field, message)
    added, in file order: a row error found against the table is reported like one the file shows
    (its column as the file names it, the field, the value)."""
    labels = staged.labels or {}
    cells = staged.cells

    def value(index: int, name: str) -> str | None:
        held = {"id": staged.ids, "version": staged.versions}.get(name)
        found_value = staged.emails[index] if name == "email" else held[index] if held is not None else None
        return None if found_value is None else str(found_value)[:100]

    errors = [
        *batch.errors,
        *((staged.rows[i], labels.get(name, name), name, value(i, name), message) for i, name, message in found),
    ]
    rejected = [
        *batch.rejected,
        *(
            (staged.rows[i], cells[i] if cells is not None else customer_repo.values_of_line(staged.lines[i]))
            for i, _, _ in found
        ),
    ]
    errors.sort(key=lambda error: error[0])
    rejected.sort(key=lambda row: row[0])
    return errors, rejected


# Imports of files sharing emails deadlock now and then however their rows are ordered (the bulk
# upsert holds the table's AUTO-INC lock while it meets rows another batch has locked): InnoDB rolls
# the victim back and it is run again, after a random pause that grows, so that batches which
# collided do not collide again in step (up to ~25 s in all: many imports of the same emails at once,
# as tests/system/test_concurrent_imports.py runs them, use 9 or 10 attempts now and then).
DEADLOCK_RETRIES = 25
# ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK, and ER_AUTOINC_READ_FAILED: what MariaDB answers the victim of
# a deadlock on the table's AUTO-INC lock (two batches upserting the same emails at once, one holding
# the lock while it waits for a row the other has locked): rolled back like any deadlock's victim.
_LOCK_CONFLICTS = (1205, 1213, 1467)


def is_lock_conflict(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, pymysql.err.OperationalError) and bool(cause.args) and cause.args[0] in _LOCK_CONFLICTS


LOAD_CONNECTION_WAIT_S = 1.0


class _StageLoad:
    """A batch of new customers loaded into the staging table of a connection of its own (outside any
    transaction) while the batch before it commits: its commit then goes on that connection and skips
    the load (`LOAD DATA` and emptying the table, ~7 us of mysqld a row, on the other core)."""

    def __init__(self, pool: aiomysql.Pool, batch: ParsedBatch) -> None:
        self.pool = pool
        self.batch = batch
        self.task = asyncio.create_task(self._load())

    async def _load(self) -> aiomysql.Connection:
        staged = self.batch.staged
        assert staged is not None
        # Bounded: with every connection in use (other jobs' loads among them), a load that waited
        # would keep its commit waiting; it gives up, and the commit loads its rows itself.
        try:
            async with asyncio.timeout(LOAD_CONNECTION_WAIT_S):
                conn = await acquire(self.pool)
        except TimeoutError:
            raise DatabaseUnavailable("no free connection to load a batch ahead") from None
        try:
            async with conn.cursor() as cur:
                await customer_repo.load_stage(cur, ("\n".join(staged.lines) + "\n").encode("utf-8"), len(staged))
        except BaseException:
            conn.close()  # whatever state the statement left it in, it is not reused
            self.pool.release(conn)
            raise
        return conn

    async def connection(self) -> aiomysql.Connection | None:
        """The connection holding the batch's rows, now the caller's to give back (`lent`); None if
        the load failed (the commit then loads the rows itself, and meets the trouble, or not)."""
        try:
            # Shielded: a commit cancelled as the load ends must not lose the connection it returns.
            return await asyncio.shield(self.task)
        except asyncio.CancelledError:
            self.drop()
            raise
        except (
            DatabaseUnavailable,
            pymysql.err.MySQLError,
            customer_repo.LocalInfileRefused,
            RuntimeError,
            OSError,  # the staging file (a full disk, say)
        ) as exc:
            log.info("loading a batch ahead failed; loading it with its commit", extra={"error": str(exc)})
            return None

    def drop(self) -> None:
        """Not used: its connection goes back to the pool once the load has ended (closed by the load
        if it was cancelled mid-statement; given back as it is if it ended all the same, as a
        cancellation swallowed while connecting lets it)."""
        self.task.cancel()
        self.task.add_done_callback(self._give_back)

    def _give_back(self, task: asyncio.Task[aiomysql.Connection]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.pool.release(task.result())


@dataclass
class _ReadAhead:
    """A batch's lookup (customer_repo.known) read while the batch before it commits, and how many
    commits had written rows when it started."""

    batch: ParsedBatch
    writes: int
    task: asyncio.Task[KnownRows]

    def drop(self) -> None:
        """Not used: cancelled (its failure, if it failed already, is not logged)."""
        if not self.task.done():
            self.task.cancel()
        elif not self.task.cancelled():
            self.task.exception()


class _Ahead(Protocol):
    batch: ParsedBatch

    def drop(self) -> None: ...


_AheadT = TypeVar("_AheadT", bound=_Ahead)


def _take(started: list[_AheadT], batch: ParsedBatch) -> _AheadT | None:
    """What was started ahead for this batch, if it was and is not taken yet (a retried commit finds
    none); what was started for a batch before it, committed without it, is dropped; what was started
    for a later one is kept for it."""
    if not any(entry.batch is batch for entry in started):
        return None
    while started[0].batch is not batch:
        started.pop(0).drop()
    return started.pop(0)


class BatchCommitter:
    """One transaction a batch: its rows (or, for a dry run, their counting), then the job's counters,
    checkpoint and errors through the lease. Returns the cache documents of the rows written, for the
    first IMPORT_WARM_MAX_ROWS customers it writes: warming a million costs more than it saves (~15 us
    of CPU a row across the worker, mysqld and Redis, and ~450 bytes of Redis memory each for 5
    minutes, docs/benchmarks.md); the read path caches the rest when they are read."""

    def __init__(self, deps: WorkerDeps, lease: JobLease) -> None:
        self.deps = deps
        self.lease = lease
        self.modes = Modes.of(lease.job.options)
        self.dry_run = DryRunCounter(self.modes) if lease.job.dry_run else None
        self.guess_new = True
        self.warm_left = deps.settings.import_warm_max_rows
        # Commits that wrote rows, and the lookups read ahead: (their batch, that count then, the read).
        self._writes = 0
        self._last_wrote = False
        self._prefetched: list[_ReadAhead] = []
        # Lookups read ahead go by id range while that finds the batches' customers (_read_known).
        self._by_id_range = self.modes.match_on != BY_ID
        self._loaded: list[_StageLoad] = []
        job = lease.job
        self.history = (
            history_repo.Source(history_repo.IMPORT, actor=job.uploaded_by, job_id=job.id, request_id=job.request_id)
            if deps.settings.import_history
            else None
        )

    def prefetch(self, batch: ParsedBatch) -> bool:
        """Start what of this batch's commit can run on a connection of its own while the batch
        before it is committed. When the batches so far were all new customers (guess_new), its rows
        are loaded into that connection's staging table (_StageLoad), and its commit goes on it. When
        the last commit wrote nothing (a re-import of an unchanged file), what the table holds of its
        emails is read (customer_repo.known, ~10 us of mysqld a row that then overlaps the worker's
        work instead of following it); commit() uses the read only if no commit since it started
        wrote a row, else it asks again, in its transaction, as always. Returns whether it started."""
        staged = batch.staged
        if self.dry_run is not None or staged is None or not len(staged):
            return False
        if self.guess_new:
            return self._load_ahead(batch)
        if self._last_wrote:
            return False
        previous = self._prefetched[-1].task if self._prefetched and self._by_id_range else None
        read = asyncio.create_task(self._read_known(staged, previous))
        self._prefetched.append(_ReadAhead(batch, self._writes, read))
        return True

    def _load_ahead(self, batch: ParsedBatch) -> bool:
        staged = batch.staged
        assert staged is not None
        pool = self.deps.pool
        if (
            not self.deps.bulk_load
            or self.modes.match_on == BY_ID
            or len(set(staged.emails)) != len(staged)  # not guessed (_write_guessed_new)
            # The load holds its connection until its commit: one must be left for the commit before it.
            or pool.freesize + pool.maxsize - pool.size < 2
        ):
            return False
        self._loaded.append(_StageLoad(pool, batch))
        return True

    async def _read_known(self, staged: StagedRows, previous: asyncio.Task[KnownRows] | None) -> KnownRows:
        """customer_repo.known for the batch; when the batch before it was read ahead too, by the ids
        that follow the highest it found (customer_repo.known_by_id_range: a file imported again in
        the order it created its customers, batch after batch), for as long as that range holds at
        least half the batch's emails."""
        after = None
        if previous is not None:
            await asyncio.wait([previous])  # never raises: its failure is its commit's to meet
            if not previous.cancelled() and previous.exception() is None:
                after = max((row[1] for row in previous.result()), default=None)
        async with connection(self.deps.pool) as conn, conn.cursor() as cur:
            if after is None or not self._by_id_range:
                return await customer_repo.known(cur, staged.known_query)
            # Past the batch's length: InnoDB numbers a bulk insert's rows from blocks of 1, 2, 4, ...
            # ids and the rest of the last block is lost (a batch of 2,000 leaves a gap of 47).
            first, last = after + 1, after + len(staged) + len(staged) // 8 + 16
            found = await customer_repo.known_by_id_range(
                cur, staged.known_query, staged.emails, staged.hashes, first, last
            )
        if 2 * sum(first <= row[1] <= last for row in found) < len(set(staged.emails)):
            self._by_id_range = False
        return found

    async def _take_prefetched(self, batch: ParsedBatch) -> KnownRows | None:
        """The lookup read ahead for this batch, if still good."""
        read = _take(self._prefetched, batch)
        if read is None:
            return None
        if read.writes != self._writes:
            read.drop()
            return None
        try:
            return await read.task
        except DatabaseUnavailable:
            return None  # asked again in the transaction (which meets the same trouble, or not)

    def discard_prefetch(self) -> None:
        for read in self._prefetched:
            read.drop()
        self._prefetched.clear()
        self.discard_loads()

    def discard_loads(self) -> None:
        for load in self._loaded:
            load.drop()
        self._loaded.clear()

    async def __aenter__(self) -> BatchCommitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.discard_prefetch()

    async def commit(self, batch: ParsedBatch) -> list[bytes]:
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                return await self._commit(batch)
            except DatabaseUnavailable as exc:
                # Parts of a split job write at once; InnoDB may pick this batch as a deadlock's
                # victim (or time its lock wait out): the whole transaction was rolled back, so
                # it is simply run again.
                if not is_lock_conflict(exc) or attempt == DEADLOCK_RETRIES:
                    raise
                log.info("batch rolled back by a lock conflict; retrying", extra={"attempt": attempt})
                await asyncio.sleep(random.uniform(0.01, 0.02 * 2 ** min(attempt, 6)))
        raise AssertionError("unreachable")

    async def _commit(self, batch: ParsedBatch) -> list[bytes]:
        staged = batch.staged
        started = time.perf_counter()
        # Both taken before the transaction's connection: a read ahead still waiting for a connection
        # would wait forever for the one the transaction holds (with every other one in use).
        known = await self._take_prefetched(batch)
        load = _take(self._loaded, batch)
        loaded = None if load is None else await load.connection()
        if loaded is None:
            # A later batch's load holds a connection this commit may need (every other one in use).
            self.discard_loads()
        async with transaction(self.deps.pool, loaded) as cur:
            if staged is None:
                written = Written()
            elif self.dry_run is not None:
                written = await self.dry_run.count(cur, staged)
            else:
                written = await write_rows(
                    self.deps,
                    cur,
                    staged,
                    self.history,
                    modes=self.modes,
                    guess_new=self.guess_new,
                    warm=self.warm_left > 0,
                    known=known,
                    preloaded=loaded is not None,
                )
                # A file of new customers is guessed so batch after batch; any other is asked (`known`).
                self.guess_new = written.all_new
            errors, rejected = batch.errors, batch.rejected
            if written.errors and staged is not None:
                errors, rejected = row_errors(batch, staged, written.errors)
            await self.lease.checkpoint(
                cur,
                BatchResult(
                    batch.last_row,
                    batch.rows_read,
                    written.inserted,
                    written.updated,
                    written.unchanged,
                    batch.invalid + len(written.errors),
                    errors,
                    rejected,
                    skipped=written.skipped,
                ),
            )
        self._last_wrote = bool(written.inserted or written.updated)
        self._writes += self._last_wrote
        if self.deps.metrics is not None:
            self.deps.metrics.batch(
                self.lease.job.dry_run,
                written.inserted,
                written.updated,
                written.unchanged,
                batch.invalid,
                time.perf_counter() - started,
            )
        if staged is None or not written.stamps or self.warm_left <= 0:
            return []
        documents = written.documents(staged)[: self.warm_left]
        self.warm_left -= len(documents)
        return documents

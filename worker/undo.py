"""The jobs that read no file: `revert` (undo an import or a bulk delete) and `delete` (a bulk delete by
search). arq entry points next to import_workbook, run like an import: claimed under the job's lease,
in batches of IMPORT_BATCH_SIZE customers by id, each batch's changes, their history and the job's
counters and checkpoint (the last customer id done) in one transaction; a worker killed mid-job is
replaced by the sweep and the next one goes on after the checkpoint. A job cancelled meanwhile finds
its lease gone at its next batch (LeaseLost) and stops.

A revert works from the history of the job it undoes: per customer, that job's first history row says
what it did (created: the customer is deleted; updated: the fields get back their values from before;
deleted, by a bulk delete: the customer is put back under its id) and a later row of anyone else's
(the API, another job) is a conflict: the customer is left as it is and listed in the revert's errors,
unless `force`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomysql

from shared.customers import customer_repo, history_repo
from shared.customers.cache import CacheUnavailable
from shared.customers.customer_repo import EmailTaken
from shared.customers.history_repo import Entry, Source
from shared.imports import job_repo
from shared.imports.job_repo import BatchResult, Job
from shared.imports.queue import Outcome
from shared.infra.db import DatabaseUnavailable, connection, savepoint, transaction
from worker.importer import run_claimed
from worker.pipeline.commit import DEADLOCK_RETRIES, is_lock_conflict
from worker.pipeline.deps import WorkerDeps
from worker.pipeline.lease import JobLease

log = logging.getLogger("worker.undo")

__all__ = ["delete_customers", "revert_job"]


@dataclass
class Done:
    """What one batch did, for the counters and the cache."""

    last_id: int = 0
    seen: int = 0
    unchanged: int = 0
    conflicts: list[Any] = field(default_factory=list)  # made by job_repo.row_error
    deleted: list[int] = field(default_factory=list)
    restored: list[dict[str, Any]] = field(default_factory=list)

    def result(self) -> BatchResult:
        return BatchResult(
            self.last_id,
            self.seen,
            0,
            0,
            self.unchanged,
            len(self.conflicts),
            self.conflicts,
            deleted=len(self.deleted),
            restored=len(self.restored),
        )


async def revert_job(ctx: dict[str, Any], job_id: str) -> Outcome:
    """arq entry point of a `revert` job: the import's frame (worker.importer.run_claimed) around it."""
    return await run_claimed(ctx, job_id, _claim(ctx, job_id), _runner(_Revert))


async def delete_customers(ctx: dict[str, Any], job_id: str) -> Outcome:
    """arq entry point of a `delete` job (POST /customers/bulk-delete)."""
    return await run_claimed(ctx, job_id, _claim(ctx, job_id), _runner(_BulkDelete))


class _Task:
    """A job's batches: prepare() once per run, then batch() until it returns None."""

    def __init__(self, deps: WorkerDeps, job: Job, lease: JobLease) -> None:
        self.deps = deps
        self.job = job
        self.lease = lease
        self.source = Source(
            history_repo.REVERT if job.kind == job_repo.REVERT else history_repo.DELETE,
            actor=job.uploaded_by,
            job_id=job.id,
            request_id=job.request_id,
        )

    async def prepare(self, cur: aiomysql.Cursor) -> None:
        return None

    async def batch(self, cur: aiomysql.Cursor, after_id: int, limit: int) -> Done | None:
        raise NotImplementedError


class _Revert(_Task):
    async def prepare(self, cur: aiomysql.Cursor) -> None:
        target = self.job.reverts
        assert target is not None
        self.target = target
        self.force = bool(self.job.params.get("force"))
        # Changes of the target's own reverts (an earlier one failed or was cancelled) are no conflict.
        self.exclude = [target, *await job_repo.reverts_of(cur, target)]
        if self.job.rows_total_estimate is None:
            total = await history_repo.count_job_customers(cur, target)
            await job_repo.set_total(cur, self.job.id, self.lease.owner, total)

    async def batch(self, cur: aiomysql.Cursor, after_id: int, limit: int) -> Done | None:
        ids = await history_repo.job_customers(cur, self.target, after_id=after_id, limit=limit)
        if not ids:
            return None
        done = Done(last_id=ids[-1], seen=len(ids))
        current = await customer_repo.get_many(cur, ids, for_update=True)
        entries: dict[int, list[Entry]] = {}
        for entry in await history_repo.job_entries(cur, self.target, ids):
            entries.setdefault(entry.customer_id, []).append(entry)
        first_ids = {customer_id: rows[0].id for customer_id, rows in entries.items()}
        later: dict[int, list[Entry]] = {}
        for entry in await history_repo.later_entries(cur, ids, min(first_ids.values()), self.exclude):
            if entry.id > first_ids[entry.customer_id]:
                later.setdefault(entry.customer_id, []).append(entry)
        history: list[tuple[int, str, int | None, dict[str, list[Any]]]] = []
        updated: list[tuple[int, dict[str, Any]]] = []  # (id, values before) of the customers restored in place
        for customer_id in ids:
            rows = entries[customer_id]
            now = current.get(customer_id)
            if later.get(customer_id) and not self.force:
                done.conflicts.append(job_repo.row_error(customer_id, _conflict(customer_id, later[customer_id])))
                continue
            action = rows[0].action
            if action == history_repo.CREATED:
                if now is None:
                    done.unchanged += 1  # gone already (an earlier revert, or deleted since and forced)
                    continue
                done.deleted.append(customer_id)
                history.append((customer_id, history_repo.DELETED, now["version"], history_repo.diff(now, None)))
                continue
            before = _values_before(rows)
            if action == history_repo.DELETED:
                if now is not None:
                    done.unchanged += 1  # already back
                    continue
                version = (rows[0].version or 0) + 1
                try:
                    async with savepoint(cur):
                        await customer_repo.insert_with_id(cur, customer_id, version, before)
                except EmailTaken as exc:
                    done.conflicts.append(
                        job_repo.row_error(customer_id, _taken(customer_id, exc), field="email", value=exc.email)
                    )
                    continue
                restored = await customer_repo.get(cur, customer_id)
                assert restored is not None
                done.restored.append(restored)
                history.append((customer_id, history_repo.RESTORED, version, history_repo.diff(None, restored)))
                continue
            if now is None:
                done.unchanged += 1  # deleted since (forced): nothing to give values back to
                continue
            wanted = {**now, **before}
            if not history_repo.diff(now, wanted):
                done.unchanged += 1
                continue
            if wanted["email"] == now["email"]:
                await customer_repo.update(cur, customer_id, wanted, None)  # no email to collide with
            else:
                try:
                    async with savepoint(cur):
                        await customer_repo.update(cur, customer_id, wanted, None)
                except EmailTaken as exc:
                    done.conflicts.append(
                        job_repo.row_error(customer_id, _taken(customer_id, exc), field="email", value=exc.email)
                    )
                    continue
            updated.append((customer_id, now))
        # The restored rows as stored now (their new versions), read once for the batch.
        stored = await customer_repo.get_many(cur, [customer_id for customer_id, _ in updated])
        for customer_id, now in updated:
            restored = stored[customer_id]
            done.restored.append(restored)
            history.append((customer_id, history_repo.RESTORED, restored["version"], history_repo.diff(now, restored)))
        await customer_repo.delete_many(cur, done.deleted)
        await history_repo.record(cur, self.source, history)
        return done


class _BulkDelete(_Task):
    async def prepare(self, cur: aiomysql.Cursor) -> None:
        self.search = self.job.params.get("q") or None

    async def batch(self, cur: aiomysql.Cursor, after_id: int, limit: int) -> Done | None:
        found = await customer_repo.matching_for_update(cur, self.search, after_id=after_id, limit=limit)
        if not found:
            return None
        ids = [int(doc["id"]) for doc in found]
        await customer_repo.delete_many(cur, ids)
        await history_repo.record(
            cur,
            self.source,
            [(int(doc["id"]), history_repo.DELETED, doc["version"], history_repo.diff(doc, None)) for doc in found],
        )
        return Done(last_id=ids[-1], seen=len(ids), deleted=ids)


def _values_before(rows: list[Entry]) -> dict[str, Any]:
    """The values the job's first change of each field found: what a revert gives back."""
    before: dict[str, Any] = {}
    for entry in rows:
        for name, (old, _new) in history_repo.readable_changes(entry.changes).items():
            before.setdefault(name, old)
    return before


def _conflict(customer_id: int, since: list[Entry]) -> str:
    fields = sorted({name for entry in since for name in entry.changes})
    last = since[-1]
    who = f" by {last.actor!r}" if last.actor else ""
    where = f" (job {last.job_id})" if last.job_id else ""
    at = last.at.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
    return (
        f"customer {customer_id} changed since: {len(since)} change(s), the last {last.action}{who} through "
        f"{last.source_kind}{where} at {at}; fields: {', '.join(fields) or 'none'}. Left as it is "
        "(revert with force to undo it anyway)."
    )


def _taken(customer_id: int, exc: EmailTaken) -> str:
    return f"customer {customer_id} cannot get its email {exc.email!r} back: another customer holds it now."


def _claim(ctx: dict[str, Any], job_id: str) -> Callable[[aiomysql.Cursor, str], Awaitable[JobLease | None]]:
    async def claim(cur: aiomysql.Cursor, owner: str) -> JobLease | None:
        job = await job_repo.claim(cur, job_id, owner, ctx["deps"].settings.job_lease_s)
        return None if job is None else JobLease(ctx["deps"], job, owner)

    return claim


def _runner(kind: type[_Task]) -> Callable[[WorkerDeps, JobLease], Awaitable[Outcome]]:
    async def run(deps: WorkerDeps, lease: JobLease) -> Outcome:
        job = lease.job
        log.info("job started", extra={"kind": job.kind, "attempt": job.attempts, "after_id": job.checkpoint_row})
        async with lease.kept_alive():
            await _batches(deps, job, lease, kind(deps, job, lease))
        await lease.finish(job_repo.COMPLETED, None)
        log.info("job completed", extra={"kind": job.kind})
        return Outcome.COMPLETED

    return run


async def _batches(deps: WorkerDeps, job: Job, lease: JobLease, task: _Task) -> None:
    async with transaction(deps.pool) as cur:
        await task.prepare(cur)
    after_id = job.checkpoint_row
    # A batch committed by an earlier attempt may have died before its cache writes: look at every
    # customer this job changed once more at the end. So does a cache write that failed here.
    refresh = job.attempts > 1
    limit = deps.settings.import_batch_size
    while True:
        done = await _commit(deps, lease, task, after_id, limit)
        if done is None:
            break
        after_id = done.last_id
        refresh = not await _write_cache(deps, done) or refresh
        await lease.publish_progress()
    if refresh:
        await _refresh_cache(deps, job.id)


async def _commit(deps: WorkerDeps, lease: JobLease, task: _Task, after_id: int, limit: int) -> Done | None:
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            async with transaction(deps.pool) as cur:
                done = await task.batch(cur, after_id, limit)
                if done is not None:
                    await lease.checkpoint(cur, done.result())
            return done
        except DatabaseUnavailable as exc:
            if not is_lock_conflict(exc) or attempt == DEADLOCK_RETRIES:
                raise
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


async def _write_cache(deps: WorkerDeps, done: Done) -> bool:
    """The batch's changes into Redis as the API's writes do (tombstones for the deleted, the new
    versions of the restored); False when Redis could not take them."""
    try:
        await deps.cache.deleted_many(done.deleted)
        await deps.cache.restored_many(done.restored)
    except CacheUnavailable as exc:
        log.warning("cache not updated for a batch; refreshing at the end", extra={"error": str(exc)})
        return False
    return True


async def _refresh_cache(deps: WorkerDeps, job_id: str, chunk: int = 1000) -> None:
    """Every customer the job changed, as MySQL holds it now, into Redis (or its tombstone): no
    reader sees a value from before the job once it has ended. Raises CacheUnavailable (the job is
    retried) when Redis does not answer."""
    after_id = 0
    while True:
        async with connection(deps.pool) as conn, conn.cursor() as cur:
            ids = await history_repo.job_customers(cur, job_id, after_id=after_id, limit=chunk)
            docs = await customer_repo.get_many(cur, ids)
        if not ids:
            return
        await deps.cache.deleted_many([i for i in ids if i not in docs])
        await deps.cache.restored_many(list(docs.values()))
        after_id = ids[-1]

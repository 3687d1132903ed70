"""SQL for `customer_history`: every change of a customer, who made it, from where, old and new values.

A row: (customer_id, at, action, actor, source_kind, job_id, request_id, version, changes). `changes` is
JSON text {field: [old, new]} holding only the fields that changed (a creation: every field set, from
null; a deletion: every field set, to null). Rows are written in the transaction of the change they
describe, so neither ever exists without the other.

An import records its batch's history in bulk, around its upsert, in one of two ways:
- the common one (rows upserted by email through the staging table, each email once):
  `record_staged_updates` compares the staged rows with the stored ones just before the upsert, and
  `record_created` records the customers it inserted just after it: no copy of any row;
- the general one (updates by id, an email twice in the batch, or the table changed since the batch
  read it): `snapshot` copies the rows about to be written into a per-connection temporary table,
  `record_written` then compares each written row with its copy (a row without a copy was created).
Either way what the upsert stored, not what the file said, is what the history holds, whatever the
import's options made of the file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiomysql

from shared.customers import customer_repo

CREATED, UPDATED, DELETED, RESTORED = "created", "updated", "deleted", "restored"
ACTIONS = (CREATED, UPDATED, DELETED, RESTORED)
# Where a change came from (the `source.kind` of a history item).
IMPORT, API, REVERT, DELETE = "import", "api", "revert", "delete"
SOURCE_KINDS = (IMPORT, API, REVERT, DELETE)

# The values history tracks: the customer's stored columns but the bookkeeping ones.
TRACKED: tuple[str, ...] = tuple(
    c for c in customer_repo.COLUMNS if c not in ("id", "version", "created_at", "updated_at")
)
_INSERT = (
    "INSERT INTO customer_history (customer_id, action, actor, source_kind, job_id, request_id, version, changes)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_HISTORY_COLUMNS = "id, customer_id, at, action, actor, source_kind, job_id, request_id, version, changes"


@dataclass(frozen=True)
class Source:
    """Who made a change and through what: the key's name, the kind, the job or the request."""

    kind: str
    actor: str | None = None
    job_id: str | None = None
    request_id: str | None = None

    def values(self) -> tuple[str | None, str, str | None, str | None]:
        """(actor, source_kind, job_id, request_id): the order the bulk statements take them in."""
        return self.actor, self.kind, self.job_id, self.request_id


@dataclass
class Entry:
    id: int
    customer_id: int
    at: dt.datetime
    action: str
    actor: str | None
    source_kind: str
    job_id: str | None
    request_id: str | None
    version: int | None
    changes: dict[str, list[Any]]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Entry:
        return cls(
            int(row[0]), int(row[1]), row[2], row[3], row[4], row[5], row[6], row[7],
            None if row[8] is None else int(row[8]), json.loads(row[9]),
        )  # fmt: skip


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """{field: [old, new]} of the tracked values that differ (None for a side that does not exist)."""
    changes: dict[str, list[Any]] = {}
    for name in TRACKED:
        old = None if before is None else before.get(name) or None  # no attributes ({}) is null too
        new = None if after is None else after.get(name) or None
        if old != new:
            changes[name] = [old, new]
    return changes


async def record(
    cur: aiomysql.Cursor,
    source: Source,
    entries: Sequence[tuple[int, str, int | None, Mapping[str, list[Any]]]],
) -> None:
    """Inside the caller's transaction: (customer id, action, version after, changes) per change."""
    if not entries:
        return
    await cur.executemany(
        _INSERT,
        [
            (customer_id, action, *source.values(), version,
             json.dumps(changes, ensure_ascii=False))
            for customer_id, action, version, changes in entries
        ],
    )  # fmt: skip


# -- an import's batch, in bulk ----------------------------------------------------------------------
_BEFORE_DDL = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS customer_before (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, "
    + ", ".join(f"{name} MEDIUMTEXT NULL" for name in TRACKED)
    + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
)


def _same(name: str, old: str = "b") -> str:
    # Byte for byte: the collation would call 'smith' equal to 'Smith'.
    return f"CAST({old}.{name} AS BINARY) <=> CAST(c.{name} AS BINARY)"


def _json(value: str) -> str:
    # JSON_QUOTE escapes exactly as JSON_ARRAY does (every tracked column is text) for about half its
    # CPU: ~2 us of mysqld less per created row (tests/bench/write_path_bench.py history-split).
    return f"IFNULL(JSON_QUOTE({value}), 'null')"


def _created(name: str) -> str:
    """The `"name":[null,new]` member of a creation's changes object, or NULL (CONCAT_WS skips it)."""
    return f"IF(c.{name} IS NULL, NULL, CONCAT('\"{name}\":[null,', JSON_QUOTE(c.{name}), ']'))"


def _change(name: str) -> str:
    """The `"name":[old,new]` member of the changes object, or NULL (CONCAT_WS skips it)."""
    return (
        f"IF(b.id IS NULL, {_created(name)},"
        f" IF({_same(name)}, NULL, CONCAT('\"{name}\":[', {_json(f'b.{name}')}, ',', {_json(f'c.{name}')}, ']')))"
    )


_RECORD_WRITTEN = (
    "INSERT INTO customer_history (customer_id, action, actor, source_kind, job_id, request_id, version, changes)"
    " SELECT c.id, IF(b.id IS NULL, 'created', 'updated'), %s, %s, %s, %s, c.version,"
    " CONCAT('{', CONCAT_WS(',', " + ", ".join(_change(name) for name in TRACKED) + "), '}')"
    " FROM customers c LEFT JOIN customer_before b ON b.id = c.id WHERE c.id IN ({ids})"
    " AND (b.id IS NULL OR NOT (" + " AND ".join(_same(name) for name in TRACKED) + "))"
)


def _stage_change(name: str) -> str:
    """The `"name":[old,new]` member comparing the stored row `c` with its staged row `s`, or NULL."""
    return f"IF({_same(name, 's')}, NULL, CONCAT('\"{name}\":[', {_json(f'c.{name}')}, ',', {_json(f's.{name}')}, ']'))"


# The staged rows' emails are matched byte for byte (the caller makes sure) and never rewritten by the
# upsert, so the email is not compared; the other values exactly as the upsert compares them.
_STAGE_TRACKED = tuple(name for name in TRACKED if name != "email")
_RECORD_STAGED_UPDATES = (
    "INSERT INTO customer_history (customer_id, action, actor, source_kind, job_id, request_id, version, changes)"
    " SELECT c.id, 'updated', %s, %s, %s, %s, c.version + 1,"
    " CONCAT('{', CONCAT_WS(',', " + ", ".join(_stage_change(name) for name in _STAGE_TRACKED) + "), '}')"
    " FROM customer_stage s STRAIGHT_JOIN customers c FORCE INDEX (uq_customers_email) ON c.email = s.email"
    " WHERE NOT (" + " AND ".join(_same(name, "s") for name in _STAGE_TRACKED) + ")"
)


# A creation's history row for each customer `c` its FROM clause (the caller's) names, its changes built by
# the server; public for the benchmark's bare baseline (tests/bench/write_path_bench.py bare --history).
CREATED_FROM_C = (
    "INSERT INTO customer_history (customer_id, action, actor, source_kind, job_id, request_id, version, changes)"
    " SELECT c.id, 'created', %s, %s, %s, %s, c.version,"
    " CONCAT('{', CONCAT_WS(',', " + ", ".join(_created(name) for name in TRACKED) + "), '}')"
)
_RECORD_CREATED = CREATED_FROM_C + " FROM customers c WHERE c.id IN ({ids})"


# The same for every row of customer_repo's staging table, found by email (after an upsert that
# inserted each of them: the caller checked its count), in the order the upsert inserted them.
_RECORD_STAGED_CREATED = (
    CREATED_FROM_C
    + " FROM customer_stage s STRAIGHT_JOIN customers c FORCE INDEX (uq_customers_email) ON c.email = s.email"
    " ORDER BY s.seq"
)


async def record_created_range(cur: aiomysql.Cursor, source: Source, first: int, last: int) -> int:
    """record_created for the customers with ids first .. last (those one bulk insert numbered)."""
    sql = CREATED_FROM_C + f" FROM customers c WHERE c.id BETWEEN {int(first)} AND {int(last)}"
    await cur.execute(sql, source.values())
    return int(cur.rowcount)


async def record_staged_created(cur: aiomysql.Cursor, source: Source) -> int:
    """record_created for the customers of the staging table, when the upsert inserted every one of
    them: their ids are not needed (nor read back)."""
    await cur.execute(_RECORD_STAGED_CREATED, source.values())
    return int(cur.rowcount)


async def record_created(cur: aiomysql.Cursor, source: Source, ids: Sequence[int]) -> int:
    """After an import's upsert (same transaction): a `created` row for each of these customers it
    inserted."""
    if not ids:
        return 0
    sql = _RECORD_CREATED.replace("{ids}", ", ".join(str(int(i)) for i in ids))
    await cur.execute(sql, source.values())
    return int(cur.rowcount)


async def record_staged_updates(cur: aiomysql.Cursor, source: Source) -> int:
    """Before an import's upsert from customer_repo's staging table (same transaction), when each
    staged row has an email of its own: an `updated` row for each stored customer whose values the
    upsert is about to change, old values from the table, new from the staging table. Reading them
    locks those rows until the commit, so the upsert changes exactly these. Cheaper than `snapshot`
    + `record_written` (no copy of the rows). Returns how many were recorded."""
    await cur.execute(_RECORD_STAGED_UPDATES, source.values())
    return int(cur.rowcount)


async def snapshot(cur: aiomysql.Cursor, ids: Sequence[int], emails: Sequence[str] = ()) -> None:
    """Before a batch's upsert (same transaction): copy the stored rows it may change, by id and by
    the emails it upserts. By email too: another import may have inserted one of them since the batch
    looked (its upsert then updates that row, which is no creation of this job's). INSERT ... SELECT
    reads the latest rows and locks them (and, for an email not there, the gap) until the commit."""
    await cur.execute(_BEFORE_DDL)  # the table lives as long as the connection
    await cur.execute("DELETE FROM customer_before")
    if not ids and not emails:
        return
    conditions, args = [], list(emails)
    if ids:
        conditions.append(f"id IN ({', '.join(str(int(i)) for i in ids)})")
    if emails:
        conditions.append(f"email IN ({', '.join(['%s'] * len(emails))})")
    await cur.execute(
        f"INSERT INTO customer_before (id, {', '.join(TRACKED)}) SELECT id, {', '.join(TRACKED)}"
        f" FROM customers WHERE {' OR '.join(conditions)}",
        args,
    )


async def record_written(cur: aiomysql.Cursor, source: Source, ids: Sequence[int]) -> int:
    """After the upsert (same transaction): a `created` row for each written id without a snapshot,
    an `updated` one for each whose values differ from it; none for a row left as it was. Returns
    how many were recorded."""
    if not ids:
        return 0
    sql = _RECORD_WRITTEN.replace("{ids}", ", ".join(str(int(i)) for i in ids))
    await cur.execute(sql, source.values())
    return int(cur.rowcount)


# -- reads -------------------------------------------------------------------------------------------
async def page(cur: aiomysql.Cursor, customer_id: int, *, before_id: int | None, limit: int) -> list[Entry]:
    """The customer's changes, newest first, those older than `before_id` when given."""
    if before_id is None:
        await cur.execute(
            f"SELECT {_HISTORY_COLUMNS} FROM customer_history WHERE customer_id = %s ORDER BY id DESC LIMIT %s",
            (customer_id, limit),
        )
    else:
        await cur.execute(
            f"SELECT {_HISTORY_COLUMNS} FROM customer_history WHERE customer_id = %s AND id < %s"
            " ORDER BY id DESC LIMIT %s",
            (customer_id, before_id, limit),
        )
    return [Entry.from_row(row) for row in await cur.fetchall()]


async def known_customer(cur: aiomysql.Cursor, customer_id: int) -> bool:
    """Whether the id ever named a customer: stored now, or in the history (a deleted one)."""
    await cur.execute(
        "SELECT EXISTS (SELECT 1 FROM customers WHERE id = %s) OR EXISTS"
        " (SELECT 1 FROM customer_history WHERE customer_id = %s)",
        (customer_id, customer_id),
    )
    (found,) = await cur.fetchone()
    return bool(found)


async def job_customers(cur: aiomysql.Cursor, job_id: str, *, after_id: int, limit: int) -> list[int]:
    """The ids of the customers a job changed, ascending, after `after_id`."""
    await cur.execute(
        "SELECT DISTINCT customer_id FROM customer_history WHERE job_id = %s AND customer_id > %s"
        " ORDER BY customer_id LIMIT %s",
        (job_id, after_id, limit),
    )
    return [int(row[0]) for row in await cur.fetchall()]


async def count_job_customers(cur: aiomysql.Cursor, job_id: str) -> int:
    await cur.execute("SELECT COUNT(DISTINCT customer_id) FROM customer_history WHERE job_id = %s", (job_id,))
    (count,) = await cur.fetchone()
    return int(count)


async def job_entries(cur: aiomysql.Cursor, job_id: str, customer_ids: Sequence[int]) -> list[Entry]:
    """The job's history rows of these customers, by customer, oldest first."""
    if not customer_ids:
        return []
    marks = ", ".join(["%s"] * len(customer_ids))
    await cur.execute(
        f"SELECT {_HISTORY_COLUMNS} FROM customer_history WHERE job_id = %s AND customer_id IN ({marks})"
        " ORDER BY customer_id, id",
        (job_id, *customer_ids),
    )
    return [Entry.from_row(row) for row in await cur.fetchall()]


async def later_entries(
    cur: aiomysql.Cursor, customer_ids: Sequence[int], after_id: int, exclude_jobs: Sequence[str]
) -> list[Entry]:
    """Changes of these customers recorded after the history row `after_id`, but those of the jobs
    in `exclude_jobs`, oldest first (a revert's caller filters them per customer). A locking read:
    it sees what committed after the caller's transaction took its snapshot (a change the API made
    just before the caller locked the customers is a conflict, not missed)."""
    if not customer_ids:
        return []
    marks = ", ".join(["%s"] * len(customer_ids))
    jobs = ", ".join(["%s"] * len(exclude_jobs)) or "NULL"
    await cur.execute(
        # The customer index, forced: by the primary key (ORDER BY id) the server would read, and lock,
        # every history row since `after_id`, a whole import's worth for each batch of a revert.
        f"SELECT {_HISTORY_COLUMNS} FROM customer_history FORCE INDEX (ix_customer_history_customer)"
        f" WHERE customer_id IN ({marks}) AND id > %s AND (job_id IS NULL OR job_id NOT IN ({jobs}))"
        " ORDER BY customer_id, id LOCK IN SHARE MODE",
        (*customer_ids, after_id, *exclude_jobs),
    )
    return sorted((Entry.from_row(row) for row in await cur.fetchall()), key=lambda entry: entry.id)


async def expire(cur: aiomysql.Cursor, older_than_days: int, limit: int = 10_000) -> int:
    """Delete history rows older than `older_than_days` (HISTORY_RETENTION_DAYS) among the `limit`
    oldest ids. By the primary key: ids grow with time (a row is numbered when its change is
    written), so the expired rows are the first ones, and an index on `at` (a quarter of what a
    history row costs an import to write) is not needed. A row numbered a moment out of order waits
    for a later sweep."""
    await cur.execute("SELECT MIN(id) FROM customer_history")
    (first,) = await cur.fetchone()
    if first is None:
        return 0
    await cur.execute(
        "DELETE FROM customer_history WHERE id < %s AND at < CURRENT_TIMESTAMP(6) - INTERVAL %s DAY",
        (int(first) + limit, older_than_days),
    )
    return int(cur.rowcount)


def readable_changes(changes: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    """Changes as the API shows them: `attributes` as the object it is (an import's history row holds
    the column's JSON text, an API write's the object)."""
    shown = dict(changes)
    if "attributes" in shown:
        shown["attributes"] = [json.loads(v) if isinstance(v, str) else v for v in shown["attributes"]]
    return shown

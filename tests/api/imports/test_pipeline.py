"""The import pipeline (worker.pipeline): unchanged rows are skipped by their hash and never written
or warmed, rows without a hash are compared by value, every write keeps `row_hash` right, and the
parser process dies with its worker. Real MariaDB, Redis and worker processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import replace
from pathlib import Path

import aiomysql
import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.customers import customer_repo, history_repo
from shared.customers.cache import CustomerCache
from shared.customers.fields import STORED_FIELDS
from shared.customers.service import CustomerService
from shared.imports.service import get_job
from shared.infra.db import connection, open_database
from shared.spreadsheet.rules import CUSTOMER_FIELDS
from tests.support.jobs import import_file, run_burst_worker, submit
from tests.support.procs import Service, free_port, get_json, service_env, upload, wait_http_ready, wait_job
from tests.support.workbooks import HEADER, csv_bytes, customers
from worker.pipeline.commit import BatchCommitter, KnownRows, _StageLoad
from worker.pipeline.messages import ParsedBatch
from worker.pipeline.stage import stage_rows

pytestmark = pytest.mark.usefixtures("clean")
EMAIL = HEADER.index("email")

_STATE = "SELECT email, id, version, updated_at, LOWER(HEX(row_hash)) FROM customers ORDER BY id"


async def rows_of(pool: aiomysql.Pool, sql: str, *args: object) -> list[tuple]:
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall())


async def cached_ids(redis: Redis, settings: Settings) -> set[int]:
    keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}{{customer:*}}", count=1000)]
    return {int(k.rsplit(b":", 1)[1].rstrip(b"}")) for k in keys}


async def forget_cache(redis: Redis, settings: Settings) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}{{customer:*}}", count=1000)]
    if keys:
        await redis.delete(*keys)


async def stored_hashes_match_values(pool: aiomysql.Pool) -> None:
    for row in await rows_of(pool, f"SELECT {', '.join(STORED_FIELDS)}, LOWER(HEX(row_hash)) FROM customers"):
        assert row[-1] == customer_repo.row_hash_hex(row[:-1]), row


def counters(job: dict) -> tuple[int, int, int, int, int]:
    return (job["rows_read"], job["rows_inserted"], job["rows_updated"], job["rows_unchanged"], job["rows_invalid"])


async def test_reimporting_an_unchanged_file_writes_and_warms_nothing(
    settings: Settings, pool: aiomysql.Pool, redis: Redis
) -> None:
    rows = customers(1200)  # three batches of 500
    rows.append(list(rows[7]))  # a repeated row: unchanged the first time too
    first = await import_file(settings, pool, "first.csv", csv_bytes(rows))
    assert counters(first) == (1201, 1200, 0, 1, 0)
    before = await rows_of(pool, _STATE)
    await stored_hashes_match_values(pool)
    await forget_cache(redis, settings)

    again = await import_file(settings, pool, "again.csv", csv_bytes(rows))
    assert counters(again) == (1201, 0, 0, 1201, 0)
    assert await rows_of(pool, _STATE) == before  # no version, updated_at or hash moved
    assert await cached_ids(redis, settings) == set()  # nothing changed: nothing warmed

    # Two rows changed (one of them twice in the file, the last one wins), one new.
    rows[3][0] = "Changed"
    rows[900][5] = "Elsewhere"
    rows.append(list(rows[900]))
    rows[-1][5] = "Elsewhere again"
    rows.append(customers(1, start=5000)[0])
    changed = await import_file(settings, pool, "changed.csv", csv_bytes(rows))
    assert counters(changed) == (1203, 1, 3, 1199, 0)
    after = {email: (cid, version) for email, cid, version, _, _ in await rows_of(pool, _STATE)}
    assert after["person3@example.com"][1] == 2 and after["person900@example.com"][1] == 3
    assert await cached_ids(redis, settings) == {
        after[e][0] for e in ("person3@example.com", "person900@example.com", "person5000@example.com")
    }
    assert await rows_of(pool, "SELECT county FROM customers WHERE email='person900@example.com'") == [
        ("Elsewhere again",)
    ]
    await stored_hashes_match_values(pool)


async def test_an_import_warms_only_its_first_import_warm_max_rows_customers_and_records_every_creation(
    settings: Settings, pool: aiomysql.Pool, redis: Redis, cache: CustomerCache
) -> None:
    """Past IMPORT_WARM_MAX_ROWS, a file of new customers is written without reading their ids back:
    the counters, the rows and their history are the same as for the warmed ones; the cache holds
    exactly the first customers written, and a read caches any other."""
    capped = replace(settings, import_warm_max_rows=700)  # batches of 500: 500 warmed, then 200, then none
    rows = customers(1200)
    job = await import_file(capped, pool, "capped.csv", csv_bytes(rows))
    assert counters(job) == (1200, 1200, 0, 0, 0)
    ids = {email: cid for email, cid, *_ in await rows_of(pool, _STATE)}
    assert len(ids) == 1200
    assert await cached_ids(redis, settings) == {ids[row[EMAIL]] for row in rows[:700]}
    await stored_hashes_match_values(pool)

    # One `created` row per customer, naming the job, its values as stored: warmed or not.
    tracked = ", ".join(history_repo.TRACKED)
    stored = {row[0]: row[1:] for row in await rows_of(pool, f"SELECT id, {tracked} FROM customers")}
    history = await rows_of(pool, "SELECT customer_id, action, version, job_id, changes FROM customer_history")
    assert sorted(cid for cid, *_ in history) == sorted(stored)
    for cid, action, version, job_id, changes in history:
        assert (action, version, job_id) == ("created", 1, job["job_id"])
        values = dict(zip(history_repo.TRACKED, stored[cid], strict=True))
        assert json.loads(changes) == {name: [None, value] for name, value in values.items() if value is not None}

    # A customer left out of the cache is cached by its first read.
    left_out = ids[rows[-1][EMAIL]]
    assert (await CustomerService(pool, cache).get(left_out)).cache == "miss"
    assert left_out in await cached_ids(redis, settings)


async def test_a_reimport_uses_each_lookup_read_ahead_past_its_first_batches(
    settings: Settings, pool: aiomysql.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-importing an unchanged file, each batch's stored hashes are read while the batch before it
    commits, and that read is the one its commit uses (the first two batches are tried as new
    customers, as any file's are, and load ahead instead)."""
    rows = customers(3000)  # batches of 500
    assert counters(await import_file(settings, pool, "first.csv", csv_bytes(rows))) == (3000, 3000, 0, 0, 0)
    used: list[bool] = []
    take = BatchCommitter._take_prefetched

    async def counted(self: BatchCommitter, batch: ParsedBatch) -> KnownRows | None:
        known = await take(self, batch)
        used.append(known is not None)
        return known

    monkeypatch.setattr(BatchCommitter, "_take_prefetched", counted)
    assert counters(await import_file(settings, pool, "again.csv", csv_bytes(rows))) == (3000, 0, 0, 3000, 0)
    assert used == [False, False, True, True, True, True]


async def test_the_lookup_by_email_finds_emails_with_characters_sql_escapes(pool: aiomysql.Pool) -> None:
    """An email with a quote, a double quote or a backslash (legal before the @) is found by the
    lookup, alone or among plain ones (the query escapes them; one with none is joined as it is)."""
    odd = ["o'brien@x.com", 'say"hi@x.com', "back\\slash@x.com"]
    plain = ["plain@x.com", "other@x.com"]
    async with connection(pool) as conn, conn.cursor() as cur:
        for email in [*odd, *plain]:
            await cur.execute("INSERT INTO customers (email) VALUES (%s)", (email,))
        for batch in ([*plain, *odd, "nobody@x.com"], [odd[0]], plain, ["it's-nobody@x.com"]):
            found = await customer_repo.known(cur, customer_repo.known_query(batch))
            assert sorted(row[0] for row in found) == sorted(e for e in batch if "nobody" not in e)


async def test_a_lookup_by_id_range_finds_what_the_lookup_by_email_finds(pool: aiomysql.Pool) -> None:
    """customer_repo.known_by_id_range against known, for a batch holding emails stored inside the
    range, outside it, stored with other letter cases (met by the collation, not byte for byte), not
    stored at all, and stored without a hash; with the stored values asked for, they come for every
    row but the ones whose hash is the batch's (unchanged: nothing is merged into them)."""

    def rows_set(rows: KnownRows) -> set[tuple[object, ...]]:
        return {(*row[:4], None if row[4] is None else tuple(row[4])) for row in rows}

    def values(email: str) -> list[str | None]:
        row: list[str | None] = [None] * len(STORED_FIELDS)
        row[STORED_FIELDS.index("email")], row[STORED_FIELDS.index("city")] = email, "Here"
        return row

    async with connection(pool) as conn, conn.cursor() as cur:
        for email in ["a@x.com", "b@x.com", "Mixed@X.com", "c@x.com", "unhashed@x.com", "far@x.com"]:
            digest = None if email == "unhashed@x.com" else customer_repo.row_hash_hex(values(email))
            await cur.execute(
                "INSERT INTO customers (email, city, row_hash) VALUES (%s, 'Here', UNHEX(%s))", (email, digest)
            )
        await cur.execute("SELECT email, id FROM customers")
        ids = dict(await cur.fetchall())
        first, last = ids["a@x.com"], ids["unhashed@x.com"]
        batch = ["b@x.com", "mixed@x.com", "c@x.com", "unhashed@x.com", "far@x.com", "nobody@x.com", "b@x.com"]
        hashes = [customer_repo.row_hash_hex(values(email)) for email in batch]
        hashes[2] = customer_repo.row_hash_hex(values("changed"))  # c@x.com changed in the file
        for with_values in (False, True):
            query = customer_repo.known_query(batch, with_values=with_values)
            expected = await customer_repo.known(cur, query)
            assert {row[0] for row in expected} == {"b@x.com", "Mixed@X.com", "c@x.com", "unhashed@x.com", "far@x.com"}
            outside = await customer_repo.known_by_id_range(cur, query, batch, hashes, last + 100, last + 200)
            assert rows_set(outside) == rows_set(expected)  # every email asked by email
            if with_values:  # b@x.com is unchanged: its values are not read
                expected = [[*row[:4], None] if row[0] == "b@x.com" else row for row in expected]
            inside = await customer_repo.known_by_id_range(cur, query, batch, hashes, first, last)
            assert rows_set(inside) == rows_set(expected)


async def test_a_reimport_in_the_order_it_created_reads_each_batch_ahead_by_id_range(
    settings: Settings, pool: aiomysql.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-importing a file, a batch read ahead after another one is read by the ids that follow the
    highest that one found, and that range holds every customer of the batch; a changed row with an
    empty cell there keeps the stored value (the values are read for the rows that changed)."""
    rows = customers(3000)  # batches of 500
    assert counters(await import_file(settings, pool, "first.csv", csv_bytes(rows))) == (3000, 3000, 0, 0, 0)
    by_range: list[int] = []
    read = customer_repo.known_by_id_range

    async def counted(
        cur: aiomysql.Cursor, query: str, emails: list[str], hashes: list[str], first: int, last: int
    ) -> KnownRows:
        found = await read(cur, query, emails, hashes, first, last)
        by_range.append(sum(first <= row[1] <= last for row in found))
        return found

    monkeypatch.setattr(customer_repo, "known_by_id_range", counted)
    city, phone = HEADER.index("city"), HEADER.index("phone")
    again = [list(row) for row in rows]
    again[2800][city], again[2800][phone] = "Changed", ""  # an empty cell keeps the stored value
    assert counters(await import_file(settings, pool, "again.csv", csv_bytes(again))) == (3000, 0, 1, 2999, 0)
    # Batches 1-2 are tried as new (loaded ahead), 3 is read by email, 4-6 by the range after the last.
    assert by_range == [500, 500, 500]
    assert await rows_of(pool, "SELECT city, phone FROM customers WHERE email = %s", rows[2800][EMAIL]) == [
        ("Changed", rows[2800][phone])
    ]


@pytest.mark.parametrize("order", ["reversed", "one_moved"])
async def test_a_reimport_in_another_order_counts_every_row_as_the_table_holds_it(
    settings: Settings, pool: aiomysql.Pool, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """The id range a batch is read by ahead holds only part of its customers, or none: the others are
    asked by email, every row is counted as the table holds it, and a range that holds less than
    half the batch is not tried again in that import."""
    city = HEADER.index("city")
    rows = customers(3000)  # batches of 500
    assert counters(await import_file(settings, pool, "first.csv", csv_bytes(rows))) == (3000, 3000, 0, 0, 0)
    again = [list(row) for row in rows]
    if order == "reversed":
        again.reverse()
    else:
        again.insert(2100, again.pop(2900))  # batch 5 holds a row of batch 6 and lends it one
    for index in (2600, 2800, 2950):  # batch 6: the reads ahead before it find nothing written
        again[index][city] = "Changed"
    calls: list[int] = []
    read = customer_repo.known_by_id_range

    async def counted(
        cur: aiomysql.Cursor, query: str, emails: list[str], hashes: list[str], first: int, last: int
    ) -> KnownRows:
        calls.append(first)
        return await read(cur, query, emails, hashes, first, last)

    monkeypatch.setattr(customer_repo, "known_by_id_range", counted)
    assert counters(await import_file(settings, pool, "again.csv", csv_bytes(again))) == (3000, 0, 3, 2997, 0)
    assert await rows_of(pool, "SELECT COUNT(*) FROM customers WHERE city = 'Changed'") == [(3,)]
    await stored_hashes_match_values(pool)
    # Reversed, the first range holds none of its batch; moved, one row of 500 is asked by email.
    assert len(calls) == (1 if order == "reversed" else 3)


async def test_a_lookup_read_ahead_is_not_used_once_a_batch_before_it_wrote(
    settings: Settings, pool: aiomysql.Pool
) -> None:
    """A re-import reads each batch's stored hashes while the batch before it is committed; when that
    batch then writes a row the next one also holds, the next one asks again: here the third batch
    puts back the values the second changed (read ahead, they would look unchanged and be skipped)."""
    rows = customers(1500)  # batches of 500
    assert counters(await import_file(settings, pool, "first.csv", csv_bytes(rows))) == (1500, 1500, 0, 0, 0)
    original_city = rows[600][HEADER.index("city")]
    again = [list(row) for row in rows]
    again[600][HEADER.index("city")] = "Second"
    again[1200] = list(rows[600])  # batch 3: the email of row 600 with its first values
    job = await import_file(settings, pool, "again.csv", csv_bytes(again))
    assert counters(job) == (1500, 0, 2, 1498, 0)
    assert await rows_of(pool, "SELECT city, version FROM customers WHERE email = %s", rows[600][EMAIL]) == [
        (original_city, 3)
    ]
    await stored_hashes_match_values(pool)


async def test_a_batch_loaded_ahead_as_new_is_written_from_the_table_when_it_was_not(
    settings: Settings, pool: aiomysql.Pool
) -> None:
    """While a batch of new customers commits, the next one is loaded into a staging table on a
    connection of its own and then upserted from it as all new. The second batch here changes a
    customer the first one wrote and the third repeats one unchanged: each is planned from the table
    and written so (counted, stored, recorded in the history as an update)."""
    city = HEADER.index("city")
    rows = customers(1500)  # batches of 500
    rows[700] = list(rows[100])
    rows[700][city] = "Later"
    rows[1200] = list(rows[200])
    job = await import_file(settings, pool, "ahead.csv", csv_bytes(rows))
    assert counters(job) == (1500, 1498, 1, 1, 0)
    assert await rows_of(pool, "SELECT city, version FROM customers WHERE email = %s", rows[100][EMAIL]) == [
        ("Later", 2)
    ]
    assert await rows_of(pool, "SELECT version FROM customers WHERE email = %s", rows[200][EMAIL]) == [(1,)]
    actions = await rows_of(
        pool,
        "SELECT h.action, h.changes FROM customer_history h JOIN customers c ON c.id = h.customer_id"
        " WHERE c.email = %s ORDER BY h.id",
        rows[100][EMAIL],
    )
    assert [action for action, _ in actions] == ["created", "updated"]
    assert json.loads(actions[1][1]) == {"city": [rows[100][city], "Later"]}
    assert (await rows_of(pool, "SELECT COUNT(*) FROM customer_history"))[0][0] == 1499
    await stored_hashes_match_values(pool)


async def test_a_worker_with_one_database_connection_imports_without_loading_ahead(
    settings: Settings, pool: aiomysql.Pool
) -> None:
    """What a batch's commit reads or loads ahead needs a connection of its own: with
    MYSQL_POOL_SIZE=1 a commit that held the only one while it waited for its read ahead (which
    waited for a connection) never ended. Here the first batch is stored already (not new: the
    third is read ahead while the second commits), the second is new (the fourth is loaded ahead
    while the third commits). Bounded, so a deadlock fails rather than hangs."""
    rows = customers(2000)  # batches of 500
    assert counters(await import_file(settings, pool, "first.csv", csv_bytes(rows[:500]))) == (500, 500, 0, 0, 0)
    async with asyncio.timeout(60):
        job = await import_file(replace(settings, mysql_pool_size=1), pool, "one.csv", csv_bytes(rows))
    assert counters(job) == (2000, 1500, 0, 500, 0)


async def test_two_imports_at_once_share_a_pool_of_two_connections(settings: Settings, pool: aiomysql.Pool) -> None:
    """WORKER_CONCURRENCY=2 over MYSQL_POOL_SIZE=2: each import's commits, reads ahead and loads ahead
    compete for two connections (and the leases' heartbeats with them); both finish, exactly counted.
    Bounded, so a deadlock fails rather than hangs."""
    stored, fresh = customers(1500), customers(2000, start=10000)
    assert counters(await import_file(settings, pool, "first.csv", csv_bytes(stored[:500])))[1] == 500
    ids = [
        await submit(settings, pool, "again.csv", csv_bytes(stored)),
        await submit(settings, pool, "fresh.csv", csv_bytes(fresh)),
    ]
    async with asyncio.timeout(90):
        await run_burst_worker(replace(settings, mysql_pool_size=2, worker_concurrency=2))
    jobs = [await get_job(pool, job_id) for job_id in ids]
    assert [counters(job) for job in jobs] == [(1500, 1000, 0, 500, 0), (2000, 2000, 0, 0, 0)]


async def test_a_batch_loaded_ahead_gives_its_connection_back_when_its_commit_is_cancelled(
    settings: Settings,
) -> None:
    """The load ends in the very turn of the event loop in which its commit is cancelled (a lease
    lost, a SIGTERM): the connection it loaded is given back to the pool, not lost with the
    cancelled commit (the pool would then never close)."""
    email = STORED_FIELDS.index("email")
    rows = []
    for n in range(50):
        values: list[str | None] = [None] * len(STORED_FIELDS)
        values[email] = f"ahead{n}@example.com"
        rows.append(tuple(values))
    own = await open_database(settings.mysql, 3)
    try:
        load = _StageLoad(own, ParsedBatch(staged=stage_rows(rows)))
        commits: list[asyncio.Task[object]] = []
        load.task.add_done_callback(lambda _: commits[0].cancel())  # runs before the commit resumes
        commits.append(asyncio.create_task(load.connection()))
        with pytest.raises(asyncio.CancelledError):
            await commits[0]
        for _ in range(3):
            await asyncio.sleep(0)
        assert load.task.done() and not load.task.cancelled() and load.task.exception() is None
        assert own.freesize == own.size
    finally:
        own.terminate()  # a connection lost to the pool would keep close() waiting for ever
        await own.wait_closed()


async def test_a_job_that_fails_part_way_gives_back_the_connections_it_loaded_ahead(
    settings: Settings, pool: aiomysql.Pool
) -> None:
    """The file has more rows than MAX_ROWS_PER_JOB: the batches before the limit are committed, the
    job fails saying why, and the worker shuts down (its pool closes only once every connection,
    the ones holding batches loaded ahead included, is back: a leak would hang here)."""
    job_id = await submit(settings, pool, "long.csv", csv_bytes(customers(2500)))
    async with asyncio.timeout(120):
        await run_burst_worker(replace(settings, max_rows_per_job=1200))  # the gateway took it with the default
    job = await get_job(pool, job_id)
    assert job["status"] == "failed" and "MAX_ROWS_PER_JOB" in job["error"], job
    stored = (await rows_of(pool, "SELECT COUNT(*) FROM customers"))[0][0]
    assert stored == job["rows_inserted"] > 0


async def test_rows_without_a_hash_are_compared_by_value_then_hashed(
    settings: Settings, pool: aiomysql.Pool, redis: Redis
) -> None:
    rows = customers(600)
    await import_file(settings, pool, "first.csv", csv_bytes(rows))
    async with connection(pool) as conn, conn.cursor() as cur:
        # As rows written before migration 6 (or through UPSERT_SQL) hold them.
        await cur.execute("UPDATE customers SET row_hash = NULL, updated_at = updated_at")
    before = await rows_of(pool, "SELECT email, id, version, updated_at FROM customers ORDER BY id")
    rows[10][1] = "Renamed"
    job = await import_file(settings, pool, "again.csv", csv_bytes(rows))
    assert counters(job) == (600, 0, 1, 599, 0)
    after = await rows_of(pool, "SELECT email, id, version, updated_at FROM customers ORDER BY id")
    assert [r for r in after if r[0] != "person10@example.com"] == [r for r in before if r[0] != "person10@example.com"]
    await stored_hashes_match_values(pool)  # every row has its hash now, the unchanged ones too


async def test_a_dry_run_counts_by_hash_without_writing(settings: Settings, pool: aiomysql.Pool) -> None:
    rows = customers(700)
    await import_file(settings, pool, "first.csv", csv_bytes(rows))
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("UPDATE customers SET row_hash = NULL, updated_at = updated_at WHERE id % 2 = 0")
    before = await rows_of(pool, _STATE)
    rows[1][0] = "Changed"
    rows[2][0] = "Changed"
    rows.append(list(rows[1]))  # the same change again: unchanged by then
    rows.append(customers(1, start=9000)[0])
    job = await import_file(settings, pool, "dry.csv", csv_bytes(rows), dry_run=True)
    assert counters(job) == (702, 1, 2, 699, 0)
    assert await rows_of(pool, _STATE) == before


async def test_api_writes_keep_the_row_hash_right(
    settings: Settings, pool: aiomysql.Pool, cache: CustomerCache
) -> None:
    service = CustomerService(pool, cache)
    created, _ = await service.create({"first_name": "Ada", "email": "ada@example.com", "phone": 123})
    await stored_hashes_match_values(pool)
    await service.replace(
        created["id"], {"first_name": "Ada", "email": "ada@example.com"}, if_match=None, partial=False
    )
    await stored_hashes_match_values(pool)
    await service.replace(created["id"], {"city": "Leeds"}, if_match=None, partial=True)
    await stored_hashes_match_values(pool)
    # The statement other code may use without a hash leaves none rather than a stale one.
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute(
            customer_repo.UPSERT_SQL,
            customer_repo.stored_values({"first_name": "Ada", "city": "York", "email": "ada@example.com"}),
        )
    assert await rows_of(pool, "SELECT row_hash FROM customers") == [(None,)]


def test_the_staging_line_and_the_hash_have_one_definition() -> None:
    rows = [
        ("Tab\there", None, "back\\slash", "new\nline", "\\N", "", "cr\r", "GB", "nul\0", "a@example.com", "é", None),
        ("A", "B", None, None, None, None, None, None, None, "b@example.com", None, '{"tier":"gold\\tab\t"}'),
    ]
    staged = stage_rows(rows)
    for seq, row in enumerate(rows):
        assert staged.hashes[seq] == customer_repo.row_hash_hex(row)
        assert staged.lines[seq] == customer_repo.stage_line(seq, row)[0]
        assert staged.lines[seq].startswith(f"{seq}\t") and staged.lines[seq].endswith(f"\t{staged.hashes[seq]}")
        assert tuple(customer_repo.values_of_line(staged.lines[seq])) == row
    assert staged.hashes[0] != customer_repo.row_hash_hex((*rows[0][:4], None, *rows[0][5:]))  # "\N" is not NULL
    assert staged.emails == ["a@example.com", "b@example.com"]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_the_parser_process_dies_with_its_worker(settings: Settings, tmp_path: Path, sig: int) -> None:
    port = free_port()
    env = service_env(settings, PORT=port)
    gateway = Service("gateway", env, tmp_path, "gateway")
    worker = Service("worker", {**env, "IMPORT_BATCH_SIZE": "200"}, tmp_path, "worker")
    try:
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)
        status, body = upload(f"http://127.0.0.1:{port}", "big.csv", csv_bytes(customers(20000)))
        assert status == 202
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, job = get_json(f"http://127.0.0.1:{port}/jobs/{body['job_id']}")
            if job["rows_read"] >= 1000:
                break
            time.sleep(0.05)
        assert job["status"] == "running", job
        family = _descendants(worker.proc.pid)
        assert family, "the worker runs its parser in a child process"
        worker.signal(sig)
        worker.proc.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in family):
            time.sleep(0.1)
        assert not [pid for pid in family if _alive(pid)], worker.output()[-3000:]
        # Another worker finishes the job from its checkpoint.
        second = Service("worker", env, tmp_path, "worker2")
        try:
            job = wait_job(f"http://127.0.0.1:{port}", body["job_id"], timeout=120)
            assert job["status"] == "completed" and job["rows_inserted"] == 20000, second.output()[-3000:]
        finally:
            second.stop()
    finally:
        worker.stop()
        gateway.stop()


@pytest.mark.e2e
def test_an_idle_workers_spare_parser_dies_with_it(settings: Settings, tmp_path: Path) -> None:
    """A worker keeps a parser process started for its next import; killed (SIGKILL: no shutdown
    runs), it leaves no process behind: the spare reads the end of its stdin and exits."""
    worker = Service("worker", service_env(settings), tmp_path, "worker")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (spare := _descendants(worker.proc.pid)):
            time.sleep(0.05)
        assert spare, "the worker starts a spare parser"
        worker.signal(signal.SIGKILL)
        worker.proc.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in spare):
            time.sleep(0.1)
        assert not [pid for pid in spare if _alive(pid)], worker.output()[-3000:]
    finally:
        worker.stop()


def _corpus(count: int, seed: int) -> list[list[object]]:
    """Rows of cells as readers give them: text with spaces, apostrophes, unicode and odd lengths,
    numbers, dates, empty cells; emails good, bad and borderline for marshmallow's validator."""
    import datetime as dt
    import random

    rnd = random.Random(seed)
    texts = [
        None,
        "",
        "   ",
        "Ann",
        " Ann ",
        "\u00a0Ann\u2003",
        "'=1+1",
        "' ",
        "'plain",
        "'+44 113",
        "x" * 20,
        "x" * 21,
        "y" * 100,
        "y" * 101,
        "z" * 255,
        "z" * 256,
        "Tab\there",
        "new\nline",
        "é" * 100,
        "İ" * 60,
        "back\\slash",
        "\\N",
        0,
        7,
        -3,
        1.5,
        2.0,
        float("nan"),
        True,
        dt.datetime(2024, 5, 1),
        dt.datetime(2024, 5, 1, 12, 30),
        dt.date(2020, 1, 2),
    ]
    emails = [
        None,
        "",
        "  ",
        "a@example.com",
        " A@Example.COM ",
        "a.b+c@mail.example.co.uk",
        "a..b@example.com",
        ".a@example.com",
        "a@example",
        "a@localhost",
        "a@[192.168.0.1]",
        '"quoted"@example.com',
        "ü@example.de",
        "a@ü.example.de",
        "a@example.museum",
        "a@example.c0m",
        "a@-example.com",
        "a@ex_ample.com",
        "a b@example.com",
        "a@b@example.com",
        "İ@example.com",
        "x" * 88 + "@example.com",
        "x" * 89 + "@example.com",
        "'a@example.com",
        "'=a@example.com",
        "a@example.com\n",
        12345,
        "K@example.com",
    ]
    rows: list[list[object]] = []
    for i in range(count):
        if rnd.random() < 0.6:  # mostly clean rows, as files are
            row: list[object] = [f"F{i}", f"L{i}", "Co", "1 High St", "Leeds", "WY", "LS1", "0113", f"p{i}@ex.com", "w"]
        else:
            row = [rnd.choice(texts) for _ in range(10)]
            row[8] = rnd.choice(emails) if rnd.random() < 0.8 else f"p{i}@ex.com"
        if rnd.random() < 0.1:
            row = row[: rnd.randrange(0, 11)]  # short rows: the missing cells are empty
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_the_column_checks_agree_with_the_schema_row_by_row(seed: int) -> None:
    """BatchValidator ≡ RowValidator (≡ RowSchema.load) on 60,000 generated rows: the same values for
    every row accepted, the same messages for every row refused."""
    from marshmallow import ValidationError

    from shared.customers.schemas import RowValidator
    from shared.spreadsheet.rules import extract_row, map_header
    from worker.pipeline.validate import BatchValidator

    # The corpus's columns (no country): the header map puts each field where the rows have it.
    header = map_header([name for name in CUSTOMER_FIELDS if name != "country"])
    rows = _corpus(15000, seed)
    reference = RowValidator()
    got = []
    validator = BatchValidator(header)
    for start in range(0, len(rows), 500):
        got.extend(validator.validate(rows[start : start + 500]))
    accepted = refused = 0
    for cells, result in zip(rows, got, strict=True):
        try:
            data = reference(extract_row(cells, header))
        except ValidationError as exc:
            assert isinstance(result, ValidationError), (cells, result)
            assert result.messages == exc.messages, cells
            refused += 1
        else:
            assert result == (*(data[name] for name in CUSTOMER_FIELDS), None), cells
            accepted += 1
    assert accepted > 9000 and refused > 2000  # both sides exercised

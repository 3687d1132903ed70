"""The write path at the machine's limit (issue 21): each figure beside its baseline from the same run.

    .venv/bin/python -m tests.bench.write_path_bench [--rows 1000000] [--repeat 3] [--no-profile]
    .venv/bin/python -m tests.bench.write_path_bench --rows 100000 --repeat 1     # a quick check

Through one real gateway and ONE real worker process (history on, FANOUT_PARTS=1), per repeat on an
emptied database: the datagen xlsx with shared strings (every row a new customer), the same file again
(every row unchanged), then the datagen csv (new customers). Per import: rows/s upload → completed,
the worker's peak RSS (with its parser processes), and the CPU µs per row of the worker, mysqld and
redis-server (procstat). Baselines of the same run, each in a process of its own: python-calamine
parse-only of the xlsx, the csv module over the csv, and `bare`: LOAD DATA LOCAL INFILE of the csv
into an unindexed staging table + one INSERT … SELECT … ON DUPLICATE KEY UPDATE into a table made
LIKE customers (its unique email index), mysqld's CPU per row measured the same way: the machine's
own limit for these rows. The load average is printed beside the figures (the machine is shared).

`profile` (run after the imports unless --no-profile): the worker's own commit step (worker.pipeline
.commit.write_rows, history on, over the parser's real batches of the csv, new then unchanged) in this
process, each statement timed on the client and charged the mysqld CPU it used (/proc before and
after): statements per batch and where mysqld's µs per row go. No lease checkpoint and no warm-up.

Database bench_write (Redis prefix bench:write:), dropped/cleared at the end. Exit 0 always: the
targets are reported, not asserted (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.bench import datagen
from tests.bench.common import (
    bench_settings,
    clear_redis,
    code_version,
    drop_database,
    fmt_int,
    fmt_ratio,
    median,
    mysql_conn,
    results_path,
    run_json,
    table,
)
from tests.bench.procstat import Window, cpu_seconds, find_pids, listening_pids

# Issue 21's targets.
TARGET_NEW_VS_CALAMINE = 0.40
TARGET_UNCHANGED_VS_CALAMINE = 0.70
TARGET_CSV_ROWS_S = 70_000
TARGET_MYSQLD_US_PER_NEW_ROW = 15.0
TARGET_PEAK_RSS_MB = 256.0


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- bare baseline: LOAD DATA + one INSERT … SELECT (run in a process of its own) ----------------------


async def bare(dsn: str, csv_path: Path, *, history: bool = False) -> dict[str, Any]:
    """LOAD DATA LOCAL INFILE of the csv into an unindexed staging table, then one upsert into a table
    LIKE customers: what the server itself needs for these rows. Reports the two steps apart.
    `history`: in the same transaction, one INSERT … SELECT of every row's creation into a table LIKE
    customer_history, with the changes text the service writes (history_repo's): the machine's own
    limit for new customers with their history, which DESIGN.md asks for in the rows' transaction."""
    import aiomysql

    from shared.config import parse_mysql_dsn
    from shared.customers import history_repo
    from shared.infra.db import open_database

    cfg = parse_mysql_dsn(dsn)
    pool = await open_database(cfg, 1)  # the schema (customers) exists in the bench database
    pool.close()
    await pool.wait_closed()
    conn = await aiomysql.connect(
        host=cfg.host,
        port=cfg.port,
        user=cfg.user,
        password=cfg.password,
        db=cfg.database,
        local_infile=True,
        autocommit=True,
        charset="utf8mb4",
    )
    mysqld = find_pids("mariadbd", "mysqld")
    columns = ", ".join(datagen.COLUMNS)
    out: dict[str, Any] = {"local_infile_was": None}
    # aiomysql sends a LOCAL file in 16 MB packets, which a server at the default max_allowed_packet
    # (16 MB) refuses: the csv goes in files of 50,000 lines (datagen's values hold no newline).
    chunk_dir = Path(tempfile.mkdtemp(prefix="bare-"))
    chunks: list[Path] = []
    with csv_path.open("rb") as fh:
        fh.readline()  # the header
        while lines := list(itertools.islice(fh, 50_000)):
            chunks.append(chunk_dir / f"{len(chunks)}.csv")
            chunks[-1].write_bytes(b"".join(lines))
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT @@local_infile")
            (enabled,) = await cur.fetchone()
            out["local_infile_was"] = int(enabled)
            if not enabled:
                # Only for this run, and only if the account may (SUPER); set back in `finally`.
                await cur.execute("SET GLOBAL local_infile = 1")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "unknown table" on a first run
                await cur.execute("DROP TABLE IF EXISTS bare_stage, bare_customers, bare_history")
            await cur.execute(
                "CREATE TABLE bare_stage ("
                + ", ".join(f"{c} VARCHAR(255) NULL" for c in datagen.COLUMNS)
                + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
            )
            await cur.execute("CREATE TABLE bare_customers LIKE customers")
            await cur.execute("CREATE TABLE bare_history LIKE customer_history")
            window = Window({"mysqld": mysqld, "self": [os.getpid()]})
            window.start()
            started = time.perf_counter()
            rows = 0
            for chunk in chunks:
                await cur.execute(
                    "LOAD DATA LOCAL INFILE %s INTO TABLE bare_stage CHARACTER SET utf8mb4"
                    " FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'"
                    f" ({columns})",
                    (str(chunk),),
                )
                rows += cur.rowcount
            loaded = time.perf_counter()
            cpu_load = window._read()["mysqld"]
            await conn.begin()
            await cur.execute(
                f"INSERT INTO bare_customers ({columns}) SELECT {columns} FROM bare_stage"
                " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in datagen.COLUMNS if c != "email")
            )
            upserted = window._read()["mysqld"]
            if history:
                # The very statement the service runs for a batch of creations, over every row at once.
                await cur.execute(
                    history_repo.CREATED_FROM_C.replace("INTO customer_history", "INTO bare_history")
                    + " FROM bare_customers c",
                    history_repo.Source(history_repo.IMPORT, job_id=str(uuid.uuid4())).values(),
                )
            await conn.commit()
            seconds = time.perf_counter() - started
            window.stop()
            load_cpu = cpu_load - window._start["mysqld"]
            upsert_end = upserted - window._start["mysqld"]
            out.update(
                rows=rows,
                seconds=seconds,
                rows_per_s=rows / seconds,
                load_s=loaded - started,
                mysqld_us_per_row=1e6 * window.cpu["mysqld"] / rows,
                mysqld_us_per_row_load=1e6 * load_cpu / rows,
                mysqld_us_per_row_upsert=1e6 * (upserted - cpu_load) / rows,
                mysqld_us_per_row_history_commit=1e6 * (window.cpu["mysqld"] - upsert_end) / rows,
            )
            await cur.execute("DROP TABLE IF EXISTS bare_stage, bare_customers, bare_history")
            if not enabled:
                await cur.execute("SET GLOBAL local_infile = 0")
    finally:
        conn.close()
        shutil.rmtree(chunk_dir, ignore_errors=True)
    return out


# -- profile: the worker's commit step in this process, statement by statement ------------------------

_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|\b\d+\b|\(%s(?:, ?%s)*\)(?:, ?\(%s(?:, ?%s)*\))*")


def statement_label(sql: str) -> str:
    """A statement's shape: its first words and the tables it names, literals and lists elided."""
    text = " ".join(_LITERALS.sub("?", sql).split())
    verb = text.split(" ", 1)[0].upper()
    tables = sorted(
        set(re.findall(r"(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+(?:IF NOT EXISTS\s+)?`?(\w+)", text, re.IGNORECASE))
    )
    detail = ""
    if "JSON_ARRAYAGG" in text.upper():
        detail = " (JSON_ARRAYAGG)"
    if verb == "INSERT" and " SELECT " in text.upper():
        detail = " … SELECT"
    return f"{verb}{detail} {','.join(tables)}".strip()


class TimedCursor:
    """A cursor whose execute()s are timed (wall, client side) and charged mysqld's CPU meanwhile."""

    def __init__(self, cur: Any, mysqld: list[int], stats: dict[str, list[float]]) -> None:
        self._cur = cur
        self._mysqld = mysqld
        self._stats = stats

    def _cpu(self) -> float:
        return sum(cpu_seconds(p) or 0.0 for p in self._mysqld)

    async def _timed(self, method: str, sql: str, *args: Any) -> Any:
        cpu0, t0 = self._cpu(), time.perf_counter()
        result = await getattr(self._cur, method)(sql, *args)
        entry = self._stats.setdefault(statement_label(sql), [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - t0
        entry[2] += self._cpu() - cpu0
        return result

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self._timed("execute", sql, *args)

    async def executemany(self, sql: str, *args: Any) -> Any:
        return await self._timed("executemany", sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


async def profile(
    dsn: str, redis_url: str, prefix: str, csv_path: Path, batch: int, budget_mb: int, keep_rows: bool = False
) -> dict[str, Any]:
    from redis.asyncio import Redis

    from shared.config import parse_mysql_dsn
    from shared.customers import history_repo
    from shared.customers.cache import CustomerCache
    from shared.infra.db import close_pool, open_database, transaction
    from shared.spreadsheet.mapping import ImportOptions
    from worker.pipeline.commit import write_rows
    from worker.pipeline.deps import WorkerDeps
    from worker.pipeline.messages import ParsedBatch
    from worker.pipeline.source import RowSource, SourceParams

    settings = bench_settings(parse_mysql_dsn(dsn).database, prefix)
    pool = await open_database(parse_mysql_dsn(dsn), 2)
    redis = Redis.from_url(redis_url)
    deps = WorkerDeps(settings, pool, CustomerCache(redis, prefix=prefix), None)  # type: ignore[arg-type]
    source = history_repo.Source(history_repo.IMPORT, actor="bench", job_id="bench-write-profile")
    mysqld = find_pids("mariadbd", "mysqld")
    params = SourceParams(csv_path, "csv", ImportOptions(), budget_mb * 1024 * 1024, batch, 0)
    batches = [m.staged for m in RowSource(params).messages() if isinstance(m, ParsedBatch) and m.staged]
    rows = sum(len(s) for s in batches)
    out: dict[str, Any] = {"rows": rows, "batches": len(batches), "batch": batch}
    try:
        async with transaction(pool) as cur:
            await cur.execute("TRUNCATE TABLE customers")
            await cur.execute("TRUNCATE TABLE customer_history")
        for case in ("new", "unchanged"):
            stats: dict[str, list[float]] = {}
            cpu0, t0 = sum(cpu_seconds(p) or 0.0 for p in mysqld), time.perf_counter()
            # As the worker's BatchCommitter does: the guess, and the warm-up's cap.
            guess_new, warm_left = True, settings.import_warm_max_rows
            for staged in batches:
                async with transaction(pool) as cur:
                    timed = TimedCursor(cur, mysqld, stats)
                    written = await write_rows(
                        deps,
                        timed,  # type: ignore[arg-type]
                        staged,
                        source,
                        guess_new=guess_new,
                        warm=warm_left > 0,
                    )
                guess_new = written.all_new
                warm_left -= len(written.stamps) if warm_left > 0 else 0
            seconds = time.perf_counter() - t0
            total_cpu = sum(cpu_seconds(p) or 0.0 for p in mysqld) - cpu0
            out[case] = {
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "mysqld_us_per_row": 1e6 * total_cpu / rows,
                "statements": {
                    label: {
                        "per_batch": n / len(batches),
                        "wall_us_per_row": 1e6 * wall / rows,
                        "mysqld_us_per_row": 1e6 * cpu / rows,
                    }
                    for label, (n, wall, cpu) in sorted(stats.items(), key=lambda kv: -kv[1][2])
                },
            }
        if not keep_rows:
            async with transaction(pool) as cur:
                await cur.execute("TRUNCATE TABLE customers")
                await cur.execute("TRUNCATE TABLE customer_history")
    finally:
        await close_pool(pool)
        await redis.aclose()
    return out


async def history_split(dsn: str, batch: int, repeat: int = 3) -> dict[str, Any]:
    """Where history_repo.record_written's mysqld CPU goes, for created rows: run over the customers
    a `profile --keep-rows` left, in batches of `batch` ids, as (a) the statement itself, (a') its
    members built with JSON_ARRAY as before issue 21, (b) the same rows with a constant changes text
    (no JSON building), (c) (b) into a copy of customer_history without its three secondary indexes.
    Each into an emptied table, mysqld CPU per row from /proc; and the changes expression alone, JSON_QUOTE
    and JSON_ARRAY, in a read-only SELECT over every customer. --repeat interleaved rounds; the least."""
    from shared.config import parse_mysql_dsn
    from shared.customers import history_repo
    from shared.infra.db import close_pool, open_database, transaction

    pool = await open_database(parse_mysql_dsn(dsn), 1)
    mysqld = find_pids("mariadbd", "mysqld")
    source = history_repo.Source(history_repo.IMPORT, actor="bench", job_id="bench-write-split")
    full = history_repo._RECORD_WRITTEN
    members = ", ".join(history_repo._change(name) for name in history_repo.TRACKED)
    assert members in full
    # The statement as it was before issue 21: each member built with JSON_ARRAY.
    json_array = full.replace(
        members,
        ", ".join(
            f"IF(b.id IS NULL, IF(c.{n} IS NULL, NULL, CONCAT('\"{n}\":', JSON_ARRAY(NULL, c.{n}))),"
            f" IF({history_repo._same(n)}, NULL, CONCAT('\"{n}\":', JSON_ARRAY(b.{n}, c.{n}))))"
            for n in history_repo.TRACKED
        ),
    )
    plain = re.sub(r"CONCAT\('\{', CONCAT_WS.*?, '\}'\) FROM", "'{}' FROM", full, flags=re.DOTALL)
    out: dict[str, Any] = {}
    try:
        async with transaction(pool) as cur:
            await cur.execute("SELECT id FROM customers ORDER BY id")
            ids = [int(r[0]) for r in await cur.fetchall()]
            await cur.execute("DROP TABLE IF EXISTS history_noindex")
            await cur.execute("CREATE TABLE history_noindex LIKE customer_history")
            for index in ("ix_customer_history_customer", "ix_customer_history_job"):
                await cur.execute(f"ALTER TABLE history_noindex DROP INDEX {index}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "already exists"
                await cur.execute(history_repo._BEFORE_DDL)
            await cur.execute("DELETE FROM customer_before")
        cases = (
            ("record_written as is", full),
            ("record_written with JSON_ARRAY (before issue 21)", json_array),
            ("constant changes text", plain),
            ("constant text, no secondary indexes", plain.replace("INTO customer_history", "INTO history_noindex")),
        )
        # Interleaved repeats; the least wall time and CPU of each case is the figure least disturbed by
        # whatever else the (shared) server ran meanwhile.
        timings: dict[str, list[tuple[float, float]]] = {}
        for _ in range(repeat):
            for label, sql in cases:
                async with transaction(pool) as cur:
                    await cur.execute("TRUNCATE TABLE customer_history")
                    await cur.execute("TRUNCATE TABLE history_noindex")
                cpu0, t0 = sum(cpu_seconds(p) or 0.0 for p in mysqld), time.perf_counter()
                for start in range(0, len(ids), batch):
                    chunk = ", ".join(str(i) for i in ids[start : start + batch])
                    async with transaction(pool) as cur:
                        await cur.execute(
                            sql.replace("{ids}", chunk), (source.actor, source.kind, source.job_id, source.request_id)
                        )
                seconds = time.perf_counter() - t0
                timings.setdefault(label, []).append((seconds, sum(cpu_seconds(p) or 0.0 for p in mysqld) - cpu0))
            # The changes expression alone, read-only over every customer (no insert at all).
            for label, sql in (("expression only, JSON_QUOTE", full), ("expression only, JSON_ARRAY", json_array)):
                expression = sql[sql.index("CONCAT('{'") : sql.index(" FROM customers c")]
                cpu0, t0 = sum(cpu_seconds(p) or 0.0 for p in mysqld), time.perf_counter()
                async with transaction(pool) as cur:
                    await cur.execute(
                        f"SELECT SUM(LENGTH({expression})) FROM customers c LEFT JOIN customer_before b ON b.id = c.id"
                    )
                    await cur.fetchall()
                seconds = time.perf_counter() - t0
                timings.setdefault(label, []).append((seconds, sum(cpu_seconds(p) or 0.0 for p in mysqld) - cpu0))
        for label, values in timings.items():
            out[label] = {
                "rows": len(ids),
                "rows_per_s": len(ids) / min(v[0] for v in values),
                "mysqld_us_per_row": 1e6 * min(v[1] for v in values) / len(ids),
                "median_mysqld_us_per_row": 1e6 * median([v[1] for v in values]) / len(ids),
            }
        async with transaction(pool) as cur:
            await cur.execute("DROP TABLE IF EXISTS history_noindex")
            await cur.execute("TRUNCATE TABLE customer_history")
    finally:
        await close_pool(pool)
    return out


async def warm(redis_url: str, prefix: str, rows: int, chunks: list[int]) -> dict[str, Any]:
    """What the import's cache warm-up costs: `rows` datagen customers as the worker encodes them,
    written by CustomerCache.put_encoded (keep-newer Lua script) in script calls of each `chunks` size
    (documents without attributes and timestamps: a little smaller than an import's);
    wall keys/s, redis-server CPU µs per key (/proc), and the memory the keys take in Redis."""
    from redis.asyncio import Redis

    from shared.customers.cache import CustomerCache, encode_document

    names = datagen.COLUMNS
    documents = [
        encode_document({"id": i + 1, "version": 1, **dict(zip(names, values, strict=True))})
        for i, values in enumerate(datagen.customer_rows(rows))
    ]
    client = Redis.from_url(redis_url)
    servers = listening_pids(find_pids("redis-server"), urlsplit(redis_url).port or 6379)
    out: dict[str, Any] = {"rows": rows}
    try:
        for chunk in chunks:
            cache = CustomerCache(client, prefix=f"{prefix}{chunk}:")
            used0 = int((await client.info("memory"))["used_memory"])
            cpu0, t0 = sum(cpu_seconds(p) or 0.0 for p in servers), time.perf_counter()
            step = max(chunk, 2000)  # the worker warms one batch (2,000) at a time; larger: fewer calls
            for start in range(0, rows, step):
                await cache.put_encoded(documents[start : start + step], chunk=chunk)
            seconds = time.perf_counter() - t0
            cpu = sum(cpu_seconds(p) or 0.0 for p in servers) - cpu0
            used = int((await client.info("memory"))["used_memory"]) - used0
            out[str(chunk)] = {
                "keys_per_s": rows / seconds,
                "redis_us_per_key": 1e6 * cpu / rows,
                "bytes_per_key": used / rows,
            }
            doomed = [key async for key in client.scan_iter(match=f"{prefix}{chunk}:*", count=5000)]
            for start in range(0, len(doomed), 5000):
                await client.unlink(*doomed[start : start + 5000])
    finally:
        await client.aclose()
    return out


# -- the run -------------------------------------------------------------------------------------------


def reset(settings: Any) -> None:
    conn = mysql_conn(settings)
    with conn.cursor() as cur:
        for statement in (
            "TRUNCATE TABLE customers",
            "TRUNCATE TABLE customer_history",
            "DELETE FROM import_errors",
            "DELETE FROM import_jobs",
        ):
            cur.execute(statement)
    conn.close()
    clear_redis(settings, ("{customer:*", "{customers}*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    b = sub.add_parser("bare")
    b.add_argument("csv", type=Path)
    b.add_argument("--dsn", required=True)
    b.add_argument("--history", action="store_true", help="and every row's creation in a table LIKE customer_history")
    p = sub.add_parser("profile")
    p.add_argument("csv", type=Path)
    p.add_argument("--dsn", required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--budget-mb", type=int, default=768)
    p.add_argument("--keep-rows", action="store_true", help="leave the customers written (for history-split)")
    w = sub.add_parser("warm")
    w.add_argument("--redis", required=True)
    w.add_argument("--prefix", default="bench:write:warm:")
    w.add_argument("--rows", type=int, default=100_000)
    w.add_argument("--chunks", default="500,2000")
    h = sub.add_parser("history-split")
    h.add_argument("--dsn", required=True)
    h.add_argument("--batch", type=int, default=2000)
    h.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--fanout-parts",
        type=int,
        default=1,
        help="FANOUT_PARTS for the worker (default 1: one part; the setting's default, 2, splits a 1M-row job "
        "into two parts the one worker process imports at once, WORKER_CONCURRENCY=2)",
    )
    parser.add_argument("--batch", type=int, help="IMPORT_BATCH_SIZE for the worker (default: the setting's)")
    parser.add_argument(
        "--profile-batches", default="", help="comma-separated batch sizes to profile (default: the worker's)"
    )
    parser.add_argument("--database", default="bench_write")
    parser.add_argument("--prefix", default="bench:write:")
    args = parser.parse_args(argv)
    if args.cmd == "bare":
        print(json.dumps(asyncio.run(bare(args.dsn, args.csv, history=args.history))))
        return 0
    if args.cmd == "profile":
        result = asyncio.run(
            profile(args.dsn, args.redis, args.prefix, args.csv, args.batch, args.budget_mb, args.keep_rows)
        )
        print(json.dumps(result))
        return 0
    if args.cmd == "warm":
        chunks = [int(x) for x in args.chunks.split(",") if x]
        print(json.dumps(asyncio.run(warm(args.redis, args.prefix, args.rows, chunks))))
        return 0
    if args.cmd == "history-split":
        print(json.dumps(asyncio.run(history_split(args.dsn, args.batch, args.repeat))))
        return 0
    return run(args)


def run(args: Any) -> int:
    from tests.bench.import_bench import run_import
    from tests.support.procs import Service, free_port, service_env, wait_http_ready

    n = args.rows
    files = datagen.ensure([n], ("shared", "csv"))
    xlsx, csv_path = files[(n, "shared")], files[(n, "csv")]
    settings = bench_settings(args.database, args.prefix)
    if args.batch:
        settings = replace(settings, import_batch_size=args.batch)
    drop_database(settings)
    clear_redis(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-write-logs-"))
    port = free_port()
    env = service_env(
        settings,
        PORT=port,
        FANOUT_PARTS=args.fanout_parts,
        WORKER_CONCURRENCY=max(2, args.fanout_parts),
        IMPORT_HISTORY="true",
        IMPORT_BATCH_SIZE=settings.import_batch_size,
    )
    loads = [load_average()]
    print(
        f"measuring code at {code_version()}: {n:,} rows, {args.repeat} time(s), FANOUT_PARTS={args.fanout_parts};"
        f" load average {loads[0]}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    gateway = Service("gateway", env, log_dir, "gateway")
    worker: Service | None = None
    try:
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)
        worker = Service("worker", env, log_dir, "worker")
        time.sleep(2.0)
        pids = {
            "gateway": [gateway.proc.pid],
            "mysqld": find_pids("mariadbd", "mysqld"),
            "redis": listening_pids(find_pids("redis-server"), urlsplit(settings.redis_url).port or 6379),
        }
        for r in range(args.repeat):
            reset(settings)
            for case, path, expect in (("xlsx new", xlsx, "new"), ("xlsx unchanged", xlsx, "unchanged")):
                result = run_import(port, path, n, worker, pids, settings, expect)
                runs.setdefault(case, []).append(result)
                print(f"  {case} run {r + 1}: {fmt_int(result['rows_per_s'])} rows/s, {_cpu(result)}", flush=True)
            reset(settings)
            result = run_import(port, csv_path, n, worker, pids, settings, "new")
            runs.setdefault("csv new", []).append(result)
            print(f"  csv new run {r + 1}: {fmt_int(result['rows_per_s'])} rows/s, {_cpu(result)}", flush=True)
            reset(settings)
            bare_cmd = ["-m", "tests.bench.write_path_bench", "bare", str(csv_path), "--dsn", settings.mysql_dsn]
            for name, cmd in (
                ("calamine", ["-m", "tests.bench.baselines", "parse", "calamine", str(xlsx)]),
                ("csv module", ["-m", "tests.bench.baselines", "parse", "csv", str(csv_path)]),
                ("bare", [*bare_cmd]),
                ("bare with history", [*bare_cmd, "--history"]),
            ):
                result = run_json(cmd)
                runs.setdefault(name, []).append(result)
                print(f"  baseline {name} run {r + 1}: {fmt_int(result['rows_per_s'])} rows/s", flush=True)
            loads.append(load_average())
        worker.stop()
        worker = None
        if not args.no_profile:
            for size in [int(x) for x in args.profile_batches.split(",") if x] or [settings.import_batch_size]:
                cmd = ["-m", "tests.bench.write_path_bench", "profile", str(csv_path), "--dsn", settings.mysql_dsn]
                cmd += ["--redis", settings.redis_url, "--prefix", settings.redis_prefix + "profile:"]
                cmd += ["--batch", str(size), "--budget-mb", str(settings.reader_memory_budget_mb)]
                runs.setdefault("profile", []).append(run_json(cmd))
                loads.append(load_average())
    finally:
        if worker is not None:
            worker.stop()
        gateway.stop()
        drop_database(settings)
        clear_redis(settings)
    text = report(runs, n, args.repeat, loads, settings)
    print("\n" + text)
    out = results_path("write_path")
    out.write_text(json.dumps({"code": code_version(), "rows": n, "runs": runs, "report": text}, indent=1, default=str))
    print(f"\nevery run: {out}; logs: {log_dir}")
    return 0


def _us(result: dict[str, Any], process: str) -> float:
    return 1e6 * result["cpu_s"].get(process, 0.0) / result["rows"]


def _cpu(result: dict[str, Any]) -> str:
    return "CPU µs/row worker {:.1f} / mysqld {:.1f} / redis {:.1f}; peak RSS {:.0f} MB (PSS {:.0f})".format(
        *(_us(result, p) for p in ("worker", "mysqld", "redis")), result["peak_rss_mb"], result.get("peak_pss_mb", 0)
    )


def report(runs: dict[str, list[dict[str, Any]]], n: int, repeat: int, loads: list[str], settings: Any) -> str:
    def rate(case: str) -> float:
        return median([r["rows_per_s"] for r in runs.get(case, [])])

    def us(case: str, process: str) -> float:
        return median([_us(r, process) for r in runs.get(case, [])])

    calamine, bare_rate = rate("calamine"), rate("bare")
    bare_us = median([r["mysqld_us_per_row"] for r in runs.get("bare", [])])
    # The same rows and their creations' history (DESIGN.md: in the rows' transaction): the limit with history on.
    with_history = runs.get("bare with history", [])
    history_rate = median([r["rows_per_s"] for r in with_history]) if with_history else 0.0
    history_us = median([r["mysqld_us_per_row"] for r in with_history]) if with_history else 0.0
    body = []
    for case, target in (("xlsx new", TARGET_NEW_VS_CALAMINE), ("xlsx unchanged", TARGET_UNCHANGED_VS_CALAMINE)):
        ratio = rate(case) / calamine
        body.append(
            [
                f"{n:,} xlsx (shared strings), {case.split()[1]}, rows/s",
                fmt_int(rate(case)),
                f"calamine parse-only {fmt_int(calamine)}",
                fmt_ratio(ratio),
                f"≥ {TARGET_NEW_VS_CALAMINE if case == 'xlsx new' else TARGET_UNCHANGED_VS_CALAMINE}×",
                "yes" if ratio >= target else "NO",
            ]
        )
    body.append(
        [
            f"{n:,} csv, new, rows/s",
            fmt_int(rate("csv new")),
            f"bare LOAD DATA + INSERT…SELECT {fmt_int(bare_rate)}, with history {fmt_int(history_rate)};"
            f" csv module {fmt_int(rate('csv module'))}",
            fmt_ratio(rate("csv new") / bare_rate),
            f"≥ {TARGET_CSV_ROWS_S:,}",
            "yes" if rate("csv new") >= TARGET_CSV_ROWS_S else "NO",
        ]
    )
    for case in ("xlsx new", "csv new"):
        body.append(
            [
                f"mysqld CPU µs per new row ({case.split()[0]})",
                f"{us(case, 'mysqld'):.1f}",
                f"bare {bare_us:.1f}, with history {history_us:.1f}",
                fmt_ratio(us(case, "mysqld") / bare_us),
                f"≤ {TARGET_MYSQLD_US_PER_NEW_ROW:g}",
                "yes" if us(case, "mysqld") <= TARGET_MYSQLD_US_PER_NEW_ROW else "NO",
            ]
        )
    imports = [r for case in ("xlsx new", "xlsx unchanged", "csv new") for r in runs.get(case, [])]
    peak = max(r["peak_rss_mb"] for r in imports)
    body.append(
        [
            "worker peak RSS MB (+ parser processes)",
            f"{peak:,.0f}",
            "",
            "",
            f"≤ {TARGET_PEAK_RSS_MB:g}",
            "yes" if peak <= TARGET_PEAK_RSS_MB else "NO",
        ]
    )
    pss = max(r.get("peak_pss_mb", 0.0) for r in imports)
    body.append(["the same as PSS (a page shared by processes counted once)", f"{pss:,.0f}", "", "", "", ""])
    lines = [
        f"== Write path, {n:,} rows, one worker, history on, batch {settings.import_batch_size}; medians of {repeat};"
        f" load average {' → '.join(loads)} ==",
        table(["case", "figure", "baseline, same run", "ratio", "target", "met"], body),
        "",
        "CPU µs per row (medians): worker+parsers / mysqld / redis",
    ]
    for case in ("xlsx new", "xlsx unchanged", "csv new"):
        lines.append(f"  {case}: " + " / ".join(f"{us(case, p):.1f}" for p in ("worker", "mysqld", "redis")))
    for name in ("bare", "bare with history"):
        bare_runs = runs.get(name, [])
        if bare_runs:
            lines.append(
                "  {}: mysqld {:.1f} (LOAD DATA {:.1f} + INSERT…SELECT {:.1f} + history and COMMIT {:.1f});"
                " {} rows/s; local_infile was {}".format(
                    name,
                    median([r["mysqld_us_per_row"] for r in bare_runs]),
                    median([r["mysqld_us_per_row_load"] for r in bare_runs]),
                    median([r["mysqld_us_per_row_upsert"] for r in bare_runs]),
                    median([r["mysqld_us_per_row_history_commit"] for r in bare_runs]),
                    fmt_int(median([r["rows_per_s"] for r in bare_runs])),
                    bare_runs[0]["local_infile_was"],
                )
            )
    for result in runs.get("profile", []):
        for case in ("new", "unchanged"):
            part = result[case]
            lines.append(
                f"\n== The commit step in one process (write_rows, history on), {case}: {part['rows_per_s']:,.0f}"
                f" rows/s, mysqld {part['mysqld_us_per_row']:.1f} µs/row, {result['batches']} batches of"
                f" {result['batch']} =="
            )
            lines.append(
                table(
                    ["statement", "per batch", "wall µs/row", "mysqld µs/row"],
                    [
                        [label, f"{s['per_batch']:.1f}", f"{s['wall_us_per_row']:.1f}", f"{s['mysqld_us_per_row']:.1f}"]
                        for label, s in part["statements"].items()
                    ],
                )
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

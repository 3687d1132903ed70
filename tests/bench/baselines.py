"""Baselines for the import benchmark, each run in a process of its own so its peak RSS is its own.

    python -m tests.bench.baselines parse {openpyxl|calamine|csv|reader|service} PATH
    python -m tests.bench.baselines insert --dsn DSN --redis URL --prefix P --batch N CSV

Each prints one JSON object on stdout.

* `parse openpyxl|calamine|csv`: the bare reader, iterating every row's values (nothing else).
* `parse reader`: the reader the service picks for this file and memory budget
  (`shared.spreadsheet.readers.open_reader`), rows only.
* `parse service`: the service's own parser process body, `worker.pipeline.source.RowSource` (reader
  choice by memory budget, header mapping, cell normalisation, validation by columns, batching,
  staging lines, row hashes and cache document JSON), with no database and in this one process:
  the ceiling for the worker's parse side.
* `insert`: (then the same with `customer_repo.bulk_upsert`, the service's LOAD DATA path, when the
  code has it) into an empty `customers` table, aiomysql `executemany` of `customer_repo.UPSERT_SQL`
  in batches of N, one transaction per batch as the worker does (new rows), then the same rows again
  (all updates); then, per batch, the select-back of the documents by email that the worker does
  before warming (`customer_repo.by_emails`) and `CustomerCache.put_many` of them (keep-newer Lua
  script), and a plain redis-py pipeline of `SET … EX` of the same documents for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def parse(reader: str, path: Path, budget_mb: int, batch_size: int) -> dict[str, Any]:
    rss_start = peak_rss_mb()
    started = time.perf_counter()
    rows = 0
    extra: dict[str, Any] = {}
    if reader == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for _ in csv.reader(fh):
                rows += 1
    elif reader == "openpyxl":
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
        ws = wb.worksheets[0]
        ws.reset_dimensions()
        for _ in ws.iter_rows(values_only=True):
            rows += 1
        wb.close()
    elif reader == "calamine":
        import python_calamine

        wb = python_calamine.CalamineWorkbook.from_path(str(path))
        sheet = wb.get_sheet_by_index(0)
        for _ in sheet.iter_rows():
            rows += 1
        wb.close()
    elif reader == "reader":
        from shared.spreadsheet.readers import open_reader

        service_reader = open_reader(path, "csv" if path.suffix == ".csv" else "xlsx", budget_mb * 1024 * 1024)
        extra["reader"] = service_reader.name
        for _ in service_reader.rows():
            rows += 1
        service_reader.close()
    elif reader == "service":
        from shared.spreadsheet.mapping import ImportOptions
        from worker.pipeline.messages import ParsedBatch, SheetInfo
        from worker.pipeline.source import RowSource, SourceParams

        kind = "csv" if path.suffix == ".csv" else "xlsx"
        counts = {"valid": 0, "invalid": 0}
        params = SourceParams(path, kind, ImportOptions(), budget_mb * 1024 * 1024, batch_size, 0)
        for item in RowSource(params).messages():
            if isinstance(item, SheetInfo):
                extra["reader"] = item.reader
            elif isinstance(item, ParsedBatch):
                rows += item.rows_read
                counts["valid"] += len(item.staged or ())
                counts["invalid"] += item.invalid
        rows += 1  # the header, so the figure compares with the bare readers'
        extra.update(counts)
    else:
        raise SystemExit(f"unknown reader {reader}")
    seconds = time.perf_counter() - started
    return {
        "what": f"parse:{reader}",
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "start_rss_mb": rss_start,
        **extra,
    }


async def insert(dsn: str, redis_url: str, prefix: str, batch: int, csv_path: Path) -> dict[str, Any]:
    from urllib.parse import urlsplit

    from redis.asyncio import Redis

    from shared.config import parse_mysql_dsn
    from shared.customers import customer_repo
    from shared.customers.cache import CustomerCache, encode_document
    from shared.infra.db import close_pool, open_database
    from tests.bench.procstat import Window, find_pids, listening_pids

    pids = {
        "self": [os.getpid()],
        "mysqld": find_pids("mariadbd", "mysqld"),
        "redis": listening_pids(find_pids("redis-server"), urlsplit(redis_url).port or 6379),
    }

    def cpu_us_per_row(window: Window, count: int) -> dict[str, float]:
        return {name: 1e6 * seconds / max(count, 1) for name, seconds in window.cpu.items()}

    with csv_path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        # The file's columns in the table's order; a field the file lacks (country, attributes) is NULL.
        where = [header.index(name) if name in header else None for name in customer_repo.STORED_FIELDS]
        rows = [tuple(r[i] if i is not None else None for i in where) for r in reader]
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    pool = await open_database(parse_mysql_dsn(dsn), 4)
    out: dict[str, Any] = {"rows": len(rows), "batch": batch}
    try:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("TRUNCATE TABLE customers")

            async def upsert_all() -> tuple[float, int, int, dict[str, float]]:
                ins = upd = 0
                window = Window(pids)
                window.start()
                started = time.perf_counter()
                for part in batches:
                    await conn.begin()
                    i, u, _unchanged = await customer_repo.upsert_many(cur, part)
                    await conn.commit()
                    ins += i
                    upd += u
                seconds = time.perf_counter() - started
                window.stop()
                return seconds, ins, upd, cpu_us_per_row(window, len(rows))

            for section in ("insert_new", "insert_update"):
                seconds, ins, upd, cpu = await upsert_all()
                out[section] = {
                    "seconds": seconds,
                    "rows_per_s": len(rows) / seconds,
                    "inserted": ins,
                    "updated": upd,
                    "cpu_us_per_row": cpu,
                }

            bulk = getattr(customer_repo, "bulk_upsert", None)
            if bulk is not None:
                # the service's bulk write path (LOAD DATA LOCAL into a staging table, one upsert,
                # ids/versions read back), if this version of the code has it
                await cur.execute("TRUNCATE TABLE customers")
                for section in ("bulk_new", "bulk_update"):
                    window = Window(pids)
                    window.start()
                    started = time.perf_counter()
                    ins = upd = 0
                    for part in batches:
                        await conn.begin()
                        (i, u, _unchanged), _stamps = await bulk(cur, part)
                        await conn.commit()
                        ins += i
                        upd += u
                    seconds = time.perf_counter() - started
                    window.stop()
                    out[section] = {
                        "seconds": seconds,
                        "rows_per_s": len(rows) / seconds,
                        "inserted": ins,
                        "updated": upd,
                        "cpu_us_per_row": cpu_us_per_row(window, len(rows)),
                    }

            redis = Redis.from_url(redis_url)
            cache = CustomerCache(redis, prefix=prefix + "warm:")
            t_select = t_put = t_pipe = 0.0
            keys = 0
            for part in batches:
                emails = [r[8].lower() for r in part]
                started = time.perf_counter()
                docs = await customer_repo.by_emails(cur, emails)
                t_select += time.perf_counter() - started
                started = time.perf_counter()
                await cache.put_many(docs)
                t_put += time.perf_counter() - started
                started = time.perf_counter()
                async with redis.pipeline(transaction=False) as pipe:
                    for doc in docs:
                        pipe.set(f"{prefix}raw:customer:{doc['id']}", encode_document(doc), ex=300)
                    await pipe.execute()
                t_pipe += time.perf_counter() - started
                keys += len(docs)
            out["select_back"] = {"seconds": t_select, "rows_per_s": keys / t_select}
            out["warm_put_many"] = {"seconds": t_put, "keys_per_s": keys / t_put, "keys": keys}
            out["warm_pipeline_set"] = {"seconds": t_pipe, "keys_per_s": keys / t_pipe}
            # leave nothing behind
            for pattern in (f"{prefix}warm:*", f"{prefix}raw:*"):
                doomed: list[bytes] = []
                async for key in redis.scan_iter(match=pattern, count=5000):
                    doomed.append(key)
                    if len(doomed) >= 5000:
                        await redis.unlink(*doomed)
                        doomed.clear()
                if doomed:
                    await redis.unlink(*doomed)
            await redis.aclose()
            await cur.execute("TRUNCATE TABLE customers")
    finally:
        await close_pool(pool)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parse")
    p.add_argument("reader", choices=["openpyxl", "calamine", "csv", "reader", "service"])
    p.add_argument("path", type=Path)
    p.add_argument("--budget-mb", type=int, default=768)
    p.add_argument("--batch", type=int, default=2000)
    i = sub.add_parser("insert")
    i.add_argument("csv", type=Path)
    i.add_argument("--dsn", required=True)
    i.add_argument("--redis", required=True)
    i.add_argument("--prefix", required=True)
    i.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.cmd == "parse":
        result = parse(args.reader, args.path, args.budget_mb, args.batch)
    else:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        result = asyncio.run(insert(args.dsn, args.redis, args.prefix, args.batch, args.csv))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

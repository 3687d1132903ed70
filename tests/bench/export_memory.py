"""GET /customers/export against a real `python -m gateway`: rows/s and the gateway's memory.

    .venv/bin/python -m tests.bench.export_memory --rows 1000000

Fills a database of its own (the import's bulk path, 5,000 rows a transaction), starts a gateway on
it, downloads the export in each format (read and thrown away as it comes) while sampling the
gateway's resident memory (VmRSS every 50 ms, and VmHWM after resetting it), and prints a table. For
comparison it measures what the rows would take held at once: one page of PAGE_ROWS as the export
reads them (tracemalloc, in this process), scaled to all rows. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from pathlib import Path

from shared.config import Settings
from shared.customers import customer_repo, exports
from shared.infra.db import close_pool, connection, open_database, transaction
from tests.bench.common import bench_settings, clear_redis, drop_database, table
from tests.bench.procstat import RssSampler, cpu_seconds, status_kb
from tests.support.procs import Service, free_port, service_env, wait_http_ready


def _rows(start: int, stop: int) -> list[tuple[str, ...]]:
    return [
        (
            f"First{i}",
            f"Last{i}",
            f"Company {i % 97}",
            f"{i} High Street",
            "London",
            "Greater London",
            f"SW{i % 20} {i % 9}AA",
            f"+44 20 7946 {i % 10000:04d}",
            f"user{i}@example.com",
            f"https://example.com/{i}",
        )
        for i in range(start, stop)
    ]


async def fill(settings: Settings, count: int) -> tuple[float, float]:
    """Insert `count` customers; returns (seconds, bytes one page of rows takes held in memory)."""
    pool = await open_database(settings.mysql, 2)
    try:
        started = time.perf_counter()
        for start in range(0, count, 5000):
            async with transaction(pool) as cur:
                await customer_repo.bulk_upsert(cur, _rows(start, min(start + 5000, count)))
        elapsed = time.perf_counter() - started
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        async with connection(pool) as conn, conn.cursor() as cur:
            page = await customer_repo.export_page(cur, after_id=0, limit=exports.PAGE_ROWS, search=None)
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        per_row = held / max(len(page), 1)
        del page
    finally:
        await close_pool(pool)
    return elapsed, per_row


def download(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    size = 0
    with urllib.request.urlopen(url, timeout=600) as response:
        assert response.status == 200, response.status
        while chunk := response.read(1 << 16):
            size += len(chunk)
    return size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default="csv,xlsx")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    settings = bench_settings(f"bench_export_{run}", f"bench:{run}:")
    port = free_port()
    gateway: Service | None = None
    try:
        inserted_s, per_row = asyncio.run(fill(settings, args.rows))
        print(f"{args.rows:,} rows inserted in {inserted_s:.1f} s; held as the export reads them: {per_row:.0f} B/row")
        log_dir = Path(tempfile.mkdtemp(prefix="bench-export-"))
        gateway = Service("gateway", service_env(settings, PORT=port, LOG_LEVEL="WARNING"), log_dir, "gateway")
        base = f"http://127.0.0.1:{port}"
        wait_http_ready(base, gateway)
        pid = gateway.proc.pid
        results = []
        for fmt in args.formats.split(","):
            idle_mb = (status_kb(pid, "VmRSS") or 0) / 1024
            sampler = RssSampler(pid)
            cpu_before = cpu_seconds(pid) or 0.0
            sampler.start()
            size, elapsed = download(f"{base}/customers/export?format={fmt}")
            sampler.stop()
            cpu = (cpu_seconds(pid) or 0.0) - cpu_before
            results.append(
                [
                    fmt,
                    f"{size / 1e6:.1f} MB",
                    f"{elapsed:.1f} s",
                    f"{args.rows / elapsed:,.0f}",
                    f"{cpu / args.rows * 1e6:.1f}",
                    f"{idle_mb:.0f} MB",
                    f"{sampler.peak_mb:.0f} MB",
                    f"{sampler.peak_mb - idle_mb:+.0f} MB",
                ]
            )
        print(
            table(
                ["format", "size", "time", "rows/s", "gateway CPU µs/row", "RSS before", "peak RSS", "growth"],
                results,
            )
        )
        print(f"all {args.rows:,} rows held at once would take ~{per_row * args.rows / 1e6:,.0f} MB")
    finally:
        if gateway is not None:
            gateway.stop()
        drop_database(settings)
        clear_redis(settings)


if __name__ == "__main__":
    main()

"""What customer history costs an import (issue 19): the same files imported with IMPORT_HISTORY=true and
=false, side by side in one run, through one real gateway and ONE real worker process each.

    .venv/bin/python -m tests.bench.history_bench [--rows 1000000] [--repeat 1]

Per repeat and setting (interleaved: off, on, off, on ...), on an emptied database: the datagen CSV of
--rows customers (every row inserted: a `created` history row each), then the same customers with every
city changed (every row updated: an `updated` row each holding the one field's old and new value),
then the changed file once more (every row unchanged: no history at all). Reported: rows/s (median),
the ratio on/off (issue 19's target: on >= 0.8 x off), CPU microseconds per row of the worker (with
its parser processes) and mysqld, and the bytes customer_history takes on disk per row it holds
(InnoDB data + indexes after ANALYZE TABLE). Exit 1 when a target is missed or a counter is off.

Files are generated once into $BENCH_CACHE (tests.bench.datagen); database bench_history, Redis prefix
bench:history:, dropped/cleared at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
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
    table,
)
from tests.bench.import_bench import run_import
from tests.bench.procstat import find_pids, listening_pids
from tests.support.procs import Service, free_port, service_env, wait_http_ready

TARGET_RATIO = 0.8  # rows/s with history >= 80 % of the figure without it (issue 19 "Cost")
CASES = ("new", "updated", "unchanged")
CITY = datagen.COLUMNS.index("city")


def changed_file(rows: int) -> Path:
    """The datagen customers with every city changed (cached next to the datagen files)."""
    path = datagen.cache_dir() / f"customers-v{datagen.GEN_VERSION}-{rows}-csv-moved.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(datagen.COLUMNS)
            for row in datagen.customer_rows(rows):
                writer.writerow([*row[:CITY], "Moved " + row[CITY], *row[CITY + 1 :]])
        tmp.replace(path)
    return path


def history_size(settings: Any) -> tuple[int, int]:
    """(rows, bytes on disk: data + indexes) of customer_history."""
    conn = mysql_conn(settings)
    with conn.cursor() as cur:
        cur.execute("ANALYZE TABLE customer_history")
        cur.fetchall()
        cur.execute("SELECT COUNT(*) FROM customer_history")
        (count,) = cur.fetchone()
        cur.execute(
            "SELECT data_length + index_length FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_name = 'customer_history'"
        )
        (size,) = cur.fetchone()
    conn.close()
    return int(count), int(size)


def one_setting(history: bool, rows: int, files: dict[str, Path], log_dir: Path, args: Any) -> dict[str, Any]:
    settings = bench_settings(args.database, args.prefix)
    drop_database(settings)
    clear_redis(settings)
    port = free_port()
    env = service_env(settings, PORT=port, FANOUT_PARTS=1, IMPORT_HISTORY=str(history).lower())
    label = "on" if history else "off"
    gateway = Service("gateway", env, log_dir, f"gateway-{label}")
    worker: Service | None = None
    try:
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)
        worker = Service("worker", env, log_dir, f"worker-{label}")
        time.sleep(2.0)
        pids = {
            "gateway": [gateway.proc.pid],
            "mysqld": find_pids("mariadbd", "mysqld"),
            "redis": listening_pids(find_pids("redis-server"), urlsplit(settings.redis_url).port or 6379),
        }
        result: dict[str, Any] = {"history": history}
        before = (0, 0)
        for case in CASES:
            run = run_import(port, files[case], rows, worker, pids, settings, case)
            counters = run["counters"]
            wanted = {"new": "rows_inserted", "updated": "rows_updated", "unchanged": "rows_unchanged"}[case]
            run["counters_ok"] = counters[wanted] == rows == counters["rows_read"]
            after = history_size(settings)
            run["history_rows"] = after[0] - before[0]
            run["history_bytes"] = after[1] - before[1]
            before = after
            result[case] = run
            print(
                f"  history {label} {case}: {run['rows_per_s']:,.0f} rows/s, {run['history_rows']:,} history rows,"
                f" {run['history_bytes'] / 1e6:,.1f} MB",
                flush=True,
            )
        return result
    finally:
        if worker is not None:
            worker.stop()
        gateway.stop()


def _us_per_row(runs: list[dict[str, Any]], process: str, rows: int) -> float:
    return median([r["cpu_s"].get(process, 0.0) for r in runs]) * 1e6 / rows


def report(results: list[dict[str, Any]], rows: int) -> tuple[str, bool]:
    body = []
    ok = True
    for case in CASES:
        off = [r[case] for r in results if not r["history"]]
        on = [r[case] for r in results if r["history"]]
        speed_off, speed_on = median([r["rows_per_s"] for r in off]), median([r["rows_per_s"] for r in on])
        ratio = speed_on / speed_off
        bytes_row = median([r["history_bytes"] / max(r["history_rows"], 1) for r in on])
        history_rows = median([r["history_rows"] for r in on])
        met = ratio >= TARGET_RATIO and all(r["counters_ok"] for r in off + on)
        if case == "unchanged":
            met = met and history_rows == 0
        ok = ok and met
        body.append(
            [
                f"{rows:,} {case}",
                fmt_int(speed_off),
                fmt_int(speed_on),
                fmt_ratio(ratio),
                " / ".join(f"{_us_per_row(off, p, rows):.1f}" for p in ("worker", "mysqld"))
                + " → "
                + " / ".join(f"{_us_per_row(on, p, rows):.1f}" for p in ("worker", "mysqld")),
                fmt_int(history_rows),
                "-" if not history_rows else f"{bytes_row:,.0f}",
                "yes" if met else "NO",
            ]
        )
    headers = [
        "import",
        "off rows/s",
        "on rows/s",
        "on ÷ off",
        "worker / mysqld CPU µs/row off → on",
        "history rows",
        "bytes/history row",
        f"≥ {TARGET_RATIO:.0%}",
    ]
    return table(headers, body), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--database", default="bench_history")
    parser.add_argument("--prefix", default="bench:history:")
    args = parser.parse_args(argv)
    rows = args.rows
    moved = changed_file(rows)
    files = {"new": datagen.generate(rows, "csv"), "updated": moved, "unchanged": moved}
    log_dir = Path(tempfile.mkdtemp(prefix="bench-history-logs-"))
    print(f"measuring code at {code_version()}: {rows:,} rows, history off and on, {args.repeat} time(s)", flush=True)
    results = []
    try:
        for _ in range(args.repeat):
            for history in (False, True):
                results.append(one_setting(history, rows, files, log_dir, args))
    finally:
        drop_database(bench_settings(args.database, args.prefix))
        clear_redis(bench_settings(args.database, args.prefix))
    text, ok = report(results, rows)
    print("\n" + text)
    out = results_path("history")
    out.write_text(json.dumps({"code": code_version(), "rows": rows, "runs": results}, indent=1, default=str))
    print(f"\nevery run: {out}; logs: {log_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

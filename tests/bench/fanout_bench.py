"""Fan-out benchmark (issue 14): ONE big CSV imported by 1, 2 and 4 real worker processes.

    .venv/bin/python -m tests.bench.fanout_bench [--workers 1,2,4] [--rows 1000000] [--repeat 1] [--keep]

One real gateway and N real `python -m worker` processes (WORKER_CONCURRENCY=1 each) against the
shared MariaDB/MySQL and Redis, on a database and Redis prefix of their own (bench_fanout /
bench:fanout:, dropped/cleared at the end). With 1 worker the file is imported in one piece (the
baseline: FANOUT_PARTS=1); with N > 1 it is split into N parts (FANOUT_PARTS=N, FANOUT_MIN_ROWS below
the file's rows), one per worker. Each run starts on an empty `customers` table, so every row is new.

Prints per worker count: wall time from the upload to `completed`, rows/s, the ratio to 1 worker in
the same run (medians of --repeat), each part's rows and worker, CPU % of the workers (process trees,
parsers included), mysqld, redis-server and the gateway meanwhile, and the checks: the job completed
with exact counters, the parts' rows add up to the file's, every part on a different worker.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.bench.common import (
    bench_settings,
    clear_redis,
    code_version,
    drop_database,
    fmt_int,
    fmt_ratio,
    median,
    results_path,
    table,
)
from tests.bench.import_bench import Poller, reset_tables, upload_stream
from tests.bench.procstat import Window, find_pids, listening_pids
from tests.bench.scale_bench import make_files
from tests.support.procs import REPO, Service, free_port, service_env, wait_http_ready

COUNTERS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_invalid")


def run_once(n_workers: int, path: Path, rows: int, settings: Any, log_dir: Path, tag: str) -> dict[str, Any]:
    port = free_port()
    env = service_env(
        settings,
        PORT=port,
        RATE_LIMIT_PER_MIN=0,
        UPLOAD_RATE_LIMIT_PER_MIN=0,
        WORKER_CONCURRENCY=1,
        FANOUT_PARTS=n_workers,
        FANOUT_MIN_ROWS=max(rows // 2, 1),
    )
    gateway = Service("gateway", env, log_dir, f"gateway-{tag}")
    workers: list[Service] = []
    try:
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)  # it creates the database on its first start
        reset_tables(settings)
        clear_redis(settings)
        workers = [Service("worker", env, log_dir, f"worker-{tag}-{i}") for i in range(n_workers)]
        time.sleep(2.0)
        for worker in workers:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"{worker.name} exited:\n{worker.output()[-3000:]}")
        window = Window(
            {
                "gateway": [gateway.proc.pid],
                "mysqld": find_pids("mariadbd", "mysqld"),
                "redis": listening_pids(find_pids("redis-server"), urlsplit(settings.redis_url).port or 6379),
            },
            trees={w.name: w.proc.pid for w in workers},
        )
        window.start()
        started = time.perf_counter()
        job_id = upload_stream(port, path)["job_id"]
        poller = Poller(port)
        deadline = started + 120 + rows / 1000
        while (doc := poller.job(job_id))["status"] not in ("completed", "failed"):
            for worker in workers:
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"{worker.name} died:\n{worker.output()[-3000:]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"job {job_id} not done: {doc}")
            time.sleep(0.2)
        wall = time.perf_counter() - started
        window.stop()
        poller.close()
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()
    problems = []
    counters = {k: doc[k] for k in COUNTERS}
    want = {"rows_read": rows, "rows_inserted": rows, "rows_updated": 0, "rows_unchanged": 0, "rows_invalid": 0}
    if doc["status"] != "completed" or counters != want:
        problems.append(f"{doc['status']} {counters} {doc.get('error')}")
    parts = doc.get("parts") or []
    if n_workers > 1:
        if len(parts) != n_workers or sum(p["rows"] for p in parts) != rows:
            problems.append(f"parts {parts}")
        if len({p["worker"] for p in parts}) != n_workers:
            problems.append(f"parts on {sorted(p['worker'] for p in parts)}")
    elif parts:
        problems.append(f"split with one worker: {parts}")
    return {
        "workers": n_workers,
        "rows": rows,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "parts": [(p["rows"], p["worker"]) for p in parts],
        "problems": problems,
        "cpu_s": {"workers": sum(window.cpu.get(w.name, 0.0) for w in workers)}
        | {k: window.cpu[k] for k in ("mysqld", "redis", "gateway")},
        "other_cpu_s": window.others(),
    }


def report(results: dict[int, list[dict[str, Any]]]) -> str:
    base = median([r["rows_per_s"] for r in results.get(1, [])]) if results.get(1) else None
    body = []
    for n, runs in results.items():
        rate = median([r["rows_per_s"] for r in runs])
        last = runs[-1]
        wall = last["wall_s"]
        cpu = last["cpu_s"]
        body.append(
            [
                n,
                " / ".join(f"{r['wall_s']:.1f}" for r in runs),
                fmt_int(rate),
                fmt_ratio(rate / base) if base else "-",
                " ".join(fmt_int(rows) for rows, _ in last["parts"]) or "one piece",
                " / ".join(f"{100 * cpu[k] / wall:.0f}" for k in ("workers", "mysqld", "redis", "gateway")),
                f"{100 * last['other_cpu_s'] / wall:.0f}",
                "ok" if not any(r["problems"] for r in runs) else "; ".join(p for r in runs for p in r["problems"]),
            ]
        )
    return table(
        [
            "workers",
            "wall s (each run)",
            "rows/s (median)",
            "vs 1 worker",
            "rows per part",
            "CPU % workers / mysqld / redis / gateway",
            "other CPU %",
            "checks",
        ],
        body,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts (start with 1)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--database", default="bench_fanout")
    parser.add_argument("--prefix", default="bench:fanout:")
    parser.add_argument("--keep", action="store_true", help="keep the database, Redis keys and logs at the end")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",") if x]
    (path,) = make_files(1, args.rows)
    version = code_version()
    print(f"measuring code at {version} ({REPO}): one CSV of {args.rows:,} rows, workers {counts}")
    settings = bench_settings(args.database, args.prefix)
    drop_database(settings)
    clear_redis(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fanout-logs-"))
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    try:
        for round_ in range(args.repeat):
            for n in counts:  # interleaved, so every count shares the machine's load alike
                result = run_once(n, path, args.rows, settings, log_dir, f"n{n}-r{round_}")
                results[n].append(result)
                print(
                    f"  {n} worker(s), run {round_ + 1}: {result['wall_s']:.1f} s, {fmt_int(result['rows_per_s'])}"
                    f" rows/s, parts {[rows for rows, _ in result['parts']]}, problems {result['problems'] or 'none'}"
                )
    finally:
        if not args.keep:
            drop_database(settings)
            clear_redis(settings)
    print(f"\n== one CSV of {args.rows:,} rows, per worker count (one part per worker) ==")
    print(report(results))
    out = results_path("fanout")
    out.write_text(json.dumps({"version": version, "results": results}, indent=2))
    print(f"\nlogs in {log_dir}; figures saved to {out}")
    return 1 if any(r["problems"] for runs in results.values() for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())

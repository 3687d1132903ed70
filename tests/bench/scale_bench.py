"""Scaling benchmark (issue 12): the same 8 imports through 1, 2 and 4 real worker processes.

    .venv/bin/python -m tests.bench.scale_bench [--workers 1,2,4] [--files 8] [--rows 50000] [--keep]

One real gateway and N real `python -m worker` processes against the shared MariaDB/MySQL and Redis,
on a database and Redis prefix of their own (bench_scale / bench:scale:, dropped/cleared at the end).
Per worker count, on an empty `customers` table: all files are uploaded at once (one thread each),
then every job is polled until `completed`. Each file is a CSV of datagen's customers whose emails
carry a per-file prefix, so every row of every file is new: rows_read == rows_inserted == --rows.

Prints per worker count: total rows/s (all rows ÷ wall time from the first upload to the last
completion), per-job duration_s (min/median/max), which worker ran which job (the worker's JSON log
line "import started" carries job_id; each worker logs to a file of its own), CPU of the workers
(process trees), mysqld, redis-server and the gateway meanwhile, and the checks: every job completed
with exact counters, attempts == 1 and exactly one worker logged "import started" for it. The ratio
of every count's rows/s to 1 worker's is from the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import threading
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
    results_path,
    table,
)
from tests.bench.import_bench import Poller, reset_tables, upload_stream
from tests.bench.procstat import Window, find_pids, listening_pids
from tests.support.procs import REPO, Service, free_port, service_env, wait_http_ready


def make_files(count: int, rows: int) -> list[Path]:
    """`count` CSVs of `rows` datagen customers, emails prefixed per file (cached in $BENCH_CACHE)."""
    folder = datagen.cache_dir() / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"scale-v{datagen.GEN_VERSION}-{rows}-f{k}.csv"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(datagen.COLUMNS)
                for values in datagen.customer_rows(rows):
                    writer.writerow((*values[:8], f"f{k}x{values[8]}", values[9]))
            tmp.replace(path)
        paths.append(path)
    return paths


def job_owners(workers: list[Service]) -> dict[str, list[str]]:
    """job_id → the workers (by name) whose log says "import started" for it."""
    owners: dict[str, list[str]] = {}
    for worker in workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if '"import started"' not in line:
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("job_id"):
                owners.setdefault(doc["job_id"], []).append(worker.name)
    return owners


def run_count(
    n_workers: int, files: list[Path], rows: int, settings: Any, port: int, gateway: Service, log_dir: Path
) -> dict[str, Any]:
    reset_tables(settings)
    clear_redis(settings)
    env = service_env(settings, PORT=port, RATE_LIMIT_PER_MIN=0, UPLOAD_RATE_LIMIT_PER_MIN=0)
    workers = [Service("worker", env, log_dir, f"worker-n{n_workers}-{i}") for i in range(n_workers)]
    try:
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
        accepted: dict[int, str] = {}
        failures: list[BaseException] = []

        def send(k: int, path: Path) -> None:
            try:
                accepted[k] = upload_stream(port, path)["job_id"]
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=send, args=(k, p)) for k, p in enumerate(files)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise RuntimeError(f"uploads failed: {failures}")
        uploaded_s = time.perf_counter() - started
        poller = Poller(port)
        docs: dict[str, dict[str, Any]] = {}
        deadline = started + 120 + len(files) * rows / 1000
        while len(docs) < len(files):
            for job_id in accepted.values():
                if job_id in docs:
                    continue
                doc = poller.job(job_id)
                if doc.get("status") in ("completed", "failed"):
                    docs[job_id] = doc
            for worker in workers:
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"{worker.name} died:\n{worker.output()[-3000:]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"{len(files) - len(docs)} jobs not done: {sorted(set(accepted.values()) - set(docs))}"
                )
            time.sleep(0.1)
        wall = time.perf_counter() - started
        window.stop()
        poller.close()
    finally:
        for worker in workers:
            worker.stop()
    owners = job_owners(workers)
    problems = []
    for job_id, doc in docs.items():
        counters = {k: doc[k] for k in ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_invalid")}
        want = {"rows_read": rows, "rows_inserted": rows, "rows_updated": 0, "rows_unchanged": 0, "rows_invalid": 0}
        if doc["status"] != "completed" or counters != want:
            problems.append(f"{job_id}: {doc['status']} {counters} {doc.get('error')}")
        if doc.get("attempts") != 1:
            problems.append(f"{job_id}: attempts {doc.get('attempts')}")
        if len(owners.get(job_id, [])) != 1:
            problems.append(f"{job_id}: started by {owners.get(job_id)}")
    spread: dict[str, int] = {w.name: 0 for w in workers}
    for names in owners.values():
        for name in names:
            spread[name] += 1
    worker_cpu = sum(window.cpu.get(w.name, 0.0) for w in workers)
    durations = [float(d["duration_s"]) for d in docs.values() if d.get("duration_s") is not None]
    return {
        "workers": n_workers,
        "files": len(files),
        "rows": rows,
        "wall_s": wall,
        "upload_s": uploaded_s,
        "rows_per_s": len(files) * rows / wall,
        "job_s": durations,
        "spread": spread,
        "problems": problems,
        "cpu_s": {"workers": worker_cpu, **{k: window.cpu[k] for k in ("mysqld", "redis", "gateway")}},
        "other_cpu_s": window.others(),
        "system_cores": window.system_cores,
        "top_other_cpu_s": window.top_others,
    }


def report(results: list[dict[str, Any]]) -> str:
    base = results[0]["rows_per_s"] if results and results[0]["workers"] == 1 else None
    body = []
    for r in results:
        jobs = r["job_s"]
        cpu = r["cpu_s"]
        wall = r["wall_s"]
        body.append(
            [
                r["workers"],
                f"{wall:.1f}",
                fmt_int(r["rows_per_s"]),
                fmt_ratio(r["rows_per_s"] / base) if base else "-",
                f"{min(jobs):.1f} / {median(jobs):.1f} / {max(jobs):.1f}" if jobs else "-",
                " ".join(str(v) for v in r["spread"].values()),
                " / ".join(f"{100 * cpu[k] / wall:.0f}" for k in ("workers", "mysqld", "redis", "gateway")),
                f"{100 * r['other_cpu_s'] / wall:.0f}",
                "ok" if not r["problems"] else f"{len(r['problems'])} problems",
            ]
        )
    return table(
        [
            "workers",
            "wall s",
            "rows/s",
            "vs 1 worker",
            "job s min/med/max",
            "jobs per worker",
            "CPU % workers / mysqld / redis / gateway",
            "other CPU %",
            "checks",
        ],
        body,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts (start with 1)")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--database", default="bench_scale")
    parser.add_argument("--prefix", default="bench:scale:")
    parser.add_argument("--keep", action="store_true", help="keep the database, Redis keys and logs at the end")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",") if x]
    files = make_files(args.files, args.rows)
    version = code_version()
    print(f"measuring code at {version} ({REPO}): {args.files} files × {args.rows:,} rows, workers {counts}")
    settings = bench_settings(args.database, args.prefix)
    drop_database(settings)
    clear_redis(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-scale-logs-"))
    port = free_port()
    gateway = Service(
        "gateway",
        service_env(settings, PORT=port, RATE_LIMIT_PER_MIN=0, UPLOAD_RATE_LIMIT_PER_MIN=0),
        log_dir,
        "gateway",
    )
    results: list[dict[str, Any]] = []
    try:
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)
        for n in counts:
            result = run_count(n, files, args.rows, settings, port, gateway, log_dir)
            results.append(result)
            print(
                f"  {n} worker(s): {result['wall_s']:.1f} s, {fmt_int(result['rows_per_s'])} rows/s,"
                f" spread {result['spread']}, problems {result['problems'] or 'none'}"
            )
    finally:
        gateway.stop()
        if not args.keep:
            drop_database(settings)
            clear_redis(settings)
    print(
        f"\n== {args.files} × {args.rows:,} rows at once, per worker count (concurrency per worker: "
        f"{settings.worker_concurrency}) =="
    )
    print(report(results))
    out = results_path("scale")
    out.write_text(json.dumps({"version": version, "results": results}, indent=2))
    print(f"\nlogs in {log_dir}; figures saved to {out}")
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Import benchmark: upload → `completed` through one real gateway and ONE real worker process.

    .venv/bin/python -m tests.bench.import_bench [--rows 100000,1000000] [--repeat 3]
        [--kinds inline,shared,csv] [--baseline-repeat N] [--no-baselines] [--keep]

For each size and kind (xlsx with inline strings, xlsx with shared strings, csv; generated once by
tests.bench.datagen into $BENCH_CACHE), on an empty table: upload, poll the job every 50 ms until it
is completed, and record the wall time upload→completed, rows/s, the worker's peak RSS (VmRSS sampled
every 50 ms from /proc, and VmHWM after resetting it through /proc/PID/clear_refs) and the CPU
seconds the worker, the gateway, mysqld and redis-server used meanwhile. Then the same file again
(every row an update). In the same run, the baselines, each in a process of its own
(tests.bench.baselines): parse-only figures of openpyxl read-only, python-calamine and the csv module,
the service's own parser (reader + validation, no database), insert-only figures of aiomysql
executemany of the service's upsert statement in batches of the service's batch size, and the cache
warm-up rate of CustomerCache.put_many. Figures are medians over --repeat runs; a JSON file with
every run lands in $BENCH_CACHE/results/.

Uses its own database (bench_import) and Redis prefix (bench:import:), dropped/cleared at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis as sync_redis

from tests.bench import datagen, profile
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
from tests.bench.procstat import RssSampler, Window, find_pids
from tests.support.procs import REPO, Service, free_port, service_env, wait_http_ready

TARGET_ROWS_S = {"inline": 50_000, "shared": 50_000, "csv": 80_000}
TARGET_REIMPORT = 25_000
TARGET_WARM = 200_000


def rss_limit_mb(rows: int) -> float:
    return 300.0 if rows <= 100_000 else 1024.0


# -- HTTP ----------------------------------------------------------------------------------------


def upload_stream(port: int, path: Path) -> dict[str, Any]:
    """POST /upload, streaming the file from disk (the client never holds it in memory)."""
    boundary = "----bench" + uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.putrequest("POST", "/upload")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    conn.endheaders()
    conn.send(head)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            conn.send(chunk)
    conn.send(tail)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 202:
        raise RuntimeError(f"upload of {path.name} answered {response.status}: {body[:500]!r}")
    return json.loads(body)


class Poller:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def job(self, job_id: str) -> dict[str, Any]:
        self.conn.request("GET", f"/jobs/{job_id}")
        response = self.conn.getresponse()
        return json.loads(response.read())

    def close(self) -> None:
        self.conn.close()


# -- one import ------------------------------------------------------------------------------------


def reset_tables(settings: Any) -> None:
    conn = mysql_conn(settings)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE customers")
        cur.execute("DELETE FROM import_errors")
        cur.execute("DELETE FROM import_jobs")
    conn.close()
    clear_redis(settings, ("customer:*", "tomb:*", "customers:*"))


def cache_check(settings: Any, rows: int, samples: int = 200) -> tuple[int, int]:
    """How many of `samples` rows spread over the file are readable from Redis right now."""
    step = max(rows // samples, 1)
    indexes = list(range(0, rows, step))[:samples]
    wanted = {}
    for i, values in enumerate(datagen.customer_rows(rows)):
        if i in indexes:
            wanted[values[8]] = i
    conn = mysql_conn(settings)
    with conn.cursor() as cur:
        marks = ", ".join(["%s"] * len(wanted))
        cur.execute(f"SELECT id FROM customers WHERE email IN ({marks})", list(wanted))
        ids = [r[0] for r in cur.fetchall()]
    conn.close()
    client = sync_redis.Redis.from_url(settings.redis_url)
    pipe = client.pipeline(transaction=False)
    for customer_id in ids:
        pipe.exists(f"{settings.redis_prefix}{{customer:{customer_id}}}")
    hits = sum(int(x) for x in pipe.execute())
    client.close()
    return hits, len(wanted)


def run_import(
    port: int,
    path: Path,
    rows: int,
    worker: Service,
    pids: dict[str, list[int]],
    settings: Any,
    expect: str,
    profile_to: Path | None = None,
    py_spy: str | None = None,
) -> dict[str, Any]:
    worker_pid = worker.proc.pid
    spy = profile.start(py_spy, worker_pid, profile_to) if py_spy and profile_to else None
    sampler = RssSampler(worker_pid)
    window = Window(pids)
    poller = Poller(port)
    sampler.start()
    window.start()
    started = time.perf_counter()
    accepted = upload_stream(port, path)
    t_accepted = time.perf_counter() - started
    job_id = accepted["job_id"]
    deadline = started + 120 + rows / 500
    doc: dict[str, Any] = {}
    t_running = None
    while True:
        doc = poller.job(job_id)
        now = time.perf_counter()
        if t_running is None and doc.get("status") == "running":
            t_running = now - started
        if doc.get("status") in ("completed", "failed"):
            break
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker died:\n{worker.output()[-3000:]}")
        if now > deadline:
            raise TimeoutError(f"job {job_id} still {doc.get('status')} after {now - started:.0f}s: {doc}")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    window.stop()
    sampler.stop()
    if spy is not None:
        profile.stop(spy)
    poller.close()
    hits, sampled = cache_check(settings, rows)
    if doc["status"] != "completed":
        raise RuntimeError(f"job failed: {doc.get('error')}")
    counted = doc["rows_inserted"] if expect == "new" else doc["rows_updated"]
    counters = {k: doc[k] for k in ("rows_read", "rows_inserted", "rows_updated", "rows_invalid")}
    if doc["rows_read"] != rows or counted != rows or doc["rows_invalid"]:
        print(f"  WARNING: counters off: {json.dumps(counters)}")
    return {
        "kind": path.name,
        "expect": expect,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "upload_s": t_accepted,
        "queued_to_running_s": (t_running - t_accepted) if t_running else None,
        "reader": doc.get("reader"),
        "peak_rss_mb": sampler.peak_mb,
        "sampled_peak_rss_mb": sampler.sampled_peak_mb,
        "start_rss_mb": sampler.start_kb / 1024,
        "hwm_reset": sampler.hwm_reset,
        "cpu_s": window.cpu,
        "cpu_pct": {name: window.percent(name) for name in window.cpu},
        "other_cpu_pct": 100 * window.others() / max(window.wall, 1e-9),
        "top_other_cpu_s": window.top_others,
        "cache_hits_at_completion": [hits, sampled],
        "counters": counters,
    }


# -- baselines ---------------------------------------------------------------------------------------


def run_baselines(files: dict[str, Path], rows: int, settings: Any, repeat: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    budget = str(settings.reader_memory_budget_mb)
    batch = str(settings.import_batch_size)
    jobs: list[tuple[str, list[str]]] = []
    for kind, path in files.items():
        readers = ["csv", "service"] if kind == "csv" else ["openpyxl", "calamine", "reader", "service"]
        for reader in readers:
            args = ["parse", reader, str(path), "--budget-mb", budget, "--batch", batch]
            jobs.append((f"parse:{reader}:{kind}", args))
    if "csv" in files:
        jobs.append(
            (
                "insert",
                [
                    "insert",
                    str(files["csv"]),
                    "--dsn",
                    settings.mysql_dsn,
                    "--redis",
                    settings.redis_url,
                    "--prefix",
                    settings.redis_prefix + "baseline:",
                    "--batch",
                    batch,
                ],
            )
        )
    for r in range(repeat):
        for name, args in jobs:
            print(f"  baseline {name} ({rows:,} rows, run {r + 1}/{repeat}) ...", end="", flush=True)
            result = run_json(["-m", "tests.bench.baselines", *args])
            out.setdefault(name, []).append(result)
            if name == "insert":
                print(
                    f" executemany new {fmt_int(result['insert_new']['rows_per_s'])} rows/s, "
                    f"updates {fmt_int(result['insert_update']['rows_per_s'])} rows/s, "
                    f"bulk new {fmt_int(result.get('bulk_new', {}).get('rows_per_s'))} rows/s, "
                    f"updates {fmt_int(result.get('bulk_update', {}).get('rows_per_s'))} rows/s, "
                    f"put_many {fmt_int(result['warm_put_many']['keys_per_s'])} keys/s"
                )
            else:
                print(f" {fmt_int(result['rows_per_s'])} rows/s, peak RSS {result['peak_rss_mb']:.0f} MB")
    return out


# -- report -------------------------------------------------------------------------------------------


def _pct(group: list[dict[str, Any]], process: str) -> str:
    return f"{median([r['cpu_pct'].get(process, 0.0) for r in group]):.0f}%"


def _us_per_row(group: list[dict[str, Any]], process: str) -> str:
    return f"{median([1e6 * r['cpu_s'].get(process, 0.0) / r['rows'] for r in group]):.0f}"


def _insert_rows(group: list[dict[str, Any]]) -> list[list[str]]:
    def med(section: str, key: str = "rows_per_s") -> float:
        return median([g[section][key] for g in group if section in g])

    def cpu(section: str) -> str:
        per_row = [g[section].get("cpu_us_per_row", {}) for g in group if section in g]
        return "CPU µs/row " + ", ".join(
            f"{name} {median([p.get(name, 0.0) for p in per_row]):.0f}" for name in ("self", "mysqld", "redis")
        )

    warm = med("warm_put_many", "keys_per_s")
    rows = [
        [
            "aiomysql executemany upsert, new rows",
            "",
            fmt_int(med("insert_new")),
            "",
            f"batches of {group[0]['batch']}, one transaction each; {cpu('insert_new')}",
        ],
        [
            "aiomysql executemany upsert, all updates",
            "",
            fmt_int(med("insert_update")),
            "",
            f"vs 25k: {fmt_ratio(med('insert_update') / TARGET_REIMPORT)}; {cpu('insert_update')}",
        ],
    ]
    if any("bulk_new" in g for g in group):
        rows += [
            [
                "customer_repo.bulk_upsert (LOAD DATA LOCAL), new rows",
                "",
                fmt_int(med("bulk_new")),
                "",
                f"the service's write path, stamps read back; {cpu('bulk_new')}",
            ],
            [
                "customer_repo.bulk_upsert, all updates",
                "",
                fmt_int(med("bulk_update")),
                "",
                f"vs 25k: {fmt_ratio(med('bulk_update') / TARGET_REIMPORT)}; {cpu('bulk_update')}",
            ],
        ]
    rows += [
        [
            "select-back by email (customer_repo.by_emails)",
            "",
            fmt_int(med("select_back")),
            "",
            "full documents by email, as the pre-bulk worker did per batch",
        ],
        [
            "cache warm-up CustomerCache.put_many (keys/s)",
            "",
            fmt_int(warm),
            "",
            f"vs 200k target: {fmt_ratio(warm / TARGET_WARM)}",
        ],
        [
            "redis-py pipeline SET EX, same docs (keys/s)",
            "",
            fmt_int(med("warm_pipeline_set", "keys_per_s")),
            "",
            "plain pipeline, no version check",
        ],
    ]
    return rows  # fmt: skip


def report(
    sizes: list[int],
    kinds: list[str],
    runs: dict[tuple[int, str, str], list[dict[str, Any]]],
    baselines: dict[int, dict[str, list[dict[str, Any]]]],
    repeat: int,
    settings: Any,
) -> str:
    lines: list[str] = []
    lines.append(
        f"\n== Import, upload → completed, 1 gateway + 1 worker process (batch {settings.import_batch_size}, "
        f"reader budget {settings.reader_memory_budget_mb} MB); medians of {repeat} run(s) =="
    )
    head = [
        "rows",
        "file",
        "reader",
        "new rows/s",
        "vs target",
        "re-import rows/s",
        "vs 25k",
        "worker peak RSS MB",
        "vs limit",
        "vs parse-only reader",
        "vs service parse",
    ]
    body = []
    cpu_rows = []
    for n in sizes:
        base = baselines.get(n, {})
        for kind in kinds:
            new = runs.get((n, kind, "new"), [])
            upd = runs.get((n, kind, "update"), [])
            if not new:
                continue
            reader = new[0]["reader"] or "?"
            new_rate = median([r["rows_per_s"] for r in new])
            upd_rate = median([r["rows_per_s"] for r in upd]) if upd else float("nan")
            peak = max(r["peak_rss_mb"] for r in new + upd)
            limit = rss_limit_mb(n)
            parse_key = f"parse:{'csv' if kind == 'csv' else 'reader'}:{kind}"
            parse_rate = median([r["rows_per_s"] for r in base.get(parse_key, [])])
            service_rate = median([r["rows_per_s"] for r in base.get(f"parse:service:{kind}", [])])
            body.append(
                [
                    f"{n:,}",
                    kind,
                    reader,
                    fmt_int(new_rate),
                    fmt_ratio(new_rate / TARGET_ROWS_S[kind]),
                    fmt_int(upd_rate),
                    fmt_ratio(upd_rate / TARGET_REIMPORT),
                    f"{peak:,.0f}",
                    fmt_ratio(peak / limit) + (" OVER" if peak > limit else ""),
                    fmt_ratio(new_rate / parse_rate),
                    fmt_ratio(new_rate / service_rate),
                ]
            )
            for label, group in (("new", new), ("re-import", upd)):
                if not group:
                    continue
                cpu_rows.append(
                    [
                        f"{n:,}",
                        kind,
                        label,
                        f"{median([r['seconds'] for r in group]):.1f}",
                        f"{median([r['upload_s'] for r in group]):.2f}",
                        *(_pct(group, p) for p in ("worker", "mysqld", "redis", "gateway")),
                        " / ".join(_us_per_row(group, p) for p in ("worker", "mysqld", "redis")),
                        f"{median([r['other_cpu_pct'] for r in group]):.0f}%",
                        "/".join(str(x) for x in group[-1]["cache_hits_at_completion"]),
                    ]
                )
    lines.append(table(head, body))
    lines.append(
        "targets: xlsx 1M ≥ 50,000 rows/s, csv 1M ≥ 80,000 rows/s (applied to every size here), re-import ≥ 25,000 "
        "rows/s; worker peak RSS ≤ 300 MB (100k) / ≤ 1 GiB (1M). 'vs parse-only reader' = import rate ÷ the bare "
        "reader the job used; 'vs service parse' = ÷ the service's parser (reader+validation) with no database."
    )
    lines.append("\n== Where the CPU went during each import (CPU % of one core over the wall time; 2 cores = 200%) ==")
    lines.append(
        table(
            [
                "rows",
                "file",
                "run",
                "wall s",
                "upload s",
                "worker",
                "mysqld",
                "redis",
                "gateway",
                "CPU µs/row worker / mysqld / redis",
                "everything else",
                "cached at completion",
            ],
            cpu_rows,
        )
    )
    for n in sizes:
        base_n = baselines.get(n)
        if not base_n:
            continue
        base = base_n
        brows = []
        for key in sorted(k for k in base if k.startswith("parse:")):
            group = base[key]
            _, reader, kind = key.split(":")
            note = f"reader={group[0].get('reader')}" if reader in ("service", "reader") else ""
            brows.append(
                [
                    {
                        "service": "service parser (reader+validation, no DB)",
                        "reader": "service's reader, parse-only",
                    }.get(reader, f"{reader} parse-only"),
                    kind,
                    fmt_int(median([g["rows_per_s"] for g in group])),
                    f"{median([g['peak_rss_mb'] for g in group]):,.0f}",
                    note,
                ]
            )
        if "insert" in base:
            brows += _insert_rows(base["insert"])
        runs_n = len(next(iter(base.values())))
        lines.append(f"\n== Baselines, {n:,} rows, same run (each in its own process; medians of {runs_n}) ==")
        lines.append(table(["what", "file", "rows/s", "peak RSS MB", "note"], brows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000", help="comma-separated sizes, e.g. 100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", default="inline,shared,csv")
    parser.add_argument("--baseline-repeat", type=int, default=None, help="default: --repeat (1 for ≥1M rows)")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-reimport", action="store_true")
    parser.add_argument("--database", default="bench_import")
    parser.add_argument("--prefix", default="bench:import:")
    parser.add_argument("--keep", action="store_true", help="keep the database and logs at the end")
    parser.add_argument("--py-spy", help="path to py-spy: profile the worker during the first run of each file")
    args = parser.parse_args(argv)
    sizes = [int(x.replace("_", "")) for x in args.rows.split(",") if x]
    kinds = [k for k in args.kinds.split(",") if k]
    files = datagen.ensure(sizes, tuple(kinds))

    settings = bench_settings(args.database, args.prefix)
    drop_database(settings)
    clear_redis(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-import-logs-"))
    port = free_port()
    env = service_env(settings, PORT=port)
    gateway = Service("gateway", env, log_dir, "gateway")
    worker: Service | None = None
    runs: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    baselines: dict[int, dict[str, list[dict[str, Any]]]] = {}
    profiles: list[str] = []
    version = code_version()
    print(f"measuring code at {version} ({REPO})")
    try:
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)
        worker = Service("worker", env, log_dir, "worker")
        time.sleep(2.0)  # arq connects, migrations are done by the gateway already
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.output()}")
        pids = {
            "worker": [worker.proc.pid],
            "gateway": [gateway.proc.pid],
            "mysqld": find_pids("mariadbd", "mysqld"),
            "redis": find_pids("redis-server"),
        }
        print(
            f"gateway pid {gateway.proc.pid} on port {port}, worker pid {worker.proc.pid}, "
            f"mysqld {pids['mysqld']}, redis {pids['redis']}; logs in {log_dir}"
        )
        for n in sizes:
            for r in range(args.repeat):
                for kind in kinds:
                    path = files[(n, kind)]
                    reset_tables(settings)
                    for expect in ("new", "update"):
                        if expect == "update" and args.no_reimport:
                            continue
                        prof = log_dir / f"worker-{n}-{kind}-{expect}.txt" if args.py_spy and r == 0 else None
                        result = run_import(port, path, n, worker, pids, settings, expect, prof, args.py_spy)
                        if prof is not None and prof.exists():
                            profiles.append(profile.summarize(prof, 20))
                        runs.setdefault((n, kind, expect), []).append(result)
                        print(
                            f"{n:>9,} {kind:6} {expect:6} run {r + 1}/{args.repeat}: {result['seconds']:7.2f} s "
                            f"{fmt_int(result['rows_per_s']):>8} rows/s  reader={result['reader']}  "
                            f"peak RSS {result['peak_rss_mb']:.0f} MB (start {result['start_rss_mb']:.0f})  "
                            f"cpu worker {_pct([result], 'worker')} mysqld {_pct([result], 'mysqld')} "
                            f"redis {_pct([result], 'redis')} other {result['other_cpu_pct']:.0f}% "
                            f"{[(n, round(s, 1)) for n, s in result['top_other_cpu_s']]}  "
                            f"cached {result['cache_hits_at_completion'][0]}/{result['cache_hits_at_completion'][1]}",
                            flush=True,
                        )
            if not args.no_baselines:
                reset_tables(settings)
                repeat = args.baseline_repeat or (1 if n >= 1_000_000 else args.repeat)
                baselines[n] = run_baselines({k: files[(n, k)] for k in kinds}, n, settings, repeat)
    finally:
        if worker is not None:
            worker.stop()
        gateway.stop()
        if not args.keep:
            drop_database(settings)
            clear_redis(settings)
    text = f"code: {version}\n" + report(sizes, kinds, runs, baselines, args.repeat, settings)
    if profiles:
        text += "\n\n== py-spy, worker process, first run of each file ==\n" + "\n\n".join(profiles)
    print(text)
    out = results_path("import")
    out.write_text(
        json.dumps(
            {
                "sizes": sizes,
                "kinds": kinds,
                "repeat": args.repeat,
                "settings": {"batch": settings.import_batch_size, "budget_mb": settings.reader_memory_budget_mb},
                "runs": {f"{n}:{k}:{e}": v for (n, k, e), v in runs.items()},
                "baselines": {str(n): b for n, b in baselines.items()},
                "report": text,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nall runs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

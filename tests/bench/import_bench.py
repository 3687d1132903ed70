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
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from tests.bench.procstat import RssSampler, Window, find_pids, listening_pids
from tests.support.procs import REPO, Service, free_port, service_env, wait_http_ready

TARGET_ROWS_S = {"inline": 50_000, "shared": 50_000, "csv": 80_000}
TARGET_REIMPORT = 25_000
TARGET_WARM = 200_000
# Issue 13's targets, each against a figure of the same run.
TARGET_VS_CALAMINE = 0.35  # 1M xlsx import ÷ python-calamine parse-only
TARGET_REIMPORT_VS_CALAMINE = 0.6  # re-import of the unchanged file ÷ python-calamine parse-only
TARGET_PEAK_RSS_MB = 512.0  # worker and its parser processes, at 1M rows
TARGET_CPU_US_PER_ROW = 35.0  # worker (with its parser processes), mysqld and redis together


def rss_limit_mb(rows: int) -> float:
    return 300.0 if rows <= 100_000 else TARGET_PEAK_RSS_MB


def _parse_only(kind: str) -> str:
    """The bare parser a kind of file is compared with: python-calamine for xlsx, the csv module."""
    return "csv" if kind == "csv" else "calamine"


def _cpu_all(group: list[dict[str, Any]]) -> float:
    """CPU µs per row of the worker (with its parser processes), mysqld and redis together."""
    return median([1e6 * sum(r["cpu_s"].get(p, 0.0) for p in ("worker", "mysqld", "redis")) / r["rows"] for r in group])


def targets_report(
    sizes: list[int],
    kinds: list[str],
    runs: dict[tuple[int, str, str], list[dict[str, Any]]],
    baselines: dict[int, dict[str, list[dict[str, Any]]]],
) -> str:
    """Issue 13's table: each target's figure beside its baseline from this run."""
    body: list[list[str]] = []

    def rate(group: list[dict[str, Any]]) -> float:
        return median([r["rows_per_s"] for r in group])

    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    for n in sizes:
        base = baselines.get(n, {})
        for kind in kinds:
            new = runs.get((n, kind, "new"), [])
            again = runs.get((n, kind, "unchanged"), [])
            if not new:
                continue
            parse_key = f"parse:{_parse_only(kind)}:{kind}"
            parse_rate = median([r["rows_per_s"] for r in base.get(parse_key, [])]) if base.get(parse_key) else 0.0
            parse_label = f"{_parse_only(kind)} parse-only {fmt_int(parse_rate)}" if parse_rate else "(no baseline)"
            target = TARGET_ROWS_S[kind]
            figure = rate(new)
            ratio = figure / parse_rate if parse_rate else float("nan")
            goal = f"≥ {target:,}" + (f" and ≥ {TARGET_VS_CALAMINE}× parse-only" if kind != "csv" else "")
            ok = figure >= target and (kind == "csv" or not parse_rate or ratio >= TARGET_VS_CALAMINE)
            body.append(
                [f"{n:,} {kind}, upload → completed", fmt_int(figure), parse_label, fmt_ratio(ratio), goal, met(ok)]
            )
            if again:
                figure = rate(again)
                ratio = figure / parse_rate if parse_rate else float("nan")
                body.append(
                    [
                        f"{n:,} {kind}, re-import unchanged",
                        fmt_int(figure),
                        parse_label,
                        fmt_ratio(ratio),
                        f"≥ {TARGET_REIMPORT_VS_CALAMINE}× parse-only",
                        met(ratio >= TARGET_REIMPORT_VS_CALAMINE),
                    ]
                )
            peak = max(r["peak_rss_mb"] for r in new + again)
            body.append(
                [
                    f"{n:,} {kind}, worker peak RSS MB (+ parser processes)",
                    f"{peak:,.0f}",
                    f"start {median([r['start_rss_mb'] for r in new]):,.0f}",
                    "",
                    f"≤ {rss_limit_mb(n):,.0f}",
                    met(peak <= rss_limit_mb(n)),
                ]
            )
            for label, group in (("new", new), ("unchanged", again)):
                if group:
                    per = {
                        p: median([1e6 * r["cpu_s"].get(p, 0.0) / r["rows"] for r in group])
                        for p in ("worker", "mysqld", "redis")
                    }
                    body.append(
                        [
                            f"{n:,} {kind}, CPU µs/row all processes ({label})",
                            f"{_cpu_all(group):.1f}",
                            "worker+parser {worker:.1f} / mysqld {mysqld:.1f} / redis {redis:.1f}".format(**per),
                            "",
                            f"≤ {TARGET_CPU_US_PER_ROW:g}",
                            met(_cpu_all(group) <= TARGET_CPU_US_PER_ROW),
                        ]
                    )
    return table(["case", "figure", "baseline, same run", "ratio", "target", "met"], body)


class TreeService(Service):
    """Service started from another checkout of the project (--compare-tree): its own gateway/worker code."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path, name: str, tree: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=tree, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )


@dataclass
class Stack:
    """One gateway and one worker of one tree of the code, with their own database and Redis prefix."""

    label: str
    settings: Any
    port: int
    gateway: Service
    worker: Service | None = None
    pids: dict[str, list[int]] = field(default_factory=dict)


def start_stack(label: str, tree: Path | None, database: str, prefix: str, log_dir: Path) -> Stack:
    settings = bench_settings(database, prefix)
    drop_database(settings)
    clear_redis(settings)
    port = free_port()
    # One job in one piece on one worker: a big file is not split into parts (that is fanout_bench's).
    env = service_env(settings, PORT=port, FANOUT_PARTS=1)
    if tree is None:
        gateway: Service = Service("gateway", env, log_dir, f"gateway-{label}")
    else:
        gateway = TreeService("gateway", env, log_dir, f"gateway-{label}", tree)
    stack = Stack(label, settings, port, gateway)
    wait_http_ready(f"http://127.0.0.1:{port}", gateway)
    if tree is None:
        stack.worker = Service("worker", env, log_dir, f"worker-{label}")
    else:
        stack.worker = TreeService("worker", env, log_dir, f"worker-{label}", tree)
    time.sleep(2.0)  # arq connects, migrations are done by the gateway already
    if stack.worker.proc.poll() is not None:
        raise RuntimeError(f"worker exited:\n{stack.worker.output()}")
    stack.pids = {
        "worker": [stack.worker.proc.pid],
        "gateway": [gateway.proc.pid],
        "mysqld": find_pids("mariadbd", "mysqld"),
        "redis": listening_pids(find_pids("redis-server"), urlsplit(settings.redis_url).port or 6379),
    }
    return stack


def compare_report(
    runs: dict[tuple[int, str, str], list[dict[str, Any]]],
    compare: dict[tuple[int, str, str], list[dict[str, Any]]],
    tree: str,
) -> str:
    body = []
    for key, group in runs.items():
        other = compare.get(key)
        if not other:
            continue
        n, kind, expect = key
        mine, theirs = median([r["rows_per_s"] for r in group]), median([r["rows_per_s"] for r in other])
        body.append(
            [
                f"{n:,} {kind} {expect}",
                fmt_int(theirs),
                fmt_int(mine),
                fmt_ratio(mine / theirs),
                f"{_cpu_all(other):.1f} → {_cpu_all(group):.1f}",
                " / ".join(_us_per_row(other, p) for p in ("worker", "mysqld", "redis"))
                + " → "
                + " / ".join(_us_per_row(group, p) for p in ("worker", "mysqld", "redis")),
                f"{max(r['peak_rss_mb'] for r in other):,.0f} → {max(r['peak_rss_mb'] for r in group):,.0f}",
            ]
        )
    return f"\n\n== This tree beside {tree}, interleaved in the same run (medians) ==\n" + table(
        [
            "import",
            "compare rows/s",
            "this rows/s",
            "speed-up",
            "CPU µs/row all",
            "worker / mysqld / redis µs/row",
            "worker peak RSS MB",
        ],
        body,
    )


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
    clear_redis(settings, ("{customer:*", "{customers}*"))


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
    sampler = RssSampler(worker_pid, tree=True)
    window = Window({k: v for k, v in pids.items() if k != "worker"}, trees={"worker": worker_pid})
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
    counted = doc[{"new": "rows_inserted", "updated": "rows_updated"}.get(expect, "rows_unchanged")]
    counters = {k: doc[k] for k in ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_invalid")}
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
        "peak_pss_mb": sampler.peak_pss_mb,
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


def run_baselines(
    files: dict[str, Path], rows: int, settings: Any, repeat: int, skip: frozenset[str] = frozenset()
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    budget = str(settings.reader_memory_budget_mb)
    batch = str(settings.import_batch_size)
    jobs: list[tuple[str, list[str]]] = []
    for kind, path in files.items():
        readers = ["csv", "service"] if kind == "csv" else ["openpyxl", "calamine", "reader", "service"]
        for reader in readers:
            if reader in skip:
                continue
            args = ["parse", reader, str(path), "--budget-mb", budget, "--batch", batch]
            jobs.append((f"parse:{reader}:{kind}", args))
    if "csv" in files and "insert" not in skip:
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
        "re-import (unchanged) rows/s",
        "vs 0.6× calamine",
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
            upd = runs.get((n, kind, "unchanged"), [])
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
            calamine_rate = median([r["rows_per_s"] for r in base.get(f"parse:{_parse_only(kind)}:{kind}", [])])
            body.append(
                [
                    f"{n:,}",
                    kind,
                    reader,
                    fmt_int(new_rate),
                    fmt_ratio(new_rate / TARGET_ROWS_S[kind]),
                    fmt_int(upd_rate),
                    fmt_ratio(upd_rate / (TARGET_REIMPORT_VS_CALAMINE * calamine_rate)) if calamine_rate else "",
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
        "targets: xlsx ≥ 50,000 rows/s, csv ≥ 80,000 rows/s (applied to every size here), re-import of the unchanged "
        "file ≥ 0.6× python-calamine parse-only (csv: the csv module); worker peak RSS (with its parser processes) "
        "≤ 300 MB (100k) / ≤ 512 MB (1M). 'vs parse-only reader' = import rate ÷ the bare reader the job used; "
        "'vs service parse' = ÷ the service's parser (reader, validation, staging) with no database."
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
    parser.add_argument(
        "--compare-tree",
        help="another checkout of the project (e.g. `git worktree add --detach /tmp/before main`): its gateway and "
        "worker import the same files, interleaved with this tree's, in a database of their own",
    )
    parser.add_argument(
        "--skip-baselines",
        default="",
        help="comma-separated baselines not to run: openpyxl, calamine, reader, service, csv, insert",
    )
    parser.add_argument("--database", default="bench_import")
    parser.add_argument("--prefix", default="bench:import:")
    parser.add_argument("--keep", action="store_true", help="keep the database and logs at the end")
    parser.add_argument("--py-spy", help="path to py-spy: profile the worker during the first run of each file")
    args = parser.parse_args(argv)
    sizes = [int(x.replace("_", "")) for x in args.rows.split(",") if x]
    kinds = [k for k in args.kinds.split(",") if k]
    files = datagen.ensure(sizes, tuple(kinds))

    log_dir = Path(tempfile.mkdtemp(prefix="bench-import-logs-"))
    stacks: list[Stack] = []
    runs: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    compare: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    baselines: dict[int, dict[str, list[dict[str, Any]]]] = {}
    profiles: list[str] = []
    version = code_version()
    print(f"measuring code at {version} ({REPO})" + (f", beside {args.compare_tree}" if args.compare_tree else ""))
    try:
        stacks.append(start_stack("this", None, args.database, args.prefix, log_dir))
        if args.compare_tree:
            tree = Path(args.compare_tree).resolve()
            stacks.append(start_stack("compare", tree, args.database + "_cmp", args.prefix + "cmp:", log_dir))
        settings = stacks[0].settings
        for stack in stacks:
            assert stack.worker is not None
            print(
                f"{stack.label}: gateway pid {stack.gateway.proc.pid} on port {stack.port}, worker pid "
                f"{stack.worker.proc.pid}, mysqld {stack.pids['mysqld']}, redis {stack.pids['redis']}; "
                f"logs in {log_dir}"
            )
        for n in sizes:
            for r in range(args.repeat):
                for kind in kinds:
                    path = files[(n, kind)]
                    for stack in stacks:
                        assert stack.worker is not None
                        reset_tables(stack.settings)
                        for expect in ("new", "unchanged"):
                            if expect == "unchanged" and args.no_reimport:
                                continue
                            prof = None
                            if args.py_spy and r == 0 and stack.label == "this":
                                prof = log_dir / f"worker-{n}-{kind}-{expect}.txt"
                            result = run_import(
                                stack.port, path, n, stack.worker, stack.pids, stack.settings, expect, prof, args.py_spy
                            )
                            if prof is not None and prof.exists():
                                profiles.append(profile.summarize(prof, 20))
                            into = runs if stack.label == "this" else compare
                            into.setdefault((n, kind, expect), []).append(result)
                            print(
                                f"{stack.label:7} {n:>9,} {kind:6} {expect:9} run {r + 1}/{args.repeat}: "
                                f"{result['seconds']:7.2f} s {fmt_int(result['rows_per_s']):>8} rows/s  "
                                f"reader={result['reader']}  peak RSS {result['peak_rss_mb']:.0f} MB "
                                f"(start {result['start_rss_mb']:.0f})  cpu worker {_pct([result], 'worker')} "
                                f"mysqld {_pct([result], 'mysqld')} redis {_pct([result], 'redis')} "
                                f"other {result['other_cpu_pct']:.0f}% "
                                f"{[(n, round(s, 1)) for n, s in result['top_other_cpu_s']]}  "
                                "cached {}/{}".format(*result["cache_hits_at_completion"]),
                                flush=True,
                            )
            if not args.no_baselines:
                reset_tables(settings)
                repeat = args.baseline_repeat or (1 if n >= 1_000_000 else args.repeat)
                skip = frozenset(x for x in args.skip_baselines.split(",") if x)
                baselines[n] = run_baselines({k: files[(n, k)] for k in kinds}, n, settings, repeat, skip)
    finally:
        for stack in stacks:
            if stack.worker is not None:
                stack.worker.stop()
            stack.gateway.stop()
            if not args.keep:
                drop_database(stack.settings)
                clear_redis(stack.settings)
    text = f"code: {version}\n" + report(sizes, kinds, runs, baselines, args.repeat, settings)
    text += "\n\n== Issue 13 targets: each figure beside its baseline from this run (medians) ==\n"
    text += targets_report(sizes, kinds, runs, baselines)
    if compare:
        text += compare_report(runs, compare, args.compare_tree)
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
                "compare_tree": args.compare_tree,
                "compare_runs": {f"{n}:{k}:{e}": v for (n, k, e), v in compare.items()},
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

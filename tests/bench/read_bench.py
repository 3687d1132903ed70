"""Read benchmark: a load generator in a second process against a real gateway, beside baselines.

    .venv/bin/python -m tests.bench.read_bench [--customers 60000] [--hot 10000] [--duration 10]
        [--connections 64] [--threads 2] [--repeat 3] [--rate-limit N]

Needs `wrk` (Debian: `apt-get install -y wrk`). Creates the customers in its own database
(bench_read) and Redis prefix (bench:read:), warms the first --hot of them into Redis with the
service's CustomerCache.put_many, starts one real gateway process (`python -m gateway`, API key
auth on, so every request pays for auth, request id, metrics and problem middlewares), and one
bare aiohttp process (tests/bench/baseline_server.py). Then, for each scenario, `wrk -t2 -c64 -d10s`
with a Lua script (requests/s, p50/p99 from wrk; errors = socket errors + non-2xx/3xx answers):

* gateway `GET /customers/{id}` cached: random ids among the hot ones.
* gateway `GET /customers/{id}` miss: each request a different id whose key was deleted first
  (the miss share is checked from the gateway's /metrics counters).
* gateway `GET /customers?limit=50&cursor=…`: random pages among the first 200.
* gateway mix: 85% cached GET, 10% list pages, 5% `PATCH /customers/{id}` (a city change).
* baseline `GET /redis/{id}`: a bare aiohttp handler doing one redis-py asyncio GET of the same key.
* baseline `GET /const`: a bare aiohttp handler returning a constant.
* diagnostic: the cached GET against a second gateway process with LOG_LEVEL=WARNING (no access log).
* diagnostic, only when named in --scenarios: `cached-multiproc`, the cached GET against a gateway
  whose metrics are in prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, as run.sh).

Figures are medians over --repeat rounds (scenarios interleaved in each round); CPU % per process
over each run comes from /proc. Any error is printed and makes the command exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

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
    table,
)
from tests.bench.procstat import Window, find_pids
from tests.support.procs import Service, free_port, service_env, wait_http_ready

API_KEY = "bench-read-key"

LUA_COMMON = r"""
local thread_counter = 0
function setup(thread)
  thread:set("tid", thread_counter)
  thread_counter = thread_counter + 1
end
local hdrs = {["Authorization"] = "Bearer %(key)s"}
local patch_hdrs = {["Authorization"] = "Bearer %(key)s", ["Content-Type"] = "application/json"}
local hot_lo, hot_hi = %(hot_lo)d, %(hot_hi)d
local cold_lo, cold_hi = %(cold_lo)d, %(cold_hi)d
local nthreads = %(threads)d
local cursors = {%(cursors)s}
local i = 0
function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
end
local function cached_get()
  return wrk.format("GET", "%(path)s" .. math.random(hot_lo, hot_hi), hdrs)
end
local function list_page()
  local c = cursors[math.random(1, #cursors)]
  local q = "/customers?limit=50"
  if c ~= "" then q = q .. "&cursor=" .. c end
  return wrk.format("GET", q, hdrs)
end
local function patch()
  local body = '{"city":"Bench City ' .. math.random(1, 1000) .. '"}'
  return wrk.format("PATCH", "/customers/" .. math.random(hot_lo, hot_hi), patch_hdrs, body)
end
local function miss_get()
  local span = cold_hi - cold_lo + 1
  local id = cold_lo + ((tid + i * nthreads) %% span)
  i = i + 1
  return wrk.format("GET", "/customers/" .. id, hdrs)
end
"""

LUA_REQUEST = {
    "cached": "request = cached_get",
    "miss": "request = miss_get",
    "list": "request = list_page",
    "mix": """request = function()
  local r = math.random()
  if r < 0.85 then return cached_get() elseif r < 0.95 then return list_page() else return patch() end
end""",
}

LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def encode_cursor(after_id: int) -> str:
    # the gateway's opaque keyset cursor (shared.customers.service.encode_cursor), rebuilt so the load
    # generator can jump to any page
    return base64.urlsafe_b64encode(json.dumps({"after": after_id}).encode()).decode().rstrip("=")


def write_script(
    folder: Path,
    scenario: str,
    *,
    path: str,
    hot: tuple[int, int],
    cold: tuple[int, int],
    threads: int,
    cursors: list[str],
) -> Path:
    body = LUA_COMMON % {
        "key": API_KEY,
        "hot_lo": hot[0],
        "hot_hi": hot[1],
        "cold_lo": cold[0],
        "cold_hi": cold[1],
        "threads": threads,
        "cursors": ", ".join(f'"{c}"' for c in cursors),
        "path": path,
    }
    script = folder / f"{scenario}-{path.strip('/').replace('/', '_')}.lua"
    script.write_text(body + LUA_REQUEST[scenario] + "\n" + LUA_DONE)
    return script


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, script: Path, *, threads: int, connections: int, duration: float) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(script), url]
    cpu0 = _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    wrk_cpu = _children_cpu() - cpu0
    match = re.search(r"^BENCHJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(match.group(1))
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["wrk_stdout"] = proc.stdout
    result["wrk_cpu_pct"] = 100 * wrk_cpu / seconds
    return result


def scrape_metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("customer_cache_total", "http_requests_total")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0)}


def bad_statuses(delta: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in delta.items() if k.startswith("http_requests_total") and not re.search(r'status="[23]', k)}


# -- data --------------------------------------------------------------------------------------------


def create_customers(settings: Any, count: int) -> tuple[int, int]:
    """Insert `count` customers with the service's upsert statement; returns (min id, max id)."""
    from shared.customers.customer_repo import UPSERT_SQL, stored_values

    # datagen's rows hold the ten columns of the sample files; the table's fields may be more.
    names = ("first_name", "last_name", "company_name", "address", "city", "county", "postal", "phone", "email", "web")
    conn = mysql_conn(settings)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE customers")
        batch: list[list[str | None]] = []
        for values in datagen.customer_rows(count):
            batch.append(stored_values(dict(zip(names, values, strict=True))))
            if len(batch) == 2000:
                cur.executemany(UPSERT_SQL, batch)
                batch.clear()
        if batch:
            cur.executemany(UPSERT_SQL, batch)
        cur.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM customers")
        lo, hi, n = cur.fetchone()
    conn.close()
    assert n == count and hi - lo + 1 == count, (lo, hi, n)
    return int(lo), int(hi)


async def warm(settings: Any, lo: int, hi: int) -> float:
    """Put customers lo..hi into Redis with the service's own cache code; returns keys/s."""
    import aiomysql
    from redis.asyncio import Redis

    from shared.customers import customer_repo
    from shared.customers.cache import CustomerCache
    from shared.infra.db import create_pool

    pool = await create_pool(settings.mysql, 2)
    redis = Redis.from_url(settings.redis_url)
    cache = CustomerCache(redis, prefix=settings.redis_prefix, ttl_s=settings.cache_ttl_s)
    select = "SELECT " + ", ".join(customer_repo.COLUMNS) + " FROM customers WHERE id BETWEEN %s AND %s"
    spent = 0.0
    async with pool.acquire() as conn:
        cur: aiomysql.Cursor
        async with conn.cursor() as cur:
            for start in range(lo, hi + 1, 2000):
                await cur.execute(select, (start, min(start + 1999, hi)))
                docs = [customer_repo.to_document(row) for row in await cur.fetchall()]
                t0 = time.perf_counter()
                await cache.put_many(docs)
                spent += time.perf_counter() - t0
    pool.close()
    await pool.wait_closed()
    await redis.aclose()
    return (hi - lo + 1) / spent


def delete_keys(settings: Any, lo: int, hi: int) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(settings.redis_url)
    for start in range(lo, hi + 1, 5000):
        client.unlink(*[f"{settings.redis_prefix}{{customer:{i}}}" for i in range(start, min(start + 5000, hi + 1))])
    client.close()


# -- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=60_000)
    parser.add_argument("--hot", type=int, default=10_000, help="how many are cached (the rest serve misses)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default="const,redis,cached,miss,list,mix,cached-quiet")
    parser.add_argument("--database", default="bench_read")
    parser.add_argument("--prefix", default="bench:read:")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=10**9,
        help="the gateways' RATE_LIMIT_PER_MIN: by default on but never reached (each request pays for the"
        " check, none is refused); 0 turns the limits off",
    )
    parser.add_argument("--py-spy", help="path to py-spy: profile the servers in an extra uncounted round")
    parser.add_argument("--from-json", type=Path, help="only print the report of a saved results file")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        for key in ("threads", "connections", "duration", "repeat"):
            setattr(args, key, saved["args"][key])
        print(f"code: {saved.get('code')}\n" + report(saved["results"], saved["labels"], args))
        return 0
    if shutil.which("wrk") is None:
        print("read_bench needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    scenarios = [s for s in args.scenarios.split(",") if s]

    settings = bench_settings(args.database, args.prefix)
    drop_database(settings)
    clear_redis(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-read-logs-"))
    port, quiet_port, base_port, multiproc_port = free_port(), free_port(), free_port(), free_port()
    limits = {"RATE_LIMIT_PER_MIN": args.rate_limit}
    env = service_env(settings, PORT=port, API_KEYS=API_KEY, **limits)
    services: list[Service] = []
    results: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    profiles: list[str] = []
    plan: dict[str, tuple[int, str, Path]] = {}
    try:
        gateway = Service("gateway", env, log_dir, "gateway")
        services.append(gateway)
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)
        lo, hi = create_customers(settings, args.customers)
        hot = (lo, lo + args.hot - 1)
        cold = (lo + args.hot, hi)
        warm_rate = asyncio.run(warm(settings, *hot))
        print(
            f"{args.customers:,} customers (ids {lo}..{hi}); ids {hot[0]}..{hot[1]} cached "
            f"(put_many {fmt_int(warm_rate)} keys/s); misses use {cold[0]}..{cold[1]}"
        )
        quiet = None
        if "cached-quiet" in scenarios:
            quiet_env = service_env(settings, PORT=quiet_port, API_KEYS=API_KEY, LOG_LEVEL="WARNING", **limits)
            quiet = Service("gateway", quiet_env, log_dir, "gateway-quiet")
            services.append(quiet)
            wait_http_ready(f"http://127.0.0.1:{quiet_port}", quiet)
        multiproc = None
        if "cached-multiproc" in scenarios:
            # The metrics in prometheus-client's multiprocess mode (as deploy/run.sh runs gateways).
            prom_dir = tempfile.mkdtemp(prefix="bench-read-prom-")
            mp_env = service_env(
                settings, PORT=multiproc_port, API_KEYS=API_KEY, PROMETHEUS_MULTIPROC_DIR=prom_dir, **limits
            )
            multiproc = Service("gateway", mp_env, log_dir, "gateway-multiproc")
            services.append(multiproc)
            wait_http_ready(f"http://127.0.0.1:{multiproc_port}", multiproc)
        baseline = Service("tests.bench.baseline_server", service_env(settings, PORT=base_port), log_dir, "baseline")
        services.append(baseline)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{base_port}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or baseline.proc.poll() is not None:
                    raise RuntimeError(f"baseline server did not start:\n{baseline.output()}") from None
                time.sleep(0.2)

        cursors = [""] + [encode_cursor(lo - 1 + 50 * k) for k in range(1, 200)]
        folder = Path(tempfile.mkdtemp(prefix="bench-read-lua-"))
        kw = {"hot": hot, "cold": cold, "threads": args.threads, "cursors": cursors}
        plan = {
            "const": (base_port, "/const", write_script(folder, "cached", path="/const?", **kw)),
            "redis": (base_port, "/redis/{id}", write_script(folder, "cached", path="/redis/", **kw)),
            "cached": (port, "/customers/{id} hit", write_script(folder, "cached", path="/customers/", **kw)),
            "miss": (port, "/customers/{id} miss", write_script(folder, "miss", path="/customers/", **kw)),
            "list": (port, "/customers?limit=50", write_script(folder, "list", path="/customers/", **kw)),
            "mix": (port, "85% hit/10% list/5% PATCH", write_script(folder, "mix", path="/customers/", **kw)),
            "cached-quiet": (
                quiet_port,
                "/customers/{id} hit, LOG_LEVEL=WARNING",
                write_script(folder, "cached", path="/customers/", **kw),
            ),
            "cached-multiproc": (
                multiproc_port,
                "/customers/{id} hit, PROMETHEUS_MULTIPROC_DIR set",
                write_script(folder, "cached", path="/customers/", **kw),
            ),
        }
        # /const? → wrk asks for "/const?<id>": the query string is ignored by the handler
        server_pid = {base_port: baseline.proc.pid, port: gateway.proc.pid}
        if quiet is not None:
            server_pid[quiet_port] = quiet.proc.pid
        if multiproc is not None:
            server_pid[multiproc_port] = multiproc.proc.pid
        redis_pids = find_pids("redis-server")
        mysql_pids = find_pids("mariadbd", "mysqld")

        # a short warm-up of every server (connections, JIT-less but caches and pools)
        for name in ("const", "cached", "cached-quiet", "cached-multiproc"):
            if name in scenarios:
                p, _, script = plan[name]
                run_wrk(f"http://127.0.0.1:{p}", script, threads=args.threads, connections=args.connections, duration=2)
        rounds = args.repeat + (1 if args.py_spy else 0)
        for r in range(rounds):
            profiling = r == args.repeat  # an extra round under py-spy, not counted
            for name in scenarios:
                if profiling and name not in ("redis", "cached", "miss", "cached-quiet"):
                    continue
                p, _label, script = plan[name]
                if name == "miss":
                    delete_keys(settings, *cold)
                before = scrape_metrics(p) if p != base_port else {}
                window = Window({"server": [server_pid[p]], "redis": redis_pids, "mysqld": mysql_pids})
                spy_file = log_dir / f"{'baseline' if p == base_port else 'gateway'}-{name}.txt"
                spy = None
                if profiling:
                    spy = profile.start(args.py_spy, server_pid[p], spy_file)
                window.start()
                result = run_wrk(
                    f"http://127.0.0.1:{p}",
                    script,
                    threads=args.threads,
                    connections=args.connections,
                    duration=args.duration,
                )
                window.stop()
                if spy is not None:
                    profile.stop(spy)
                    if spy_file.exists():
                        profiles.append(profile.summarize(spy_file, 25))
                result["cpu_pct"] = {k: window.percent(k) for k in window.cpu}
                result["other_cpu_pct"] = max(
                    100 * window.others() / max(window.wall, 1e-9) - result["wrk_cpu_pct"], 0.0
                )
                result["top_other_cpu_s"] = window.top_others
                if p != base_port:
                    delta = metrics_delta(before, scrape_metrics(p))
                    result["metrics"] = delta
                    result["hit"] = delta.get('customer_cache_total{result="hit"}', 0)
                    result["miss"] = delta.get('customer_cache_total{result="miss"}', 0)
                    result["bad_status"] = bad_statuses(delta)
                if profiling:
                    print(f"(profiled) {name}: {fmt_int(result['rps'])} req/s under py-spy")
                    continue
                results.setdefault(name, []).append(result)
                extra = ""
                if name in ("cached", "miss", "cached-quiet", "cached-multiproc"):
                    total = result["hit"] + result["miss"]
                    share = 100 * result["miss"] / max(total, 1)
                    extra = f"  hit/miss {result['hit']:.0f}/{result['miss']:.0f} ({share:.0f}% miss)"
                print(
                    f"round {r + 1}/{args.repeat} {name:13} {fmt_int(result['rps']):>7} req/s  "
                    f"p50 {result['p50_us'] / 1000:6.2f} ms  p99 {result['p99_us'] / 1000:6.2f} ms  "
                    f"errors {result['errors']}  cpu server {result['cpu_pct']['server']:.0f}% "
                    f"redis {result['cpu_pct']['redis']:.0f}% mysqld {result['cpu_pct']['mysqld']:.0f}% "
                    f"wrk {result['wrk_cpu_pct']:.0f}% other {result['other_cpu_pct']:.0f}% "
                    f"{[(n, round(s, 1)) for n, s in window.top_others]}{extra}",
                    flush=True,
                )
                if result["errors"]:
                    detail = {k: result[k] for k in ("connect", "read", "write", "status", "timeout")}
                    failures.append(
                        f"{name} round {r + 1}: {result['errors']} errors {detail} {result.get('bad_status', {})}"
                    )
    finally:
        for service in services:
            service.stop()
        if not args.keep:
            drop_database(settings)
            clear_redis(settings)

    version = code_version()
    labels = {name: label for name, (_p, label, _s) in plan.items()}
    out = results_path("read")
    out.write_text(
        json.dumps(
            {"code": version, "args": vars(args), "labels": labels, "results": results, "failures": failures},
            indent=1,
            default=str,
        )
    )
    text = f"code: {version}\n" + report(results, labels, args)
    if profiles:
        text += "\n\n== py-spy of the servers (the bare baseline for 'redis'), an extra round not counted ==\n"
        text += "\n\n".join(profiles)
    print(text)
    if failures:
        print("\nERRORS (zero required):")
        for line in failures:
            print("  " + line)
    else:
        print("\nerrors: none in any run")
    print(f"all runs: {out}")
    return 1 if failures else 0


def report(results: dict[str, list[dict[str, Any]]], labels: dict[str, str], args: Any) -> str:
    def med(name: str, key: str) -> float:
        return median([r[key] for r in results.get(name, [])])

    redis_rps, const_rps = med("redis", "rps"), med("const", "rps")
    redis_p99 = med("redis", "p99_us")
    rows = []
    for name, group in results.items():
        rps = med(name, "rps")
        p99 = med(name, "p99_us")
        server = "baseline" if name in ("const", "redis") else "gateway"
        rows.append(
            [
                server,
                labels[name],
                fmt_int(rps),
                f"{med(name, 'p50_us') / 1000:.2f}",
                f"{p99 / 1000:.2f}",
                str(sum(r["errors"] for r in group)),
                f"{median([r['cpu_pct']['server'] for r in group]):.0f}%",
                f"{median([r['cpu_pct']['redis'] for r in group]):.0f}%",
                f"{median([r['cpu_pct']['mysqld'] for r in group]):.0f}%",
                f"{median([r['wrk_cpu_pct'] for r in group]):.0f}%",
                f"{median([r['other_cpu_pct'] for r in group]):.0f}%",
                fmt_ratio(rps / redis_rps),
                fmt_ratio(rps / const_rps),
                fmt_ratio(p99 / redis_p99),
            ]
        )
    lines = [
        f"\n== Reads: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, one server process each; "
        f"medians of {args.repeat} round(s) ==",
        table(
            [
                "server",
                "scenario",
                "req/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "server CPU",
                "redis CPU",
                "mysqld CPU",
                "wrk CPU",
                "other CPU",
                "vs bare redis GET",
                "vs bare constant",
                "p99 vs bare redis GET",
            ],
            rows,
        ),
    ]
    cached = med("cached", "rps")
    if cached == cached:
        lines.append(
            f"target: cached GET ≥ bare aiohttp+redis GET: {fmt_ratio(cached / redis_rps)} "
            f"({'met' if cached >= redis_rps else 'NOT met'}); p99 {med('cached', 'p99_us') / 1000:.2f} ms vs "
            f"{redis_p99 / 1000:.2f} ms ({'met' if med('cached', 'p99_us') <= redis_p99 else 'NOT met'}); "
            f"stretch ≥ 0.5x bare constant: {fmt_ratio(cached / const_rps)}"
        )
    lines.append(
        "CPU % is of one core over the run (2 cores = 200%); wrk shares the cores; 'other' is everything else on "
        "the machine (other people's work): when server + redis + wrk + other ≈ 200%, the machine was saturated."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

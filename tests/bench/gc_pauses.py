"""What the garbage collector costs a gateway serving cached reads, in CPU time per collection.

    .venv/bin/python -m tests.bench.gc_pauses [--customers 20000] [--hot 10000] [--duration 8] [--repeat 3]

Needs `wrk`. Fills its own database and Redis prefix as read_bench does, then, for each round and each
variant, starts `python -m gateway` with a `gc.callbacks` hook (this module, run as the process) and
loads it with `wrk -t2 -c64` on cached `GET /customers/{id}`. The hook times every collection with
`time.thread_time` (CPU time: time the process spends descheduled on a busy machine is not counted)
from the moment the app has started. Variants: `frozen`, the gateway as shipped (it calls gc.freeze()
once started, gateway/__main__.py), and `unfrozen`, the same without that call. Prints, per variant,
the median over rounds of each generation's collections, CPU p99 and max per collection, and wrk's
req/s, p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import bench_settings, clear_redis, drop_database, median
from tests.bench.read_bench import API_KEY, create_customers, warm
from tests.support.procs import free_port, service_env

LUA = """
local hdrs = {["Authorization"] = "Bearer %s"}
request = function()
  return wrk.format("GET", "/customers/" .. math.random(%d, %d), hdrs)
end
"""


def serve_with_hook(out: str, freeze: bool) -> None:
    """Run as the gateway process: the gateway's main(), collections timed from start-up on."""
    import gateway.__main__ as entry

    pauses: list[tuple[int, float]] = []
    started: list[float] = [0.0]

    def hook(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            pauses.append((info["generation"], (time.thread_time() - started[0]) * 1000))

    create_app = entry.create_app

    def create(settings: Any) -> Any:
        app = create_app(settings)

        async def begin(app: Any) -> None:
            # Once every start-up hook has run (the gateway's collect + freeze is added after this one).
            asyncio.get_running_loop().call_soon(pauses.clear)

        app.on_startup.append(begin)
        return app

    entry.create_app = create
    if not freeze:
        entry.gc = type(  # type: ignore[assignment]
            "NoFreeze",
            (),
            {name: staticmethod(lambda: 0) for name in ("collect", "freeze", "get_freeze_count")},
        )
    gc.callbacks.append(hook)

    def dump(*_: Any) -> None:
        Path(out).write_text(json.dumps(pauses))
        sys.exit(0)

    signal.signal(signal.SIGTERM, dump)
    try:
        entry.main()
    finally:
        Path(out).write_text(json.dumps(pauses))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def one_run(env: dict[str, str], freeze: bool, script: Path, duration: float) -> dict[str, Any]:
    out = tempfile.mktemp(suffix=".json")
    port = env["PORT"]
    command = [sys.executable, "-m", "tests.bench.gc_pauses", "--serve", out] + ([] if freeze else ["--no-freeze"])
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        wrk = subprocess.run(
            ["wrk", "-t2", "-c64", f"-d{duration:g}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    pauses = json.loads(Path(out).read_text())
    os.unlink(out)

    def ms(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", wrk)
        assert match, wrk
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk)
    result: dict[str, Any] = {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50%"), "p99": ms("99%")}
    for generation in range(3):
        costs = [cost for gen, cost in pauses if gen == generation]
        result[f"gen{generation}"] = (len(costs), percentile(costs, 0.99), max(costs, default=0.0))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--no-freeze", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--hot", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.serve:
        serve_with_hook(args.serve, freeze=not args.no_freeze)
        return 0
    settings = bench_settings("bench_gc", "bench:gc:")
    drop_database(settings)
    clear_redis(settings)
    env = service_env(settings, PORT=free_port(), API_KEYS=API_KEY, RATE_LIMIT_PER_MIN=10**9, LOG_LEVEL="WARNING")
    # The schema comes from the gateway's own start: one short run first, then the data.
    script = Path(tempfile.mkdtemp()) / "cached.lua"
    script.write_text(LUA % (API_KEY, 1, 1))
    one_run(env, True, script, 1)
    lo, _ = create_customers(settings, args.customers)
    asyncio.run(warm(settings, lo, lo + args.hot - 1))
    script.write_text(LUA % (API_KEY, lo, lo + args.hot - 1))
    runs: dict[str, list[dict[str, Any]]] = {"unfrozen": [], "frozen": []}
    try:
        for round_ in range(args.repeat):
            for name in runs:
                result = one_run(env, name == "frozen", script, args.duration)
                runs[name].append(result)
                print(f"round {round_ + 1} {name:9} {json.dumps(result)}", flush=True)
    finally:
        drop_database(settings)
        clear_redis(settings)
    print("\n| gateway | req/s | p50 ms | p99 ms | full collections | CPU per full collection, p99 / max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, results in runs.items():
        gen2 = [r["gen2"] for r in results]
        print(
            f"| {name} | {median([r['rps'] for r in results]):,.0f} | {median([r['p50'] for r in results]):.2f} "
            f"| {median([r['p99'] for r in results]):.2f} | {median([g[0] for g in gen2]):.0f} "
            f"| {median([g[1] for g in gen2]):.2f} / {median([g[2] for g in gen2]):.2f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

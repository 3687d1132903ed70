"""Helpers shared by the benchmarks: settings for a bench database and prefix, clean-up, tables."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymysql
import redis as sync_redis

from shared.config import Settings, load_settings
from tests.support.procs import REPO


def bench_settings(database: str, prefix: str, **overrides: Any) -> Settings:
    """The service's settings as this machine's environment gives them, on a database and Redis
    prefix of the benchmark's own (batch size, memory budget … stay what the service would use)."""
    base = load_settings(dict(os.environ))
    m = base.mysql
    dsn = f"mysql://{m.user}:{m.password}@{m.host}:{m.port}/{database}"
    upload_dir = overrides.pop("upload_dir", None) or tempfile.mkdtemp(prefix="bench-uploads-")
    return replace(base, mysql_dsn=dsn, redis_prefix=prefix, upload_dir=upload_dir, api_keys=(), **overrides)


def mysql_conn(s: Settings, database: bool = True) -> pymysql.Connection:
    m = s.mysql
    return pymysql.connect(
        host=m.host,
        port=m.port,
        user=m.user,
        password=m.password,
        database=m.database if database else None,
        autocommit=True,
    )


def drop_database(s: Settings) -> None:
    conn = mysql_conn(s, database=False)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{s.mysql.database}`")
    conn.close()


def clear_redis(s: Settings, patterns: Sequence[str] = ("*",)) -> int:
    client = sync_redis.Redis.from_url(s.redis_url)
    removed = 0
    for pattern in patterns:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{s.redis_prefix}{pattern}", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                removed += int(client.unlink(*batch))  # type: ignore[arg-type]
                batch.clear()
        if batch:
            removed += int(client.unlink(*batch))  # type: ignore[arg-type]
    client.close()
    return removed


def median(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def run_json(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run `python -m …` in a fresh process and parse the JSON it prints last."""
    import json

    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def fmt_int(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.2f}x"


def code_version() -> str:
    """The commit measured, with '+dirty' when gateway/, worker/ or shared/ have uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "gateway", "worker", "shared"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def results_path(name: str) -> Path:
    from tests.bench.datagen import cache_dir

    folder = cache_dir() / "results"
    folder.mkdir(parents=True, exist_ok=True)
    import time

    return folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"

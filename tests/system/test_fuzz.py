"""Schemathesis against a live gateway and worker (real processes), from the gateway's own
/openapi.json: every operation, in the examples, coverage, fuzzing and stateful phases, checked for
server errors, responses the document does not describe (status, content type, headers, body) and
operations that answer without the API key. Settings (seed, examples, checks): tests/schemathesis.toml;
links and valid files: tests/support/fuzz_hooks.py.

The services run with an API key, in a database and Redis prefix of their own (removed at the end),
so what the fuzzer creates never meets the other tests.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pymysql
import pytest
import redis as sync_redis

from shared.config import Settings
from tests.support import procs

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).resolve().parents[1] / "schemathesis.toml"
KEY = "fuzz-" + secrets.token_hex(16)
TIME_LIMIT_S = 600  # the run takes 1-6 min (more on a busy machine); this only stops a hung one


@pytest.fixture(scope="module")
def live_gateway(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz")
    own = replace(
        settings,
        mysql_dsn=settings.mysql_dsn + "_fuzz",
        redis_prefix=settings.redis_prefix + "fuzz:",
        upload_dir=str(root / "uploads"),
    )
    env = procs.service_env(own, PORT=procs.free_port(), API_KEYS=f"fuzz={KEY}", LOG_LEVEL="WARNING")
    gateway = procs.Service("gateway", env, root, "gateway")
    worker = procs.Service("worker", env, root, "worker")
    base_url = f"http://127.0.0.1:{env['PORT']}"
    try:
        procs.wait_http_ready(base_url, gateway, timeout=60)
        yield base_url
    finally:
        gateway.stop()
        worker.stop()
        _drop(own)


def _drop(s: Settings) -> None:
    try:
        conn = pymysql.connect(host=s.mysql.host, port=s.mysql.port, user=s.mysql.user, password=s.mysql.password)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{s.mysql.database}`")
        conn.close()
    except pymysql.MySQLError:
        pass
    client = sync_redis.Redis.from_url(s.redis_url)
    keys = list(client.scan_iter(match=f"{s.redis_prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def test_schemathesis_finds_nothing(live_gateway: str, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{live_gateway}/openapi.json",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),  # the hooks module: tests.support.fuzz_hooks
        "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / "hypothesis"),  # not .hypothesis/ in the repo
    }
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIME_LIMIT_S, check=False
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)  # the whole report (the message keeps its end)
    assert result.returncode == 0, (
        f"schemathesis found something (exit {result.returncode}; whole report: {tmp_path / 'schemathesis.txt'}):"
        f"\n{output[-20000:]}"
    )
    # Every operation was tested, in every phase, and the stateful phase followed links.
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert selected is not None and len(set(selected.groups())) == 1, output[-3000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in output, f"phase {phase} did not pass:\n{output[-5000:]}"
    assert "API Links:" in output, output[-3000:]
    assert (tmp_path / "junit.xml").is_file()
    print(f"schemathesis: {elapsed:.1f} s")

"""Start real `python -m gateway` / `python -m worker` processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import redis as sync_redis

from shared.config import Settings
from tests.support import openapi_check

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MYSQL_DSN": settings.mysql_dsn,
            "REDIS_URL": settings.redis_url,
            "REDIS_PREFIX": settings.redis_prefix,
            "UPLOAD_DIR": settings.upload_dir,
            "IMPORT_BATCH_SIZE": str(settings.import_batch_size),
            "JOB_LEASE_S": str(settings.job_lease_s),
            "SWEEP_INTERVAL_S": str(settings.sweep_interval_s),
            "RATE_LIMIT_PER_MIN": str(settings.rate_limit_per_min),
            "UPLOAD_RATE_LIMIT_PER_MIN": str(settings.upload_rate_limit_per_min),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # Off unless a test asks for it: workers of parallel tests must not share a metrics port.
            "WORKER_METRICS_PORT": "0",
        }
    )
    env.pop("API_KEYS", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Service:
    """A child process whose combined output goes to a log file (read it when a test fails)."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One request to a gateway; the response is checked against the OpenAPI document."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        answer = exc.code, dict(exc.headers), exc.read()
    openapi_check.check(method, urllib.parse.unquote(urllib.parse.urlsplit(url).path), *answer)
    return answer


def multipart(filename: str, content: bytes, field: str = "file") -> tuple[bytes, str]:
    boundary = "----citboundary7MA4YWxkTrZu0gW"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_http_ready(base_url: str, service: Service, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited early:\n{service.output()}")
        try:
            status, _, _ = http("GET", base_url + "/readyz", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{service.name} not ready after {timeout}s:\n{service.output()}")


def upload(base_url: str, filename: str, content: bytes, query: str = "") -> tuple[int, dict[str, Any]]:
    body, ctype = multipart(filename, content)
    status, _, raw = http("POST", f"{base_url}/upload{query}", body, {"Content-Type": ctype})
    return status, json.loads(raw)


def get_json(url: str) -> tuple[int, Any]:
    status, _, raw = http("GET", url)
    return status, json.loads(raw) if raw else None


def sse_events(stream: Iterable[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) of each event of a Server-Sent Events body, read line by line as it comes."""
    kind = ""
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


def drop_own(settings: Settings) -> None:
    """Remove what processes started on settings of their own left: the database and the Redis keys of the prefix."""
    try:
        m = settings.mysql
        conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{m.database}`")
        conn.close()
    except pymysql.MySQLError:
        pass
    client = sync_redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def wait_job(
    base_url: str, job_id: str, timeout: float = 120, until: tuple[str, ...] = ("completed", "failed")
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, doc = get_json(f"{base_url}/jobs/{job_id}")
        if doc.get("status") in until:
            return doc
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {doc.get('status')} after {timeout}s: {doc}")

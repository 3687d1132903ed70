"""End to end: real `python -m gateway` and `python -m worker` processes, real MariaDB and Redis.

Includes the crash cases: a worker SIGKILLed in the middle of an import, and one stopped with SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import redis as sync_redis

from shared.config import Settings
from tests.conftest import DATA, truncate_all
from tests.support.procs import (
    Service,
    free_port,
    get_json,
    service_env,
    sse_events,
    upload,
    wait_http_ready,
    wait_job,
)
from tests.support.workbooks import csv_bytes, customers

pytestmark = pytest.mark.e2e


class Stack:
    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.services: list[Service] = []
        self._workers = 0

    def env(self, **overrides: object) -> dict[str, str]:
        return service_env(self.settings, PORT=self.port, **overrides)

    def start_gateway(self) -> Service:
        gateway = Service("gateway", self.env(), self.log_dir, "gateway")
        self.services.append(gateway)
        wait_http_ready(self.base, gateway)
        return gateway

    def start_worker(self, **overrides: object) -> Service:
        self._workers += 1
        worker = Service("worker", self.env(**overrides), self.log_dir, f"worker{self._workers}")
        self.services.append(worker)
        return worker

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.output()[-4000:]}" for s in self.services)


@pytest.fixture
def stack(settings: Settings, tmp_path: Path, pool: object) -> Iterator[Stack]:
    truncate_all(settings)
    s = Stack(settings, tmp_path)
    try:
        yield s
    finally:
        s.stop()


def mysql_scalar(settings: Settings, sql: str, *args: object) -> object:
    m = settings.mysql
    conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password, database=m.database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def test_sample_workbook_end_to_end(stack: Stack, settings: Settings) -> None:
    stack.start_gateway()
    stack.start_worker()
    data = (DATA / "Sample_Employee_data_xlsx.xlsx").read_bytes()
    started = time.monotonic()
    status, body = upload(stack.base, "Sample_Employee_data_xlsx.xlsx", data)
    assert status == 202, body
    assert time.monotonic() - started < 5  # answers at once, before the import runs
    job = wait_job(stack.base, body["job_id"], timeout=60)
    assert job["status"] == "completed", stack.logs()
    assert (job["rows_read"], job["rows_inserted"], job["rows_updated"], job["rows_unchanged"]) == (2000, 500, 0, 1500)
    assert job["rows_invalid"] == 0
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == 500
    customer_id = mysql_scalar(settings, "SELECT id FROM customers WHERE email='atomkiewicz@hotmail.com'")
    client = sync_redis.Redis.from_url(settings.redis_url)
    key = f"{settings.redis_prefix}{{customer:{customer_id}}}"
    ttl = client.ttl(key)
    client.close()
    assert 0 < ttl <= 300
    status, doc = get_json(f"{stack.base}/customers/{customer_id}")
    assert status == 200 and doc["first_name"] == "Aleshia"


def _wait_for_progress(stack: Stack, job_id: str, minimum: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = get_json(f"{stack.base}/jobs/{job_id}")
        if job["status"] in ("completed", "failed"):
            raise AssertionError(f"job finished before the worker could be stopped: {job}")
        if job["rows_read"] >= minimum:
            return job
        time.sleep(0.05)
    raise TimeoutError(stack.logs())


def _crash_case(stack: Stack, settings: Settings, sig: int, rows: int = 60000) -> tuple[dict, float, Service]:
    stack.start_gateway()
    # Small batches so the import is still running when the signal arrives.
    first = stack.start_worker(IMPORT_BATCH_SIZE=200)
    status, body = upload(stack.base, "big.csv", csv_bytes(customers(rows)))
    assert status == 202
    job_id = body["job_id"]
    before = _wait_for_progress(stack, job_id, 1000)
    first.signal(sig)
    stopped_at = time.monotonic()
    if sig == signal.SIGTERM:
        first.proc.wait(30)
    else:
        first.proc.wait(5)
    stack.start_worker()
    job = wait_job(stack.base, job_id, timeout=120)
    recovered_in = time.monotonic() - stopped_at
    assert job["status"] == "completed", stack.logs()
    assert before["rows_read"] < rows
    assert (job["rows_read"], job["rows_inserted"], job["rows_updated"], job["rows_invalid"]) == (rows, rows, 0, 0)
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == rows
    # No row was imported twice: a second upsert of any row would have bumped its version.
    assert mysql_scalar(settings, "SELECT MAX(version) FROM customers") == 1
    assert job["attempts"] >= 2
    return job, recovered_in, first


def test_sigkill_mid_import_another_worker_finishes(stack: Stack, settings: Settings) -> None:
    _job, recovered_in, first = _crash_case(stack, settings, signal.SIGKILL)
    assert first.proc.returncode == -signal.SIGKILL
    # Lease (5 s here) + sweep interval (2 s) + the rest of the work: well under a minute.
    assert recovered_in < 60, recovered_in


def test_sigterm_stops_cleanly_and_the_job_continues(stack: Stack, settings: Settings) -> None:
    _job, _recovered_in, first = _crash_case(stack, settings, signal.SIGTERM)
    assert first.proc.returncode == 0, first.output()[-3000:]
    assert "lease released" in first.output()


def test_two_workers_share_uploads(stack: Stack, settings: Settings) -> None:
    stack.start_gateway()
    # One job at a time per worker, so the queue must be shared out between the processes.
    stack.start_worker(WORKER_CONCURRENCY=1)
    stack.start_worker(WORKER_CONCURRENCY=1)
    job_ids = []
    for i in range(4):
        status, body = upload(stack.base, f"part{i}.csv", csv_bytes(customers(3000, start=i * 3000)))
        assert status == 202
        job_ids.append(body["job_id"])
    jobs = [wait_job(stack.base, job_id, timeout=120) for job_id in job_ids]
    assert all(j["status"] == "completed" for j in jobs), stack.logs()
    assert sum(j["rows_inserted"] for j in jobs) == 12000
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == 12000
    # Both worker processes took part (each logs the jobs it starts).
    starts = [s.output().count("import started") for s in stack.services if s.name.startswith("worker")]
    assert all(n >= 1 for n in starts), starts


def test_json_logs_carry_job_and_request_ids(stack: Stack) -> None:
    gateway = stack.start_gateway()
    worker = stack.start_worker()
    _status, body = upload(stack.base, "small.csv", csv_bytes(customers(3)))
    wait_job(stack.base, body["job_id"], timeout=60)
    time.sleep(3 * stack.settings.sweep_interval_s)  # the sweep runs a few times, finding nothing
    gateway_lines = [json.loads(line) for line in gateway.output().splitlines() if line.startswith("{")]
    uploads = [line for line in gateway_lines if line.get("path") == "/upload" and line.get("request_id")]
    assert len(uploads) == 1
    request_id = uploads[0]["request_id"]
    worker_lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    job_lines = [line for line in worker_lines if line.get("job_id") == body["job_id"]]
    # Every worker line about the job carries the upload's request id, linking the two logs.
    assert job_lines and all(line.get("request_id") == request_id for line in job_lines), job_lines
    completed = next(line for line in job_lines if line["msg"] == "import completed")
    assert (completed["rows_read"], completed["rows_inserted"], completed["rows_unchanged"]) == (3, 3, 0)
    assert completed["duration_s"] >= 0
    # Where its wall time went: parts of the attempt, which the job's duration (from its start) holds.
    stages = ["waiting_for_parser_s", "committing_s", "publishing_progress_s", "waiting_for_warmup_s"]
    assert all(completed[name] >= 0 for name in stages), completed
    assert completed["committing_s"] > 0
    assert sum(completed[name] for name in stages) <= completed["duration_s"] + 0.01, completed
    # A sweep that finds nothing to do says nothing.
    assert not [line for line in worker_lines if "sweep" in line["msg"]], worker_lines


def test_live_events_from_a_real_worker_through_a_real_gateway(stack: Stack) -> None:
    import urllib.request

    stack.start_gateway()
    status, body = upload(stack.base, "events.csv", csv_bytes(customers(1200)))
    assert status == 202
    # Subscribe before any worker runs: the stream carries what the worker commits, batch by batch.
    stream = urllib.request.urlopen(f"{stack.base}/jobs/{body['job_id']}/events", timeout=60)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    stack.start_worker()
    events = list(sse_events(stream))
    assert [k for k, _ in events] == ["progress", "progress", "progress", "completed"], stack.logs()
    assert [d["rows_read"] for _, d in events] == [500, 1000, 1200, 1200]

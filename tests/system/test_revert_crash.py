"""A revert killed mid-way: real `python -m gateway` and `python -m worker` processes, real MariaDB and Redis.

An import inserts N - M customers and updates M; its revert runs in small batches on a worker that is
SIGKILLed part-way; the sweep hands the revert to another worker, which goes on after the checkpoint.
In the end every inserted customer is gone, every updated one has its values back, each exactly once
(one history row per customer, one version step), the counters are exact and no reader gets an old
cached value. N is REVERT_CRASH_ROWS (default 40,000; the issue's 200,000 with REVERT_CRASH_ROWS=200000).
Also: a running import cancelled, with real processes: it stops at its next batch and what it
committed stays.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from tests.support.procs import get_json, http, upload, wait_job
from tests.support.workbooks import HEADER, csv_bytes, customers
from tests.system.test_e2e import Stack, mysql_scalar

pytestmark = pytest.mark.e2e

CITY = HEADER.index("city")
ROWS = int(os.environ.get("REVERT_CRASH_ROWS", "40000"))


@pytest.fixture
def stack(settings: Settings, tmp_path: Path, clean: None) -> Iterator[Stack]:
    s = Stack(settings, tmp_path)
    try:
        yield s
    finally:
        s.stop()


def _post(url: str, body: bytes = b"{}") -> tuple[int, dict]:
    import json

    status, _, raw = http("POST", url, body, {"Content-Type": "application/json"})
    return status, json.loads(raw)


def _wait_until(stack: Stack, job_id: str, rows: int, timeout: float = 120) -> dict:
    """The job's document once it has processed at least `rows` (and is still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = get_json(f"{stack.base}/jobs/{job_id}")
        if job["status"] not in ("queued", "running"):
            raise AssertionError(f"the job ended before the worker could be stopped: {job}")
        if job["rows_read"] >= rows:
            return job
        time.sleep(0.02)
    raise TimeoutError(stack.logs())


def test_sigkill_mid_revert_another_worker_finishes_it_exactly(stack: Stack, settings: Settings) -> None:
    stack.start_gateway()
    importer = stack.start_worker(IMPORT_BATCH_SIZE=5000)
    updated = ROWS // 5
    status, base = upload(stack.base, "base.csv", csv_bytes(customers(updated)))
    assert status == 202
    assert wait_job(stack.base, base["job_id"], timeout=300)["status"] == "completed", stack.logs()
    # The big import: the first `updated` customers move to York, the rest are new.
    rows = [[*row[:CITY], "York", *row[CITY + 1 :]] for row in customers(updated)] + customers(
        ROWS - updated, start=updated
    )
    status, body = upload(stack.base, "big.csv", csv_bytes(rows))
    assert status == 202
    job = wait_job(stack.base, body["job_id"], timeout=600)
    assert (job["status"], job["rows_inserted"], job["rows_updated"]) == ("completed", ROWS - updated, updated)
    # Readers have the imported values cached.
    sample = [int(mysql_scalar(settings, "SELECT id FROM customers WHERE email = %s", f"person{i}@example.com"))
              for i in (0, updated // 2, updated - 1)]  # fmt: skip
    for customer_id in sample:
        assert get_json(f"{stack.base}/customers/{customer_id}")[1]["city"] == "York"
    importer.stop()
    stack.services.remove(importer)  # its log is closed: stack.logs() reads the others'

    # Small batches, so the revert is mid-way when the worker is killed (about 400 of them).
    victim = stack.start_worker(IMPORT_BATCH_SIZE=max(100, ROWS // 400))
    status, revert = _post(f"{stack.base}/jobs/{job['job_id']}/revert")
    assert status == 202, revert
    before = _wait_until(stack, revert["job_id"], ROWS // 4, timeout=600)
    victim.signal(signal.SIGKILL)
    victim.proc.wait(10)
    assert victim.proc.returncode == -signal.SIGKILL
    stack.start_worker()
    done = wait_job(stack.base, revert["job_id"], timeout=600)
    assert done["status"] == "completed", stack.logs()
    assert before["rows_read"] < ROWS
    assert done["attempts"] >= 2
    counters = (done["rows_read"], done["rows_deleted"], done["rows_restored"], done["rows_unchanged"])
    assert counters == (ROWS, ROWS - updated, updated, 0)
    assert done["rows_invalid"] == 0 and done["progress"]["percent"] == 100.0
    # Every inserted customer gone, every updated one back in Leeds, one version on.
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == updated
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers WHERE city <> 'Leeds'") == 0
    assert mysql_scalar(settings, "SELECT MIN(version) = 3 AND MAX(version) = 3 FROM customers") == 1
    # Each customer reverted exactly once.
    revert_id = revert["job_id"]
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customer_history WHERE job_id = %s", revert_id) == ROWS
    assert (
        mysql_scalar(settings, "SELECT COUNT(DISTINCT customer_id) FROM customer_history WHERE job_id = %s", revert_id)
        == ROWS
    )
    # No reader gets the imported (old cached) value.
    for customer_id in sample:
        assert get_json(f"{stack.base}/customers/{customer_id}")[1]["city"] == "Leeds"
    assert get_json(f"{stack.base}/jobs/{job['job_id']}")[1]["reverted_by"] == revert_id


def test_cancel_a_running_import_stops_at_its_next_batch(stack: Stack, settings: Settings) -> None:
    stack.start_gateway()
    stack.start_worker(IMPORT_BATCH_SIZE=100)
    rows = 30000
    status, body = upload(stack.base, "big.csv", csv_bytes(customers(rows)))
    assert status == 202
    job_id = body["job_id"]
    _wait_until(stack, job_id, 1000)
    status, cancelled = _post(f"{stack.base}/jobs/{job_id}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled", cancelled
    time.sleep(3)  # the worker's next batch finds the job cancelled and stops
    final = get_json(f"{stack.base}/jobs/{job_id}")[1]
    assert final["status"] == "cancelled"
    assert 0 < final["rows_read"] < rows
    # What it committed stays, exactly as counted, and nothing more comes.
    stored = mysql_scalar(settings, "SELECT COUNT(*) FROM customers")
    assert stored == final["rows_inserted"] == final["rows_read"]
    time.sleep(2)
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == stored
    assert _post(f"{stack.base}/jobs/{job_id}/cancel")[0] == 409
    # And it can be reverted.
    status, revert = _post(f"{stack.base}/jobs/{job_id}/revert")
    assert status == 202
    assert wait_job(stack.base, revert["job_id"], timeout=120)["rows_deleted"] == stored
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == 0


def test_cancel_a_split_import_stops_every_part(stack: Stack, settings: Settings) -> None:
    stack.start_gateway()
    for _ in range(2):
        stack.start_worker(IMPORT_BATCH_SIZE=100, FANOUT_MIN_ROWS=3000, FANOUT_PARTS=2)
    rows = 30000
    status, body = upload(stack.base, "big.csv", csv_bytes(customers(rows)))
    assert status == 202
    job_id = body["job_id"]
    running = _wait_until(stack, job_id, 2000)
    assert len(running["parts"]) == 2, running
    status, cancelled = _post(f"{stack.base}/jobs/{job_id}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled", cancelled
    assert {part["status"] for part in cancelled["parts"]} <= {"cancelled", "completed"}
    time.sleep(3)  # each part's worker finds it cancelled at its next batch (or heartbeat) and stops
    final = get_json(f"{stack.base}/jobs/{job_id}")[1]
    assert final["status"] == "cancelled"
    assert final["rows_read"] < rows
    stored = mysql_scalar(settings, "SELECT COUNT(*) FROM customers")
    assert stored == final["rows_inserted"] == sum(part["rows_inserted"] for part in final["parts"])
    time.sleep(2)
    assert mysql_scalar(settings, "SELECT COUNT(*) FROM customers") == stored
    assert get_json(f"{stack.base}/jobs/{job_id}")[1]["rows_read"] == final["rows_read"]

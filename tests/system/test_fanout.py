"""One big file over many workers (docs/scaling.md): a job of FANOUT_MIN_ROWS rows or more is
split into parts by the email's hash, each part an arq job of its own with its own lease; real
`python -m gateway` and `python -m worker` processes, one of them SIGKILLed in the middle."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymysql
import pytest

from shared.config import Settings
from shared.imports.options import ImportOptions
from shared.imports.parts import part_of
from tests.conftest import truncate_all
from tests.support.procs import Service, free_port, get_json, service_env, upload, wait_http_ready, wait_job
from tests.support.workbooks import HEADER, csv_bytes, customer_row
from worker.pipeline.messages import ParsedBatch
from worker.pipeline.source import RowSource, SourceParams

EMAIL = HEADER.index("email")
COUNTERS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_invalid")


def file_with_duplicates(n: int) -> tuple[list[list[Any]], dict[str, int], dict[str, list[Any]]]:
    """n customers, then for every 10th of them the same row again (unchanged), for every 10th + 5
    a changed row (updated) and then that change once more (unchanged), and every 50th row with a
    broken email (invalid). Returns the rows, the counters one worker gives, and the last values
    each changed email must hold."""
    rows = [customer_row(i) for i in range(n)]
    for i in range(0, n, 50):
        rows[i] = [*rows[i][:EMAIL], f"broken-{i}", *rows[i][EMAIL + 1 :]]
    last: dict[str, list[Any]] = {}
    extra: list[list[Any]] = []
    for i in range(1, n, 10):
        if i % 50:
            extra.append(list(rows[i]))
    for i in range(5, n, 10):
        if i % 50:
            changed = [*rows[i][:4], "York", *rows[i][5:]]
            extra += [changed, list(changed)]
            last[changed[EMAIL]] = changed
    invalid = len(range(0, n, 50))
    updated = len(last)
    unchanged = len(extra) - 2 * updated + updated  # the repeats of a row, and each change's repeat
    expected = {
        "rows_read": n + len(extra),
        "rows_inserted": n - invalid,
        "rows_updated": updated,
        "rows_unchanged": unchanged,
        "rows_invalid": invalid,
    }
    return rows + extra, expected, last


def test_every_row_falls_in_exactly_one_part_and_an_email_always_in_the_same(tmp_path: Path) -> None:
    rows, expected, _ = file_with_duplicates(600)
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(rows))
    part_of_email: dict[str, int] = {}
    totals = {"rows_read": 0, "rows_invalid": 0, "valid": 0}
    for part in range(3):
        params = SourceParams(path, "csv", ImportOptions(), 1 << 30, 100, 0, part=part, parts=3)
        for message in RowSource(params).messages():
            if isinstance(message, ParsedBatch):
                assert message.staged is not None
                for email in message.staged.emails:
                    assert part_of_email.setdefault(email, part) == part, email
                totals["rows_read"] += message.rows_read
                totals["rows_invalid"] += message.invalid
                totals["valid"] += len(message.staged)
    assert len(part_of_email) == expected["rows_inserted"]
    assert totals == {
        "rows_read": expected["rows_read"],
        "rows_invalid": expected["rows_invalid"],
        "valid": expected["rows_read"] - expected["rows_invalid"],
    }
    assert len(set(part_of_email.values())) == 3  # every part has a share
    # Stable across processes (CRC-32, not Python's salted hash), and blank emails spread by row.
    assert part_of(["x", "Person1@Example.com "], 1, 7, 4) == part_of(["y", "person1@example.com"], 1, 9, 4)
    assert {part_of(["", ""], 1, row, 3) for row in range(3)} == {0, 1, 2}


def _customer(settings: Settings, email: str) -> dict[str, Any]:
    m = settings.mysql
    conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password, database=m.database)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT * FROM customers WHERE email = %s", (email,))
            return dict(cur.fetchone() or {})
    finally:
        conn.close()


@pytest.fixture
def services(tmp_path: Path) -> Any:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def start_gateway(
    settings: Settings, tmp_path: Path, services: list[Service], **env: Any
) -> tuple[str, dict[str, str]]:
    """Empty tables, a real gateway on a free port; (its base URL, the env its workers get)."""
    truncate_all(settings)
    port = free_port()
    environment = service_env(settings, PORT=port, **env)
    services.append(Service("gateway", environment, tmp_path, "gateway"))
    base = f"http://127.0.0.1:{port}"
    wait_http_ready(base, services[0])
    return base, environment


def test_a_big_file_is_split_over_workers_and_counts_exactly_as_one_worker(
    settings: Settings, pool: object, tmp_path: Path, services: list[Service]
) -> None:
    base, env = start_gateway(
        replace(settings, import_batch_size=300),
        tmp_path,
        services,
        FANOUT_MIN_ROWS=3000,
        FANOUT_PARTS=3,
        WORKER_CONCURRENCY=2,
    )
    services += [Service("worker", env, tmp_path, f"worker{n}") for n in range(2)]
    rows, expected, last = file_with_duplicates(4000)

    status, body = upload(base, "big.csv", csv_bytes(rows))
    assert status == 202, body
    done = wait_job(base, body["job_id"], timeout=120)
    logs = "\n".join(s.output()[-3000:] for s in services)
    assert done["status"] == "completed", logs
    assert {c: done[c] for c in COUNTERS} == expected, done
    parts = done["parts"]
    assert [p["part"] for p in parts] == [0, 1, 2] and {p["status"] for p in parts} == {"completed"}, parts
    assert sum(p["rows"] for p in parts) == done["rows_read"]
    for counter in ("rows_inserted", "rows_updated", "rows_unchanged", "rows_invalid"):
        assert sum(p[counter] for p in parts) == done[counter]
    assert all(p["rows"] > 0 and p["worker"] for p in parts), parts
    # The last row of an email is what is stored, as with one worker.
    for email, values in list(last.items())[:20]:
        assert _customer(settings, email)["city"] == values[HEADER.index("city")]
    _, errors = get_json(f"{base}/jobs/{body['job_id']}/errors?limit=500")
    assert len(errors["items"]) == expected["rows_invalid"] and errors["rows_invalid"] == expected["rows_invalid"]

    # The same file again: every valid row is unchanged, still counted exactly across the parts.
    status, again = upload(base, "big.csv", csv_bytes(rows))
    assert status == 202
    second = wait_job(base, again["job_id"], timeout=120)
    assert second["status"] == "completed" and len(second["parts"]) == 3
    valid = expected["rows_read"] - expected["rows_invalid"]
    assert {c: second[c] for c in COUNTERS} == {
        "rows_read": expected["rows_read"],
        "rows_inserted": 0,
        # A changed email's first row undoes the change, its next row makes it again.
        "rows_updated": 2 * expected["rows_updated"],
        "rows_unchanged": valid - 2 * expected["rows_updated"],
        "rows_invalid": expected["rows_invalid"],
    }, second


def test_a_small_file_or_a_dry_run_is_not_split(
    settings: Settings, pool: object, tmp_path: Path, services: list[Service]
) -> None:
    base, env = start_gateway(settings, tmp_path, services, FANOUT_MIN_ROWS=3000, FANOUT_PARTS=3)
    services.append(Service("worker", env, tmp_path, "worker"))
    rows, expected, _ = file_with_duplicates(1000)
    status, small = upload(base, "small.csv", csv_bytes(rows))
    assert status == 202
    rows, expected_big, _ = file_with_duplicates(4000)
    status, dry = upload(base, "big.csv", csv_bytes(rows), "?dry_run=true")
    assert status == 202
    for job_id, counts in ((small["job_id"], expected), (dry["job_id"], None)):
        done = wait_job(base, job_id, timeout=120)
        assert done["status"] == "completed" and done["parts"] == [], done
        if counts is not None:
            assert {c: done[c] for c in COUNTERS} == counts
    assert done["rows_read"] == expected_big["rows_read"]


def test_a_part_whose_worker_is_killed_is_resumed_and_the_counters_stay_exact(
    settings: Settings, pool: object, tmp_path: Path, services: list[Service]
) -> None:
    base, env = start_gateway(
        replace(settings, import_batch_size=200, job_lease_s=3, sweep_interval_s=1),
        tmp_path,
        services,
        FANOUT_MIN_ROWS=3000,
        FANOUT_PARTS=2,
        WORKER_CONCURRENCY=2,
    )
    doomed = Service("worker", env, tmp_path, "doomed")
    services.append(doomed)
    rows, expected, _ = file_with_duplicates(12000)
    status, body = upload(base, "big.csv", csv_bytes(rows))
    assert status == 202
    deadline = time.monotonic() + 60
    while True:
        _, doc = get_json(f"{base}/jobs/{body['job_id']}")
        if doc["parts"] and any(p["rows"] > 0 for p in doc["parts"]) and doc["rows_read"] < expected["rows_read"] // 2:
            break
        assert doc["status"] not in ("completed", "failed") and time.monotonic() < deadline, doc
        time.sleep(0.05)
    doomed.signal(signal.SIGKILL)
    doomed.proc.wait(10)
    services.append(Service("worker", env, tmp_path, "survivor"))
    done = wait_job(base, body["job_id"], timeout=120)
    logs = "\n".join(s.output()[-3000:] for s in services)
    assert done["status"] == "completed", logs
    assert {c: done[c] for c in COUNTERS} == expected, done
    assert sum(p["attempts"] for p in done["parts"]) > len(done["parts"]), done["parts"]  # one was resumed
    assert "survivor" in "".join(s.name for s in services)

"""The CLI's `changes`, `revert`, `cancel`, `customers list|get|history` and the upload's import modes, run as
a real subprocess against real `python -m gateway` / `python -m worker` processes, MariaDB and Redis."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.support.workbooks import HEADER, csv_bytes
from tests.system.test_cli import Gateway, gateway, run

pytestmark = pytest.mark.e2e
__all__ = ["gateway"]  # the module's gateway and worker, shared with test_cli's fixture

JOB_ID = re.compile(r"job ([0-9a-f-]{36})")


def person(i: int, city: str, domain: str) -> list[str]:
    return [f"First{i}", f"Last{i}", "", "", city, "", "", "", f"p{i}@{domain}", ""]


def upload(gateway: Gateway, tmp_path: Path, name: str, rows: list[list[str]], *options: str) -> str:
    path = tmp_path / name
    path.write_bytes(csv_bytes(rows, HEADER))
    result = run("--url", gateway.base, "upload", str(path), "--wait", *options)
    assert result.returncode == 0, result.stdout + result.stderr
    found = JOB_ID.search(result.stdout)
    assert found, result.stdout
    return found.group(1)


def customer_ids(gateway: Gateway, domain: str) -> dict[str, int]:
    result = run("--url", gateway.base, "customers", "list", "--q", domain, "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return {doc["email"]: doc["id"] for doc in map(json.loads, result.stdout.splitlines())}


def test_customers_list_sorts_and_counts(gateway: Gateway, tmp_path: Path) -> None:
    domain = "list.example"
    upload(gateway, tmp_path, "list.csv", [person(i, city, domain) for i, city in enumerate(["b", "c", "a"])])
    result = run("--url", gateway.base, "customers", "list", "--q", domain, "--sort", "-city")
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    header = lines[0]
    assert [row[header.index("city")] for row in lines[1:]] == ["c", "b", "a"]
    assert "3 of 3 customers" in result.stderr
    bad = run("--url", gateway.base, "customers", "list", "--sort", "password")
    assert bad.returncode == 1 and "sort" in bad.stderr


def test_upload_modes_changes_history_and_revert(gateway: Gateway, tmp_path: Path) -> None:
    domain = "undo.example"
    upload(gateway, tmp_path, "first.csv", [person(i, "Leeds", domain) for i in range(3)])
    ids = customer_ids(gateway, domain)
    # An update-only import: p0 moves to Paris, p9 is new and skipped, p1's empty city is kept.
    rows = [person(0, "Paris", domain), person(1, "", domain), person(9, "Rome", domain)]
    job_id = upload(gateway, tmp_path, "second.csv", rows, "--mode", "update")
    shown = run("--url", gateway.base, "job", job_id)
    assert re.search(r"rows_skipped\s+1", shown.stdout), shown.stdout
    assert re.search(r"rows_updated\s+1", shown.stdout) and re.search(r"rows_unchanged\s+1", shown.stdout)
    assert "p9@" + domain not in customer_ids(gateway, domain)

    changes = run("--url", gateway.base, "changes", job_id)
    assert changes.returncode == 0, changes.stderr
    items = [json.loads(line) for line in changes.stdout.splitlines()]
    assert [(item["customer_id"], item["action"]) for item in items] == [(ids[f"p0@{domain}"], "updated")]
    assert items[0]["changes"]["city"] == ["Leeds", "Paris"]
    out = tmp_path / "changes.csv"
    written = run("--url", gateway.base, "changes", job_id, "-o", str(out))
    assert written.returncode == 0, written.stderr
    table = list(csv.reader(io.StringIO(out.read_text("utf-8-sig"))))
    assert len(table) == 2 and "Paris" in ",".join(table[1])

    history = run("--url", gateway.base, "customers", "history", str(ids[f"p0@{domain}"]))
    assert history.returncode == 0, history.stderr
    assert "updated" in history.stdout and "city: Leeds -> Paris" in history.stdout
    assert "created" in history.stdout

    reverted = run("--url", gateway.base, "revert", job_id, "--wait")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    got = run("--url", gateway.base, "customers", "get", str(ids[f"p0@{domain}"]))
    assert json.loads(got.stdout)["city"] == "Leeds"
    again = run("--url", gateway.base, "revert", job_id)
    assert again.returncode == 1 and "409" in again.stderr


def test_cancel_a_finished_job_is_a_409_and_an_unknown_customer_a_404(gateway: Gateway, tmp_path: Path) -> None:
    job_id = upload(gateway, tmp_path, "done.csv", [person(1, "Leeds", "cancel.example")])
    result = run("--url", gateway.base, "cancel", job_id)
    assert result.returncode == 1 and "409" in result.stderr
    missing = run("--url", gateway.base, "customers", "get", "999999999")
    assert missing.returncode == 1 and "404" in missing.stderr
    history = run("--url", gateway.base, "customers", "history", "999999999")
    assert history.returncode == 1 and "404" in history.stderr

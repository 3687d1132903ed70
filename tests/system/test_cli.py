"""The `customer-import` command-line client, run as a real subprocess against a real gateway and worker
(`python -m gateway`, `python -m worker`), real MariaDB and Redis."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest

from shared.config import Settings
from tests.conftest import REPO
from tests.support.procs import Service, free_port, service_env, wait_http_ready
from tests.support.workbooks import HEADER, csv_bytes, customers, write_two_sheets

pytestmark = pytest.mark.e2e

ANSI = re.compile(r"\x1b\[")
SCRIPT = Path(sys.executable).parent / "customer-import"
# The installed console script (pip install -e .), else the module itself.
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "client.cli"]


@dataclass
class Gateway:
    base: str
    log_dir: Path


@pytest.fixture(scope="module")
def gateway(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway and one worker for the module (its tests use customers of their own)."""
    log_dir = tmp_path_factory.mktemp("cli-logs")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(settings, PORT=port)
    services = [Service("gateway", env, log_dir, "gateway")]
    try:
        wait_http_ready(base, services[0])
        services.append(Service("worker", env, log_dir, "worker"))
        yield Gateway(base, log_dir)
    finally:
        for service in services:
            service.stop()


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUSTOMER_IMPORT_URL", "CUSTOMER_IMPORT_KEY", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    }
    env.update({"PYTHONIOENCODING": "utf-8", "COLUMNS": "120", **extra})
    return env


def run(*args: str, cwd: Path | None = None, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """The command with its output piped (not a terminal)."""
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd or REPO,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def counter(output: str, name: str) -> int:
    match = re.search(rf"^\s*{name}\s+([\d,]+)\s*$", output, re.MULTILINE)
    assert match, f"no {name} in:\n{output}"
    return int(match.group(1).replace(",", ""))


def job_id_of(output: str) -> str:
    match = re.search(r"^job ([0-9a-f-]{36}) ", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.fixture(scope="module")
def invalid_job(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A completed job with two invalid rows of its 20 (rows 4 and 7 as Excel numbers them)."""
    rows = customers(20, start=1000, domain="invalid.example")
    rows[2][8] = "not-an-email"
    rows[5][0] = "F" * 101  # a first name too long (a row without a name is valid: only the email is required)
    path = write(tmp_path_factory.mktemp("cli") / "invalid.csv", csv_bytes(rows))
    done = run("--url", gateway.base, "upload", str(path), "--wait")
    # Completed, but rows were rejected: its own exit status (3), so that a script can tell (0 is for
    # "every row imported", 1 for a failed job).
    assert done.returncode == 3, done.stdout + done.stderr
    return job_id_of(done.stdout), done.stdout


def test_upload_wait_piped_prints_plain_lines_and_counters(gateway: Gateway, tmp_path: Path) -> None:
    path = write(tmp_path / "customers.csv", csv_bytes(customers(50, domain="wait.example")))
    done = run("--url", gateway.base, "upload", str(path), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert not ANSI.search(out + done.stderr), repr(out)
    assert re.search(r"^completed 50/50 rows$", out, re.MULTILINE), out
    assert (counter(out, "rows_read"), counter(out, "rows_inserted"), counter(out, "rows_invalid")) == (50, 50, 0)
    assert (counter(out, "rows_updated"), counter(out, "rows_unchanged")) == (0, 0)
    # A dry run of the same file: every row unchanged, nothing written.
    again = run("--url", gateway.base, "upload", str(path), "--wait", "--dry-run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "dry run" in again.stdout
    assert (counter(again.stdout, "rows_unchanged"), counter(again.stdout, "rows_inserted")) == (50, 0)


def test_upload_without_wait_prints_the_job_id(gateway: Gateway, tmp_path: Path) -> None:
    path = write(tmp_path / "nowait.csv", csv_bytes(customers(3, domain="nowait.example")))
    done = run("upload", str(path), CUSTOMER_IMPORT_URL=gateway.base)  # the URL from the environment
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)
    assert "nowait.csv" in done.stdout
    follow = run("--url", gateway.base, "job", job_id, "--wait")
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert counter(follow.stdout, "rows_read") == 3


def test_invalid_rows_complete_and_the_first_errors_are_printed(invalid_job: tuple[str, str]) -> None:
    _job_id, out = invalid_job
    assert (counter(out, "rows_read"), counter(out, "rows_inserted"), counter(out, "rows_invalid")) == (20, 18, 2)
    assert "row errors" in out
    assert re.search(r"row 4, email: .*email.*\('not-an-email'\)", out, re.IGNORECASE), out  # and the value
    assert re.search(r"row 7, (first_name|last_name): ", out), out


def test_options_are_sent_as_form_fields(gateway: Gateway, tmp_path: Path) -> None:
    # No header row, columns in another order: only a mapping by letter with header_row 0 can read it.
    rows = [[*row[8:], *row[:8]] for row in customers(4, domain="mapped.example")]  # email, web, first_name, ...
    path = write(tmp_path / "mapped.csv", csv_bytes(rows, header=None))
    letters = "CDEFGHIJAB"
    mapping = json.dumps({field: letters[i] for i, field in enumerate(HEADER)})
    args = ["--url", gateway.base, "upload", str(path), "--wait", "--header-row", "0", "--mapping", mapping]
    done = run(*args, "--encoding", "utf-8")
    assert done.returncode == 0, done.stdout + done.stderr
    assert counter(done.stdout, "rows_inserted") == 4
    job = json.loads(run("--url", gateway.base, "job", job_id_of(done.stdout), "--json").stdout)
    assert job["header_row"] == 0 and job["mapping"]["email"] == "A" and job["encoding"] == "utf-8"


def test_sheet_picks_the_worksheet(gateway: Gateway, tmp_path: Path) -> None:
    path = write_two_sheets(tmp_path / "two-sheets.xlsx", customers(3, domain="sheet.example"))
    done = run("--url", gateway.base, "upload", str(path), "--wait", "--sheet", "People")
    assert done.returncode == 0, done.stdout + done.stderr
    assert counter(done.stdout, "rows_inserted") == 3
    job = json.loads(run("--url", gateway.base, "job", job_id_of(done.stdout), "--json").stdout)
    assert job["sheet"] == "People"
    done = run("--url", gateway.base, "upload", str(path), "--sheet", "Nowhere")
    assert done.returncode == 1 and "Nowhere" in done.stdout + done.stderr


def test_missing_columns_exit_1_naming_them(gateway: Gateway, tmp_path: Path) -> None:
    path = write(tmp_path / "short.csv", csv_bytes([r[:6] for r in customers(3)], header=HEADER[:6]))
    done = run("--url", gateway.base, "upload", str(path), "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "422" in done.stderr
    assert re.search(r"missing columns: email$", done.stderr, re.M), done.stderr  # the only one a file needs


def test_failed_job_exits_1_with_its_error(gateway: Gateway, tmp_path: Path) -> None:
    # A quote opened after the first rows (the upload's header check passes) and never closed.
    content = csv_bytes(customers(300, start=5000, domain="failed.example"))
    content += b'"First,Last,Co,1 Road,Leeds,WY,LS1,0113,open@failed.example,web\n'
    content += csv_bytes(customers(3, start=6000, domain="failed.example"), header=None)
    done = run("--url", gateway.base, "upload", str(write(tmp_path / "broken.csv", content)), "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^failed ", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^error: .*quote", done.stdout, re.MULTILINE), done.stdout


def test_usage_errors_exit_2(gateway: Gateway, tmp_path: Path) -> None:
    path = write(tmp_path / "ok.csv", csv_bytes(customers(1)))
    bad_mapping = run("--url", gateway.base, "upload", str(path), "--mapping", "{bad")
    assert bad_mapping.returncode == 2, bad_mapping.stderr
    assert "--mapping" in bad_mapping.stderr and "JSON" in bad_mapping.stderr
    not_object = run("--url", gateway.base, "upload", str(path), "--mapping", "[1]")
    assert not_object.returncode == 2, not_object.stderr
    missing = run("--url", gateway.base, "upload", str(tmp_path / "nowhere.csv"))
    assert missing.returncode == 2 and "nowhere.csv" in missing.stderr, missing.stderr
    wrong_suffix = run("--url", gateway.base, "template", "-o", str(tmp_path / "t.txt"))
    assert wrong_suffix.returncode == 2 and ".csv or .xlsx" in wrong_suffix.stderr, wrong_suffix.stderr
    no_command = run("--url", gateway.base, "frobnicate")
    assert no_command.returncode == 2


def test_the_exit_statuses_are_in_the_help_and_the_docs() -> None:
    helped = run("--help")
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    assert "3 the job completed but rows were rejected" in text and "1 the job failed" in text, text
    docs = " ".join((Path(__file__).parents[2] / "docs" / "cli.md").read_text().split())
    assert "3 when it completed but rows were rejected" in docs


def test_jobs_and_job(gateway: Gateway, invalid_job: tuple[str, str]) -> None:
    job_id, _ = invalid_job
    listing = run("--url", gateway.base, "jobs", "--limit", "50")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    header = lines[0].split("\t")
    assert header == [
        "id",
        "status",
        "filename",
        "read",
        "inserted",
        "updated",
        "unchanged",
        "skipped",
        "invalid",
        "created_at",
    ]
    mine = dict(zip(header, next(line.split("\t") for line in lines if line.startswith(job_id)), strict=True))
    counters = ["status", "filename", "read", "inserted", "updated", "unchanged", "skipped", "invalid"]
    assert [mine[name] for name in counters] == ["completed", "invalid.csv", "20", "18", "0", "0", "0", "2"], mine
    assert re.match(r"\d{4}-\d\d-\d\dT", mine["created_at"])
    one = run("--url", gateway.base, "jobs", "--limit", "1")
    assert len(one.stdout.splitlines()) == 2

    summary = run("--url", gateway.base, "job", job_id)
    assert summary.returncode == 0, summary.stderr  # showing a job is not following it
    followed = run("--url", gateway.base, "job", job_id, "--wait")
    assert followed.returncode == 3, followed.stdout + followed.stderr
    assert f"job {job_id} completed" in summary.stdout and counter(summary.stdout, "rows_invalid") == 2
    doc = json.loads(run("--url", gateway.base, "job", job_id, "--json").stdout)
    assert doc["job_id"] == job_id and doc["rows_read"] == 20

    unknown = run("--url", gateway.base, "job", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1
    assert "404 Not Found" in unknown.stderr and "No import job" in unknown.stderr


def test_errors_and_rejected_downloads(gateway: Gateway, invalid_job: tuple[str, str], tmp_path: Path) -> None:
    job_id, _ = invalid_job
    done = run("--url", gateway.base, "errors", job_id, "-o", "x.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO((tmp_path / "x.csv").read_text())))
    assert rows[0] == ["row", "column", "field", "value", "message"]
    assert {r[0] for r in rows[1:]} == {"4", "7"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    as_json = run("--url", gateway.base, "errors", job_id)
    items = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {item["row"] for item in items} == {4, 7} and len(items) == len(rows) - 1

    done = run("--url", gateway.base, "rejected", job_id, "-o", "r.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rejected = list(csv.reader(io.StringIO((tmp_path / "r.csv").read_text(encoding="utf-8-sig"))))
    assert rejected[0] == [*HEADER, "errors"] and len(rejected) == 3
    assert "not-an-email" in rejected[1]

    done = run("--url", gateway.base, "rejected", job_id, "-o", str(tmp_path / "r.xlsx"))
    assert done.returncode == 0, done.stderr
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert sheet is not None and sheet.max_row == 3


def test_template(gateway: Gateway, tmp_path: Path) -> None:
    done = run("--url", gateway.base, "template", "-o", "t.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header = next(csv.reader(io.StringIO((tmp_path / "t.csv").read_text(encoding="utf-8-sig"))))
    assert set(HEADER) <= set(header)
    done = run("--url", gateway.base, "template", "-o", str(tmp_path / "t.xlsx"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.xlsx").read_bytes()[:2] == b"PK"


def test_export(gateway: Gateway, invalid_job: tuple[str, str], tmp_path: Path) -> None:
    done = run("--url", gateway.base, "export", "-o", "c.csv", "--q", "invalid.example", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "c.csv").read_text(encoding="utf-8-sig"))))
    assert len(rows) == 18 and all(r["email"].endswith("@invalid.example") for r in rows)


def test_wrong_url_exits_1_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = run("--url", url, "jobs")
    assert done.returncode == 1
    assert f"{url}/jobs" in done.stderr and "cannot reach" in done.stderr
    not_a_url = run("--url", "localhost:8080", "jobs")
    assert not_a_url.returncode == 2


def test_api_key_is_sent_as_bearer_token(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = Service("gateway", service_env(settings, PORT=port, API_KEYS="k1,k2"), tmp_path, "gateway-keys")
    try:
        wait_http_ready(base, gateway)
        refused = run("--url", base, "jobs")
        assert refused.returncode == 1 and "401" in refused.stderr and "--key" in refused.stderr
        assert run("--url", base, "--key", "k2", "jobs").returncode == 0
        assert run("--url", base, "jobs", CUSTOMER_IMPORT_KEY="k1").returncode == 0
    finally:
        gateway.stop()


def run_in_terminal(*args: str, timeout: float = 60) -> tuple[int, str]:
    """The command with a pseudo-terminal as its stdout and stderr."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*COMMAND, *args], cwd=REPO, env=cli_env(TERM="xterm-256color"), stdin=subprocess.DEVNULL,
        stdout=secondary, stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # EIO: the child has gone and closed its end
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        return proc.wait(10), b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()


def test_a_terminal_gets_a_progress_bar(gateway: Gateway, tmp_path: Path) -> None:
    path = write(tmp_path / "bar.csv", csv_bytes(customers(3000, start=20000, domain="bar.example")))
    code, out = run_in_terminal("--url", gateway.base, "upload", str(path), "--wait")
    assert code == 0, out
    assert "rows/s" in out and "━" in out, repr(out)
    assert "3000/3000" in out  # rich's MofN column at the end
    assert ANSI.search(out)
    assert counter(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out), "rows_inserted") == 3000


def test_the_fields_are_the_services(gateway: Gateway) -> None:
    """`fields` prints what the service declares (GET /fields), in its order, the required ones marked."""
    from shared.customers.fields import FIELDS

    shown = run("--url", gateway.base, "fields")
    assert shown.returncode == 0, shown.stderr
    names = re.findall(r"^\s+(\w+)\s", shown.stdout, re.MULTILINE)
    assert names[: len(FIELDS)] == [field.name for field in FIELDS]
    assert re.search(r"^\s+email\s+Email \(required\)", shown.stdout, re.MULTILINE), shown.stdout


def test_the_choices_are_the_services(gateway: Gateway, tmp_path: Path) -> None:
    """`options` prints the choices the service's API document declares; a choice it does not offer is
    refused before the file is sent."""
    from shared.imports.options import MODE_OPTIONS

    listed = run("--url", gateway.base, "options")
    assert listed.returncode == 0, listed.stderr
    for name, choices in MODE_OPTIONS.items():
        assert f"--{name.replace('_', '-')}:" in listed.stdout
        for value, (label, _) in choices.items():
            assert re.search(rf"^\s+{value}\s+{re.escape(label)}", listed.stdout, re.MULTILINE), (value, listed.stdout)
    path = write(tmp_path / "modes.csv", csv_bytes(customers(1, domain="modes.example")))
    refused = run("--url", gateway.base, "upload", str(path), "--mode", "merge")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--mode" in refused.stderr and "upsert, insert, update" in refused.stderr
    taken = run("--url", gateway.base, "upload", str(path), "--wait", "--mode", "insert")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    job = json.loads(run("--url", gateway.base, "job", job_id_of(taken.stdout), "--json").stdout)
    assert job["mode"] == "insert"

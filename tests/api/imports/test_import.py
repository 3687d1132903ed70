"""The import job, run by a real arq worker (burst mode) against the real MariaDB and Redis."""

from __future__ import annotations

import json
from pathlib import Path

import aiomysql
import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.infra.db import connection
from shared.spreadsheet.readers import Rejection, UploadRejected
from tests.conftest import DATA
from tests.support.api import stored
from tests.support.db import scalar
from tests.support.jobs import import_file, job_service, submit
from tests.support.workbooks import HEADER, csv_bytes, customers, write_xlsx

pytestmark = pytest.mark.usefixtures("clean")
ODD = DATA / "odd-xlsx"


def assert_exact(job: dict) -> None:
    assert job["rows_read"] == job["rows_inserted"] + job["rows_updated"] + job["rows_unchanged"] + job["rows_invalid"]


def counters(job: dict) -> tuple[int, int, int, int, int]:
    return (job["rows_read"], job["rows_inserted"], job["rows_updated"], job["rows_unchanged"], job["rows_invalid"])


async def test_sample_workbook_500_inserted_1500_unchanged(
    settings: Settings, pool: aiomysql.Pool, redis: Redis
) -> None:
    data = (DATA / "Sample_Employee_data_xlsx.xlsx").read_bytes()
    job = await import_file(settings, pool, "Sample_Employee_data_xlsx.xlsx", data)
    assert job["status"] == "completed", job
    # Rows i and i+500 are the same: the repeats change nothing, so they are unchanged, not updated.
    assert counters(job) == (2000, 500, 0, 1500, 0)
    assert job["reader"] == "xlsx-fast"
    assert job["progress"]["rows_total_estimate"] == 2000
    assert await scalar(pool, "SELECT COUNT(*) FROM customers") == 500
    # Warmed into Redis with the TTL, as the same document the API serves.
    customer_id = await scalar(pool, "SELECT id FROM customers WHERE email = %s", "atomkiewicz@hotmail.com")
    key = f"{settings.redis_prefix}{{customer:{customer_id}}}"
    cached = json.loads(await redis.get(key))
    assert cached["email"] == "atomkiewicz@hotmail.com" and cached["phone"] == "01944-369967"
    assert 0 < await redis.ttl(key) <= settings.cache_ttl_s
    versions = await scalar(pool, "SELECT MAX(version) FROM customers")
    stamp = await scalar(pool, "SELECT MAX(updated_at) FROM customers")
    # Importing again changes nothing: every row unchanged, no version bump, no updated_at change.
    again = await import_file(settings, pool, "again.xlsx", data)
    assert counters(again) == (2000, 0, 0, 2000, 0)
    assert await scalar(pool, "SELECT MAX(version) FROM customers") == versions == 1
    assert await scalar(pool, "SELECT MAX(updated_at) FROM customers") == stamp


async def test_csv_with_bom_aliases_and_invalid_rows(settings: Settings, pool: aiomysql.Pool) -> None:
    header = [
        "First Name",
        "Last Name",
        "Company",
        "Address",
        "City",
        "County",
        "Postcode",
        "Phone1",
        "Phone2",
        "E-mail",
        "Web",
        "Notes",
    ]
    rows = [[*r[:8], "x", *r[8:], "n"] for r in customers(20)]
    rows[2][9] = "not-an-email"  # row 4 as a spreadsheet shows it (header is row 1)
    rows[5][0] = rows[5][1] = ""  # no name at all: row 7
    rows[7][2] = "C" * 101  # company too long: row 9
    rows.insert(10, [""] * 12)  # an empty row is skipped and not counted
    rows.append(list(rows[0]))  # a duplicate email in the same file, same values: unchanged
    rows[-1][9] = rows[-1][9].upper()  # emails match case-insensitively
    rows.append(list(rows[1]))  # and one with a value changed: updated
    rows[-1][4] = "Elsewhere"
    job = await import_file(settings, pool, "people.csv", csv_bytes(rows, header, bom=True))
    assert job["status"] == "completed", job
    # Row 7 has no name: a customer needs only an email (DESIGN "Spreadsheet rules").
    assert counters(job) == (22, 18, 1, 1, 2)
    assert_exact(job)
    assert job["warnings"][0] == "ignored unknown column(s): Phone2, Notes"
    # Errors in the user's words: the file's column, the field, the value, a plain message.
    errors = {(e["row"], e["column"], e["field"], e["value"]) for e in job["errors"]}
    assert errors == {(4, "E-mail", "email", "not-an-email"), (9, "Company", "company_name", "C" * 100)}
    messages = {e["row"]: e["message"] for e in job["errors"]}
    assert "email" in messages[4].lower()
    assert messages[9] == "Longer than 100 characters"
    assert await scalar(pool, "SELECT COUNT(*) FROM customers") == 18
    assert await scalar(pool, "SELECT phone FROM customers WHERE email = 'person0@example.com'") == "0113-000000"


async def test_missing_columns_are_refused_at_upload_naming_them(settings: Settings, pool: aiomysql.Pool) -> None:
    data = b"Vorname,Nachname,Firma\nAda,Lovelace,Analytical Engines\n"  # no email column
    before = stored(settings)
    with pytest.raises(UploadRejected) as info:
        await submit(settings, pool, "people.csv", data)
    assert info.value.reason == Rejection.UNPROCESSABLE
    assert "missing required column(s)" in info.value.detail and "email" in info.value.detail
    assert "first non-empty row must be the header" in info.value.detail
    assert info.value.extra["missing_columns"] == ["email"]
    # The header found is quoted.
    assert info.value.extra["header"] == ["Vorname", "Nachname", "Firma"]
    assert await scalar(pool, "SELECT COUNT(*) FROM import_jobs") == 0
    assert stored(settings) == before


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("calamine__strict_iso_paths.xlsx", "missing required column(s)"),
        ("calamine__inlineStr_cdata.xlsx", "missing required column(s)"),
        ("calamine__has_x000D_.xlsx", "missing required column(s)"),
        ("calamine__empty_shared_string_value.xlsx", "missing required column(s)"),
        ("calamine__empty_sheet.xlsx", "sheet is empty"),
    ],
)
async def test_odd_workbooks_are_refused_at_upload_with_a_message(
    settings: Settings, pool: aiomysql.Pool, name: str, fragment: str
) -> None:
    with pytest.raises(UploadRejected) as info:
        await submit(settings, pool, name, (ODD / name).read_bytes())
    assert info.value.reason == Rejection.UNPROCESSABLE
    assert fragment in info.value.detail


async def test_a_header_only_file_completes_with_a_no_data_warning(settings: Settings, pool: aiomysql.Pool) -> None:
    job = await import_file(settings, pool, "header.csv", csv_bytes([]))
    assert job["status"] == "completed", job
    assert counters(job) == (0, 0, 0, 0, 0)
    assert any("no data rows" in w for w in job["warnings"])


async def test_csv_rows_of_the_wrong_width_say_so(settings: Settings, pool: aiomysql.Pool) -> None:
    rows = [list(r) for r in customers(4)]
    rows[1] = rows[1][:7]  # short: row 3
    rows[2] = [*rows[2][:3], "extra", *rows[2][3:]]  # long: row 4
    rows[3] = [*rows[3], "", ""]  # trailing empty values are harmless: row 5
    data = "\n".join(",".join(r) for r in [HEADER, *rows]).encode()
    job = await import_file(settings, pool, "ragged.csv", data)
    assert job["status"] == "completed", job
    assert counters(job) == (4, 2, 0, 0, 2)
    messages = {e["row"]: e["message"] for e in job["errors"]}
    assert set(messages) == {3, 4}
    assert "has 7 values but the header has 10 columns" in messages[3]
    assert "has 11 values but the header has 10 columns" in messages[4]
    assert "Email is required" not in " ".join(messages.values())


async def test_an_unclosed_quote_is_named_with_its_row(settings: Settings, pool: aiomysql.Pool) -> None:
    def quoted_at(index: int, total: int) -> bytes:
        rows = [",".join(r) for r in customers(total)]
        rows[index] = rows[index].replace(",", ',"', 1)  # opens a quote it never closes
        return "\n".join([",".join(HEADER), *rows]).encode()

    # Within the first rows: the upload is refused at once.
    with pytest.raises(UploadRejected) as info:
        await submit(settings, pool, "quote.csv", quoted_at(3, 6))
    assert info.value.reason == Rejection.UNPROCESSABLE and "unclosed quote starting at row 5" in info.value.detail
    # Further down: the import fails naming the row, before the swallowed rows are imported.
    job = await import_file(settings, pool, "late-quote.csv", quoted_at(1500, 1600))
    assert job["status"] == "failed"
    assert "unclosed quote starting at row 1502" in job["error"]


async def test_every_problem_of_a_row_is_reported_at_once(settings: Settings, pool: aiomysql.Pool) -> None:
    rows = customers(3)
    rows[1][0] = "F" * 101  # a first name too long
    rows[1][8] = "not-an-email"  # and a bad email: row 3
    job = await import_file(settings, pool, "both.csv", csv_bytes(rows))
    assert {(e["row"], e["column"]) for e in job["errors"]} == {(3, "email"), (3, "first_name")}


async def test_xlsx_with_header_not_on_first_row(settings: Settings, pool: aiomysql.Pool, tmp_path: Path) -> None:
    rows = [[None] * 10, *([HEADER, *customers(5)])]
    path = write_xlsx(tmp_path / "late.xlsx", rows, header=None)
    job = await import_file(settings, pool, "late.xlsx", path.read_bytes())
    assert job["status"] == "completed", job
    assert job["rows_inserted"] == 5


async def test_dry_run_validates_without_writing(settings: Settings, pool: aiomysql.Pool) -> None:
    await import_file(settings, pool, "first.csv", csv_bytes(customers(10)))
    rows = customers(15)  # 10 exist, 5 new
    rows[12][8] = "bad"
    job = await import_file(settings, pool, "dry.csv", csv_bytes(rows), dry_run=True)
    assert job["status"] == "completed" and job["dry_run"] is True
    assert counters(job) == (15, 4, 0, 10, 1)
    assert await scalar(pool, "SELECT COUNT(*) FROM customers") == 10


async def test_row_errors_are_capped_but_counted_exactly(settings: Settings, pool: aiomysql.Pool) -> None:
    from dataclasses import replace

    capped = replace(settings, max_errors_per_job=7)
    rows = customers(40)
    for row in rows[:25]:
        row[8] = "broken"
    job = await import_file(capped, pool, "many-bad.csv", csv_bytes(rows))
    assert job["rows_invalid"] == 25 and job["rows_inserted"] == 15
    assert job["errors_stored"] == 7
    async with job_service(capped, pool) as jobs:
        page = await jobs.errors(job["job_id"], limit=None, cursor=None)
    assert len(page["items"]) == 7 and page["rows_invalid"] == 25


async def test_the_error_cap_counts_rows_not_messages(settings: Settings, pool: aiomysql.Pool) -> None:
    from dataclasses import replace

    capped = replace(settings, max_errors_per_job=10)
    rows = customers(30)
    for row in rows:  # three problems a row
        row[0] = "F" * 101
        row[8] = "broken"
        row[2] = "C" * 101
    job = await import_file(capped, pool, "three-each.csv", csv_bytes(rows))
    assert job["rows_invalid"] == 30
    async with job_service(capped, pool) as jobs:
        page = await jobs.errors(job["job_id"], limit=None, cursor=None)
    assert len({item["row"] for item in page["items"]}) == 10  # ten rows, every message of each
    assert len(page["items"]) == 30


async def test_without_local_infile_the_import_falls_back_to_multi_row_inserts(
    settings: Settings, pool: aiomysql.Pool, cache: object
) -> None:
    from shared.infra.db import create_pool, transaction
    from shared.infra.storage import UploadStore
    from worker.importer import ParsedBatch, WorkerDeps, _upsert

    refusing = await create_pool(settings.mysql, 2, local_infile=False)
    try:
        deps = WorkerDeps(settings, refusing, cache, UploadStore(settings.upload_dir))  # type: ignore[arg-type]
        rows = [tuple(r) for r in customers(3)]
        rows.append(tuple(customers(1)[0]))  # a duplicate email in the batch
        batch = ParsedBatch(valid=[(n, dict(zip(HEADER, r, strict=True))) for n, r in enumerate(rows, 2)]).prepare()
        latest = {data["email"]: data for _, data in batch.valid}
        async with transaction(refusing) as cur:
            outcomes, stamps = await _upsert(deps, cur, batch, latest)
        assert deps.bulk_load is False
        assert outcomes == (3, 0, 1)  # the repeated row changes nothing
        assert sorted(s[2] for s in stamps) == [1, 1, 1]
    finally:
        refusing.close()
        await refusing.wait_closed()
    assert await scalar(pool, "SELECT COUNT(*) FROM customers") == 3


@pytest.mark.parametrize("bulk", [True, False], ids=["load-data", "multi-row-insert"])
async def test_both_write_paths_give_the_same_result(
    settings: Settings, pool: aiomysql.Pool, redis: Redis, bulk: bool
) -> None:
    from dataclasses import replace

    rows = customers(1200)
    rows[10][3] = 'Tab\there, "quotes", back\\slash and\nnewline'
    rows.append(list(rows[5]))
    rows[-1][0] = "Changed"
    job = await import_file(replace(settings, import_bulk_load=bulk), pool, "paths.csv", csv_bytes(rows))
    assert (job["rows_inserted"], job["rows_updated"]) == (1200, 1)
    assert await scalar(pool, "SELECT address FROM customers WHERE email='person10@example.com'") == rows[10][3]
    assert await scalar(pool, "SELECT first_name FROM customers WHERE email='person5@example.com'") == "Changed"
    customer_id = await scalar(pool, "SELECT id FROM customers WHERE email='person5@example.com'")
    cached = json.loads(await redis.get(f"{settings.redis_prefix}{{customer:{customer_id}}}"))
    assert cached["first_name"] == "Changed" and cached["version"] == 2
    async with connection(pool) as conn, conn.cursor() as cur:
        from shared.customers import customer_repo

        assert cached == json.loads(json.dumps(await customer_repo.get(cur, int(customer_id))))


async def test_a_workbook_damaged_inside_fails_the_job_with_the_reason(
    settings: Settings, pool: aiomysql.Pool, tmp_path: Path
) -> None:
    import re
    import zipfile
    from dataclasses import replace

    source = DATA / "Sample_Employee_data_xlsx.xlsx"
    damaged = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                # Row 1500 points at a shared string that does not exist.
                data = re.sub(rb'(<c r="A1500"[^>]*><v>)\d+', rb"\g<1>99999999", data)
            dst.writestr(info.filename, data)
    # A 1 MB budget: enough for its shared strings; the compiled reader streams the sheet.
    job = await import_file(replace(settings, reader_memory_budget_mb=1), pool, "damaged.xlsx", damaged.read_bytes())
    assert job["status"] == "failed"
    assert job["reader"] == "xlsx-fast"
    assert "refers to a shared string the workbook does not have" in job["error"], job["error"]
    assert job["attempts"] == 1
    # The batches before the damage were committed, and the job says how far it got.
    assert job["rows_read"] == 1000

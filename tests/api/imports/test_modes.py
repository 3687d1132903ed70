"""Import modes (DESIGN "Jobs"): mode, blank_cells, match_on, the `version` column, repeated emails and
rows_skipped, through the gateway's /upload and a real arq worker against MariaDB and Redis."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from typing import Any

import aiohttp
import aiomysql
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from shared.config import Settings
from shared.infra.db import connection
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import HEADER, csv_bytes, customers

COUNTERS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_skipped", "rows_invalid")


def counters(job: dict[str, Any]) -> tuple[int, ...]:
    return tuple(job[name] for name in COUNTERS)


def assert_exact(job: dict[str, Any]) -> None:
    read, *outcomes = counters(job)
    assert read == sum(outcomes), job


async def upload(client: TestClient, rows: list[list[Any]], header: list[str] | None = HEADER, **options: Any) -> str:
    form = aiohttp.FormData()
    form.add_field("file", csv_bytes(rows, header), filename="people.csv", content_type="text/csv")
    for name, value in options.items():
        form.add_field(name, str(value).lower() if isinstance(value, bool) else str(value))
    response = await client.post("/upload", data=form)
    assert response.status == 202, await response.text()
    return str((await response.json())["job_id"])


async def run(
    client: TestClient, settings: Settings, rows: list[list[Any]], header: list[str] | None = HEADER, **options: Any
) -> dict[str, Any]:
    job_id = await upload(client, rows, header, **options)
    await run_burst_worker(settings)
    job: dict[str, Any] = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed", job
    assert_exact(job)
    return job


async def stored(pool: aiomysql.Pool) -> dict[str, dict[str, Any]]:
    """email → the stored row (id, version and the fields)."""
    async with connection(pool) as conn, conn.cursor(aiomysql.DictCursor) as cur:
        await cur.execute("SELECT id, version, " + ", ".join(HEADER) + " FROM customers")
        return {row["email"]: row for row in await cur.fetchall()}


async def export_rows(client: TestClient) -> tuple[list[str], list[list[str]]]:
    response = await client.get("/customers/export?format=csv")
    assert response.status == 200
    table = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    return table[0], table[1:]


def blanked(rows: list[list[Any]], column: str) -> list[list[Any]]:
    at = HEADER.index(column)
    return [[("" if i == at else value) for i, value in enumerate(row)] for row in rows]


# -- mode -------------------------------------------------------------------------------------------
async def test_insert_mode_skips_known_emails_and_never_changes_them(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(3))
    before = await stored(pool)
    changed = [[*row[:4], "Paris", *row[5:]] for row in customers(5)]  # 0-2 known (new city), 3-4 new
    job = await run(client, settings, changed, mode="insert")
    assert counters(job) == (5, 2, 0, 0, 3, 0)
    after = await stored(pool)
    for email, row in before.items():
        assert after[email] == row  # not a value, not the version
    assert after["person3@example.com"]["city"] == "Paris"


async def test_update_mode_skips_new_emails_and_never_inserts_them(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(3))
    changed = [[*row[:4], "Paris", *row[5:]] for row in customers(5)]
    job = await run(client, settings, changed, mode="update")
    assert counters(job) == (5, 0, 3, 0, 2, 0)
    after = await stored(pool)
    assert sorted(after) == [f"person{i}@example.com" for i in range(3)]
    assert {row["city"] for row in after.values()} == {"Paris"}
    assert {row["version"] for row in after.values()} == {2}


async def test_upsert_is_the_default_and_skips_nothing(client: TestClient, settings: Settings) -> None:
    await run(client, settings, customers(3))
    job = await run(client, settings, [[*row[:4], "Paris", *row[5:]] for row in customers(5)])
    assert counters(job) == (5, 2, 3, 0, 0, 0)


async def test_an_unknown_mode_is_a_422_naming_the_option(client: TestClient) -> None:
    form = aiohttp.FormData()
    form.add_field("file", csv_bytes(customers(1)), filename="people.csv", content_type="text/csv")
    form.add_field("mode", "merge")
    response = await client.post("/upload", data=form)
    assert response.status == 422
    problem = await response.json()
    assert "mode" in json.dumps(problem) and "upsert" in json.dumps(problem)


# -- blank_cells ------------------------------------------------------------------------------------
async def test_blank_cells_keep_by_default_an_empty_cell_erases_nothing(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(4))
    before = await stored(pool)
    # Rows 0-1: the city left empty, nothing else changed: unchanged. Rows 2-3: empty city, new phone.
    rows = blanked(customers(4), "city")
    for row in rows[2:]:
        row[HEADER.index("phone")] = "0200-000000"
    job = await run(client, settings, rows)
    assert counters(job) == (4, 0, 2, 2, 0, 0)
    after = await stored(pool)
    assert {row["city"] for row in after.values()} == {"Leeds"}
    assert after["person0@example.com"]["version"] == before["person0@example.com"]["version"]
    assert after["person2@example.com"]["phone"] == "0200-000000"
    # A re-import of the same file changes nothing more (the stored hash is the merged row's).
    again = await run(client, settings, rows)
    assert counters(again) == (4, 0, 0, 4, 0, 0)


async def test_blank_cells_keep_warms_the_cache_with_the_kept_values(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, redis: Redis
) -> None:
    await run(client, settings, customers(1))
    row = blanked(customers(1), "city")[0]
    row[HEADER.index("phone")] = "0200-000000"
    await run(client, settings, [row])
    customer = (await stored(pool))["person0@example.com"]
    cached = json.loads(await redis.get(f"{settings.redis_prefix}{{customer:{customer['id']}}}"))
    assert (cached["city"], cached["phone"], cached["version"]) == ("Leeds", "0200-000000", customer["version"])


async def test_blank_cells_clear_erases_stored_values(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(2))
    job = await run(client, settings, blanked(customers(2), "city"), blank_cells="clear")
    assert counters(job) == (2, 0, 2, 0, 0, 0)
    assert {row["city"] for row in (await stored(pool)).values()} == {None}


async def test_update_mode_with_blank_cells_clear(client: TestClient, settings: Settings, pool: aiomysql.Pool) -> None:
    await run(client, settings, customers(2))
    job = await run(client, settings, blanked(customers(3), "web"), mode="update", blank_cells="clear")
    assert counters(job) == (3, 0, 2, 0, 1, 0)
    after = await stored(pool)
    assert sorted(after) == ["person0@example.com", "person1@example.com"]
    assert {row["web"] for row in after.values()} == {None}


async def test_insert_mode_with_blank_cells_keep_inserts_blanks_as_empty(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(1))
    job = await run(client, settings, blanked(customers(2), "city"), mode="insert")
    assert counters(job) == (2, 1, 0, 0, 1, 0)
    after = await stored(pool)
    assert after["person0@example.com"]["city"] == "Leeds" and after["person1@example.com"]["city"] is None


# -- match_on=id and the version column ---------------------------------------------------------------
async def test_match_on_id_changes_the_email_of_the_customer_the_id_names(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(3))
    header, rows = await export_rows(client)
    email_at, id_at = header.index("email"), header.index("id")
    ids = {row[email_at]: row[id_at] for row in rows}
    rows[0][email_at] = "renamed@example.com"
    job = await run(client, settings, rows, header, match_on="id")
    assert counters(job) == (3, 0, 1, 2, 0, 0)
    after = await stored(pool)
    assert "person0@example.com" not in after and len(after) == 3
    assert str(after["renamed@example.com"]["id"]) == ids["person0@example.com"]
    assert after["renamed@example.com"]["version"] == 2
    # The history has the change, under this job, the old email and the new.
    history = await (await client.get(f"/customers/{ids['person0@example.com']}/history")).json()
    latest = history["items"][0]
    assert latest["action"] == "updated" and latest["source"]["job_id"] == job["job_id"]
    assert latest["changes"]["email"] == ["person0@example.com", "renamed@example.com"]


async def test_match_on_email_ignores_the_id_column(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(1))
    header, rows = await export_rows(client)
    rows[0][header.index("email")] = "renamed@example.com"
    job = await run(client, settings, rows, header)
    assert counters(job) == (1, 1, 0, 0, 0, 0)
    assert len(await stored(pool)) == 2


async def test_match_on_id_row_errors_an_unknown_id_a_taken_email_and_a_bad_id(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(3))
    header, rows = await export_rows(client)
    email_at, id_at = header.index("email"), header.index("id")
    rows[0][id_at] = "999999"  # no such customer
    rows[1][email_at] = rows[2][email_at]  # the email of another customer
    extra = list(rows[2])
    extra[id_at], extra[email_at] = "seven", "new@example.com"  # not an id at all
    new = list(rows[2])
    new[id_at], new[email_at] = "", "brand-new@example.com"  # no id: matched on its email, so inserted
    job = await run(client, settings, [*rows, extra, new], header, match_on="id")
    assert counters(job) == (5, 1, 0, 1, 0, 3)
    errors = (await (await client.get(f"/jobs/{job['job_id']}/errors")).json())["items"]
    messages = {error["row"]: error["message"] for error in errors}
    assert "no customer has id 999999" in messages[2]
    assert "is the email of customer" in messages[3]
    assert "not a customer id" in messages[5]
    assert all(error["column"] in ("id", "email") for error in errors)
    before = await stored(pool)
    assert "brand-new@example.com" in before and len(before) == 4
    rejected = await client.get(f"/jobs/{job['job_id']}/rejected?format=csv")
    assert rejected.status == 200 and b"999999" in await rejected.read()


async def test_match_on_id_without_an_id_column_fails_the_job_saying_why(
    client: TestClient, settings: Settings
) -> None:
    job_id = await upload(client, customers(2), match_on="id")
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "failed" and "match_on=id" in job["error"]


async def test_a_row_older_than_the_stored_version_is_a_row_error_not_an_overwrite(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, customers(2))
    header, rows = await export_rows(client)  # version 1 of each
    # Someone edits customer 0 after the export (version 2), then the old export, edited, comes back.
    await run(client, settings, [[*customers(1)[0][:4], "York", *customers(1)[0][5:]]])
    city_at = header.index("city")
    for row in rows:
        row[city_at] = "Paris"
    job = await run(client, settings, rows, header)
    assert counters(job) == (2, 0, 1, 0, 0, 1)
    errors = (await (await client.get(f"/jobs/{job['job_id']}/errors")).json())["items"]
    assert [(e["row"], e["column"]) for e in errors] == [(2, "version")]
    assert errors[0]["message"] == "changed since this file was exported: stored version 2"
    after = await stored(pool)
    assert after["person0@example.com"]["city"] == "York" and after["person1@example.com"]["city"] == "Paris"


async def test_an_export_imported_back_with_every_option_changes_nothing(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await run(client, settings, blanked(customers(5), "web"))
    before = await stored(pool)
    header, rows = await export_rows(client)
    for mode in ("upsert", "insert", "update"):
        for blank_cells in ("keep", "clear"):
            for match_on in ("email", "id"):
                job = await run(client, settings, rows, header, mode=mode, blank_cells=blank_cells, match_on=match_on)
                skipped = 5 if mode == "insert" else 0
                assert counters(job) == (5, 0, 0, 5 - skipped, skipped, 0), (mode, blank_cells, match_on)
    assert await stored(pool) == before


# -- repeated emails ------------------------------------------------------------------------------------
async def test_the_same_email_twice_the_later_row_wins_and_the_job_names_the_rows(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    rows = customers(4)
    again = [*rows[1][:4], "Paris", *rows[1][5:]]
    job = await run(client, settings, [*rows, again])
    assert counters(job) == (5, 4, 1, 0, 0, 0)
    assert (await stored(pool))["person1@example.com"]["city"] == "Paris"
    assert any("rows 3, 6" in warning and "later row" in warning for warning in job["warnings"]), job["warnings"]


async def test_the_same_email_twice_with_insert_mode_the_first_row_counts(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    rows = customers(2)
    job = await run(client, settings, [*rows, [*rows[0][:4], "Paris", *rows[0][5:]]], mode="insert")
    assert counters(job) == (3, 2, 0, 0, 1, 0)
    assert (await stored(pool))["person0@example.com"]["city"] == "Leeds"
    assert any("rows 2, 4" in warning and "first row" in warning for warning in job["warnings"])


async def test_repeated_emails_across_batches_are_found(client: TestClient, settings: Settings) -> None:
    rows = customers(6)
    rows.append(list(rows[0]))
    job_id = await upload(client, rows)
    await run_burst_worker(replace(settings, import_batch_size=2))
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert counters(job) == (7, 6, 0, 1, 0, 0)
    assert any("rows 2, 8" in warning for warning in job["warnings"])


async def test_insert_mode_skips_a_known_email_in_a_batch_loaded_ahead_as_new(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    """A file of new customers has each batch loaded into a staging table while the one before it
    commits, as if all new; the third batch here holds a customer the first one wrote, with another
    city: that batch is planned from the table, and insert mode leaves the customer as it was."""
    rows = customers(1500)  # batches of 500
    rows[1200] = [*rows[100][:4], "Paris", *rows[100][5:]]
    job = await run(client, settings, rows, mode="insert")
    assert counters(job) == (1500, 1499, 0, 0, 1, 0)
    kept = (await stored(pool))["person100@example.com"]
    assert (kept["city"], kept["version"]) == (rows[100][4], 1)


# -- counters with dry runs, resumes and parts ------------------------------------------------------------
@pytest.mark.parametrize("options", [{"mode": "insert"}, {"mode": "update", "blank_cells": "clear"}, {}])
async def test_a_dry_run_counts_what_the_import_then_does(
    client: TestClient, settings: Settings, options: dict[str, str]
) -> None:
    await run(client, settings, customers(3))
    rows = blanked(customers(6), "city")
    rows.append([*rows[4][:4], "Paris", *rows[4][5:]])
    dry = await run(client, settings, rows, dry_run=True, **options)
    real = await run(client, settings, rows, **options)
    assert counters(dry) == counters(real)


async def test_a_resumed_job_keeps_the_counters_exact(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    """A worker committed the first rows of an insert-mode job and died; another resumes it."""
    await run(client, settings, customers(10))
    rows = customers(30)  # 0-9 known: skipped
    first = await run(client, settings, rows[:15], mode="insert")  # what the dead worker committed
    job_id = await upload(client, rows, mode="insert")
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM import_jobs WHERE id = %s", (first["job_id"],))
        await cur.execute(
            "UPDATE import_jobs SET status='running', rows_read=%s, rows_inserted=%s, rows_skipped=%s,"
            " checkpoint_row=16, attempts=1, lease_owner='dead-worker',"
            " lease_expires_at=CURRENT_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE id=%s",
            (first["rows_read"], first["rows_inserted"], first["rows_skipped"], job_id),
        )
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed"
    assert counters(job) == (30, 20, 0, 0, 10, 0)
    assert len(await stored(pool)) == 30


async def test_fanned_out_parts_count_skipped_rows_exactly(
    aiohttp_client: Any, settings: Settings, pool: aiomysql.Pool, clean: None
) -> None:
    from gateway.app import create_app

    split = replace(settings, fanout_min_rows=10, fanout_parts=3, import_batch_size=4)
    client = await aiohttp_client(create_app(split))
    await run(client, split, customers(20))
    rows = customers(40)
    rows.append(list(rows[30]))  # a repeated email: its part warns
    job = await run(client, split, rows, mode="insert")
    assert len(job["parts"]) == 3
    assert counters(job) == (41, 20, 0, 0, 21, 0)
    assert sum(part["rows_skipped"] for part in job["parts"]) == 21
    assert any("rows 32, 42" in warning for warning in job["warnings"])

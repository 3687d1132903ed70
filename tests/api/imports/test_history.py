"""Customer history (GET /customers/{id}/history) and what a job changed (GET /jobs/{id}/changes), through
the real app, a real arq worker (burst) and the real MariaDB and Redis."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any

import aiomysql
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from shared.config import Settings
from shared.customers import history_repo
from shared.infra.db import connection
from tests.support.api import form
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import HEADER, csv_bytes, customers
from worker.sweeper import _expire_history

EMAIL = HEADER.index("email")
PHONE = HEADER.index("phone")


async def import_rows(client: TestClient, settings: Settings, rows: list[list[Any]], name: str = "c.csv") -> dict:
    response = await client.post("/upload", data=form(name, csv_bytes(rows)))
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed", job
    return job


async def history_rows(pool: aiomysql.Pool) -> int:
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("SELECT COUNT(*) FROM customer_history")
        (count,) = await cur.fetchone()
    return int(count)


async def customer_id(pool: aiomysql.Pool, email: str) -> int:
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("SELECT id FROM customers WHERE email = %s", (email,))
        (found,) = await cur.fetchone()
    return int(found)


async def all_history(client: TestClient, cid: int, limit: int = 2, headers: dict | None = None) -> list[dict]:
    """Every page, following next_cursor."""
    items: list[dict] = []
    url = f"/customers/{cid}/history?limit={limit}"
    while True:
        response = await client.get(url, headers=headers)
        assert response.status == 200, await response.text()
        page = await response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        url = f"/customers/{cid}/history?limit={limit}&cursor={page['next_cursor']}"


async def test_api_writes_are_in_the_history_newest_first_and_readable_after_delete(
    aiohttp_client: Any, settings: Settings, clean: None, pool: aiomysql.Pool
) -> None:
    keyed = replace(settings, api_keys=("ops=secret-key-1",))
    client = await aiohttp_client(create_app(keyed))
    auth = {"X-API-Key": "secret-key-1", "X-Request-ID": "req-create"}
    created = await client.post(
        "/customers", json={"email": "ada@example.com", "first_name": "Ada", "city": "London"}, headers=auth
    )
    assert created.status == 201
    cid = (await created.json())["id"]
    patched = await client.patch(
        f"/customers/{cid}", json={"city": "Paris"}, headers={**auth, "X-Request-ID": "req-patch"}
    )
    assert patched.status == 200
    # A PATCH that changes nothing writes no history.
    same = await client.patch(f"/customers/{cid}", json={"city": "Paris"}, headers=auth)
    assert same.status == 200
    deleted = await client.delete(f"/customers/{cid}", headers={**auth, "X-Request-ID": "req-delete"})
    assert deleted.status == 204
    assert (await client.get(f"/customers/{cid}", headers=auth)).status == 404

    items = await all_history(client, cid, limit=2, headers=auth)  # two pages: the cursor is followed
    assert [item["action"] for item in items] == ["deleted", "updated", "created"]
    assert all(item["by"] == "ops" and item["source"]["kind"] == "api" for item in items)
    assert [item["source"]["request_id"] for item in items] == ["req-delete", "req-patch", "req-create"]
    assert items[1]["changes"] == {"city": ["London", "Paris"]}
    assert items[2]["changes"]["email"] == [None, "ada@example.com"]
    assert items[0]["changes"]["city"] == ["Paris", None]
    assert [item["version"] for item in items] == [2, 2, 1]
    assert items[0]["at"] >= items[1]["at"] >= items[2]["at"]
    # 404 only for an id that never named a customer.
    missing = await client.get(f"/customers/{cid + 1000}/history", headers=auth)
    assert missing.status == 404


async def test_import_history_in_bulk_and_an_unchanged_reimport_writes_none(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    rows = customers(30)
    first = await import_rows(client, settings, rows)
    assert first["rows_inserted"] == 30
    assert await history_rows(pool) == 30
    # The same file again: nothing changes, so no history at all.
    again = await import_rows(client, settings, rows)
    assert again["rows_unchanged"] == 30
    assert await history_rows(pool) == 30
    # Three rows change a phone: three `updated` rows naming the job, with old and new values.
    changed = [list(row) for row in rows]
    for row in changed[:3]:
        row[PHONE] = "0999-000000"
    third = await import_rows(client, settings, changed)
    assert third["rows_updated"] == 3
    assert await history_rows(pool) == 33
    cid = await customer_id(pool, rows[0][EMAIL])
    items = await all_history(client, cid, limit=10)
    assert [item["action"] for item in items] == ["updated", "created"]
    assert items[0]["source"] == {"kind": "import", "job_id": third["job_id"], "request_id": third["request_id"]}
    assert items[0]["changes"] == {"phone": [rows[0][PHONE], "0999-000000"]}
    assert items[1]["source"]["job_id"] == first["job_id"]
    assert items[1]["changes"]["email"] == [None, rows[0][EMAIL]]

    # GET /jobs/{id}/changes: per customer, from the job's history, paginated and as CSV.
    page = await (await client.get(f"/jobs/{third['job_id']}/changes?limit=2")).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = await (await client.get(f"/jobs/{third['job_id']}/changes?limit=2&cursor={page['next_cursor']}")).json()
    listed = page["items"] + rest["items"]
    assert rest["next_cursor"] is None
    assert [item["email"] for item in listed] == [row[EMAIL] for row in rows[:3]]
    assert all(item["action"] == "updated" for item in listed)
    assert listed[0]["changes"] == {"phone": [rows[0][PHONE], "0999-000000"]}
    inserted = await (await client.get(f"/jobs/{first['job_id']}/changes?limit=1000")).json()
    assert len(inserted["items"]) == 30 and {item["action"] for item in inserted["items"]} == {"inserted"}
    download = await client.get(f"/jobs/{third['job_id']}/changes?format=csv")
    assert download.status == 200 and download.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(await download.text())))
    assert lines[0] == ["customer_id", "email", "action", "field", "old", "new"]
    assert lines[1][1:] == [rows[0][EMAIL], "updated", "phone", rows[0][PHONE], "0999-000000"]
    assert len(lines) == 4
    # Unchanged re-import: nothing changed, the list is empty.
    nothing = await (await client.get(f"/jobs/{again['job_id']}/changes")).json()
    assert nothing == {"items": [], "next_cursor": None}
    assert (await client.get("/jobs/00000000-0000-4000-8000-000000000000/changes")).status == 404


async def test_retention_deletes_only_history_older_than_the_setting(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await import_rows(client, settings, customers(4))
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("UPDATE customer_history SET at = CURRENT_TIMESTAMP(6) - INTERVAL 10 DAY ORDER BY id LIMIT 3")
    from worker.pipeline.deps import WorkerDeps

    def deps(days: int) -> WorkerDeps:
        return WorkerDeps(replace(settings, history_retention_days=days), pool, None, None)  # type: ignore[arg-type]

    assert await _expire_history(deps(0)) == 0  # 0 keeps everything
    assert await _expire_history(deps(30)) == 0
    assert await history_rows(pool) == 4
    assert await _expire_history(deps(7)) == 3
    assert await history_rows(pool) == 1


def test_history_tracks_every_stored_value() -> None:
    assert "email" in history_repo.TRACKED and "id" not in history_repo.TRACKED
    assert "version" not in history_repo.TRACKED


async def test_import_history_false_writes_none(client: TestClient, settings: Settings, pool: aiomysql.Pool) -> None:
    response = await client.post("/upload", data=form("c.csv", csv_bytes(customers(5))))
    job_id = (await response.json())["job_id"]
    await run_burst_worker(replace(settings, import_history=False))
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert (job["status"], job["rows_inserted"]) == ("completed", 5)
    assert await history_rows(pool) == 0
    # The same through the fallback path (no LOAD DATA LOCAL INFILE), with history on: one row each.
    again = await client.post("/upload", data=form("d.csv", csv_bytes(customers(5, start=100))))
    await run_burst_worker(replace(settings, import_bulk_load=False))
    done = await (await client.get(f"/jobs/{(await again.json())['job_id']}")).json()
    assert (done["status"], done["rows_inserted"]) == ("completed", 5)
    assert await history_rows(pool) == 5


async def test_a_row_another_import_inserted_since_the_batch_looked_is_updated_not_created(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    """The batch read the table (no such email), another writer inserts the email and commits, then the
    batch snapshots and upserts: its history row is an update of that customer, not a creation."""
    from shared.infra.db import transaction

    source = history_repo.Source(history_repo.IMPORT, job_id="00000000-0000-4000-8000-000000000001")
    async with transaction(pool) as cur:
        await cur.execute("SELECT COUNT(*) FROM customers WHERE email = 'late@example.com'")  # the batch's look
        assert (await cur.fetchone())[0] == 0
        created = await client.post(
            "/customers", json={"email": "late@example.com", "first_name": "Late", "city": "Leeds"}
        )
        assert created.status == 201
        await history_repo.snapshot(cur, [], ["late@example.com"])
        await cur.execute("UPDATE customers SET city = 'York', version = version + 1 WHERE email = 'late@example.com'")
        cid = (await created.json())["id"]
        assert await history_repo.record_written(cur, source, [cid]) == 1
    items = await all_history(client, cid, limit=10)
    assert [item["action"] for item in items] == ["updated", "created"]
    assert items[0]["changes"] == {"city": ["Leeds", "York"]}


@pytest.mark.parametrize("guess_new, warm", [(False, True), (True, False)], ids=["read", "guessed-unwarmed"])
async def test_an_import_batch_that_meets_a_row_written_since_it_read_records_an_update(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, guess_new: bool, warm: bool
) -> None:
    """The commit step snapshots only the rows its read found; the upsert shows it met one written
    since (inserted fewer than expected), so it is undone and run again with that row copied: the
    history says updated, with the fields changed, and the counters say updated, not inserted. The
    same when the batch was guessed new and not warmed (its ids not read back: the count shows it)."""
    from dataclasses import replace as replaced

    from shared.customers import customer_repo
    from shared.infra.db import transaction
    from worker.pipeline.commit import write_rows
    from worker.pipeline.deps import WorkerDeps
    from worker.pipeline.stage import stage_rows

    created = await client.post("/customers", json={"email": "late@example.com", "first_name": "Late", "city": "Leeds"})
    cid = (await created.json())["id"]
    values = {"email": "late@example.com", "first_name": "Late", "city": "York"}
    staged = stage_rows([tuple(values.get(name) for name in customer_repo.STORED_FIELDS)])
    # The batch's read as it was before the customer was created: it finds nothing.
    staged = replaced(staged, known_query=customer_repo.known_query(["nobody@example.com"]))
    deps = WorkerDeps(settings, pool, None, None)  # type: ignore[arg-type]
    source = history_repo.Source(history_repo.IMPORT, job_id="00000000-0000-4000-8000-000000000002")
    async with transaction(pool) as cur:
        written = await write_rows(deps, cur, staged, source, guess_new=guess_new, warm=warm)
    assert (written.inserted, written.updated) == (0, 1)
    assert [stamp[1] for stamp in written.stamps] == [cid]
    items = await all_history(client, cid, limit=10)
    assert [item["action"] for item in items] == ["updated", "created"]
    assert items[0]["changes"] == {"city": ["Leeds", "York"]}


@pytest.mark.parametrize("increment", [1, 2], ids=["by-id-range", "from-staging"])
async def test_creations_written_without_reading_ids_back_are_recorded_per_customer(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, increment: int
) -> None:
    """Past the warm-up, a batch of new customers is written without reading its ids back: its
    `created` rows come from the ids the insert numbered (where the server numbers them one after
    another) or, where it does not (ids counted by 2, as on a Galera cluster), from the staging table;
    either way one per customer, with its values."""
    from shared.customers import customer_repo
    from shared.infra.db import transaction
    from worker.pipeline.commit import write_rows
    from worker.pipeline.deps import WorkerDeps
    from worker.pipeline.stage import stage_rows

    await client.post("/customers", json={"email": "before@example.com"})  # ids do not start at 1
    rows = customers(5)
    by_field = [dict(zip(HEADER, row, strict=True)) for row in rows]
    staged = stage_rows([tuple(row.get(name) for name in customer_repo.STORED_FIELDS) for row in by_field])
    deps = WorkerDeps(settings, pool, None, None)  # type: ignore[arg-type]
    source = history_repo.Source(history_repo.IMPORT, job_id="00000000-0000-4000-8000-000000000003")
    async with transaction(pool) as cur:
        await cur.execute("SET SESSION auto_increment_increment = %s", (increment,))
        try:
            written = await write_rows(deps, cur, staged, source, guess_new=True, warm=False)
        finally:
            await cur.execute("SET SESSION auto_increment_increment = 1")
    assert (written.inserted, written.stamps) == (5, [])
    for row in by_field:
        items = await all_history(client, await customer_id(pool, row["email"]), limit=10)
        assert [(item["action"], item["version"], item["source"]["job_id"]) for item in items] == [
            ("created", 1, source.job_id)
        ]
        assert items[0]["changes"] == {name: [None, value] for name, value in row.items()}


async def test_the_changes_csv_streams_every_page(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, monkeypatch: Any
) -> None:
    import gateway.routes.imports as routes

    monkeypatch.setattr(routes, "CHANGES_CSV_PAGE", 4)  # 30 customers: eight pages
    job = await import_rows(client, settings, customers(30))
    download = await client.get(f"/jobs/{job['job_id']}/changes?format=csv")
    assert download.status == 200 and download.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(await download.text())))
    assert lines[0] == ["customer_id", "email", "action", "field", "old", "new"]
    assert sorted({line[1] for line in lines[1:]}) == sorted(row[EMAIL] for row in customers(30))
    assert {line[2] for line in lines[1:]} == {"inserted"}
    assert (await client.get("/jobs/00000000-0000-4000-8000-000000000000/changes?format=csv")).status == 404

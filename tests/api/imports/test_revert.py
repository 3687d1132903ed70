"""Revert, cancel and bulk delete, through the real app, a real arq worker (burst) and the real MariaDB and
Redis. (A revert killed mid-way by SIGKILL: tests/system/test_revert_crash.py.)"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import aiomysql
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from shared.config import Settings
from shared.infra.db import connection
from tests.support.api import form
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import HEADER, csv_bytes, customers

EMAIL = HEADER.index("email")
CITY = HEADER.index("city")
NO_JOB = "00000000-0000-4000-8000-000000000000"


async def import_rows(client: TestClient, settings: Settings, rows: list[list[Any]]) -> dict:
    response = await client.post("/upload", data=form("c.csv", csv_bytes(rows)))
    assert response.status == 202, await response.text()
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["status"] == "completed", job
    return job


async def run(client: TestClient, settings: Settings, response: aiohttp.ClientResponse) -> dict:
    """A 202 answer's job, after a worker has run it."""
    assert response.status == 202, await response.text()
    queued = await response.json()
    assert response.headers["Location"] == f"/jobs/{queued['job_id']}"
    assert queued["status"] == "queued"
    await run_burst_worker(settings)
    return await (await client.get(f"/jobs/{queued['job_id']}")).json()


async def stored(pool: aiomysql.Pool) -> dict[str, dict[str, Any]]:
    async with connection(pool) as conn, conn.cursor(aiomysql.DictCursor) as cur:
        await cur.execute("SELECT id, email, city, version FROM customers")
        return {row["email"]: row for row in await cur.fetchall()}


async def test_revert_deletes_inserted_restores_updated_and_lists_conflicts(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, redis: Redis
) -> None:
    first = customers(10)
    await import_rows(client, settings, first)
    before = await stored(pool)
    # The second import changes the city of 0..4 and adds 10..14.
    second = [[*row[:CITY], "York", *row[CITY + 1 :]] for row in first[:5]] + customers(5, start=10)
    job = await import_rows(client, settings, second)
    assert (job["rows_inserted"], job["rows_updated"]) == (5, 5)
    after = await stored(pool)
    # Read through the API: the cache holds the imported values.
    changed_id, added_id = after[first[0][EMAIL]]["id"], after["person10@example.com"]["id"]
    assert (await (await client.get(f"/customers/{changed_id}")).json())["city"] == "York"
    # Changed since the import: one updated customer, one inserted one.
    conflict_a, conflict_b = after[first[1][EMAIL]]["id"], after["person11@example.com"]["id"]
    assert (await client.patch(f"/customers/{conflict_a}", json={"city": "Hull"})).status == 200
    assert (await client.patch(f"/customers/{conflict_b}", json={"city": "Bath"})).status == 200

    revert = await run(client, settings, await client.post(f"/jobs/{job['job_id']}/revert"))
    assert revert["kind"] == "revert" and revert["reverts"] == job["job_id"], revert
    assert revert["status"] == "completed", revert
    assert (revert["rows_read"], revert["rows_deleted"], revert["rows_restored"], revert["rows_invalid"]) == (
        10,
        4,
        4,
        2,
    )
    assert revert["progress"]["percent"] == 100.0
    now = await stored(pool)
    for row in first:
        email = row[EMAIL]
        expected_city = "Hull" if email == first[1][EMAIL] else before[email]["city"]
        assert now[email]["city"] == expected_city, email
    assert set(now) == {row[EMAIL] for row in first} | {"person11@example.com"}
    # No reader sees the old cached values: the restored one from the cache is the restored value,
    # the deleted one is gone.
    answer = await client.get(f"/customers/{changed_id}")
    assert (await answer.json())["city"] == before[first[0][EMAIL]]["city"]
    assert (await client.get(f"/customers/{added_id}")).status == 404
    cached = await redis.get(f"{settings.redis_prefix}{{customer:{changed_id}}}")
    assert cached is None or json.loads(cached)["city"] == before[first[0][EMAIL]]["city"]
    # The conflicts are the revert's errors, naming the customer and what changed.
    errors = (await (await client.get(f"/jobs/{revert['job_id']}/errors")).json())["items"]
    assert sorted(e["row"] for e in errors) == sorted([conflict_a, conflict_b])
    assert all("changed since" in e["message"] and "city" in e["message"] for e in errors)
    # The history says who restored what.
    history = (await (await client.get(f"/customers/{changed_id}/history")).json())["items"]
    assert history[0]["action"] == "restored"
    assert history[0]["source"] == {"kind": "revert", "job_id": revert["job_id"], "request_id": revert["request_id"]}
    assert history[0]["changes"] == {"city": ["York", before[first[0][EMAIL]]["city"]]}
    gone = (await (await client.get(f"/customers/{added_id}/history")).json())["items"]
    assert [item["action"] for item in gone] == ["deleted", "created"]
    # What the revert changed, per customer.
    changes = (await (await client.get(f"/jobs/{revert['job_id']}/changes?limit=100")).json())["items"]
    assert sorted(item["action"] for item in changes) == ["deleted"] * 4 + ["restored"] * 4
    # Its events end with `completed`, after a `progress` event per batch.
    events = await (await client.get(f"/jobs/{revert['job_id']}/events")).text()
    assert "event: completed" in events
    # The import shows its revert; a second revert is a 409, and so is a revert of the revert.
    assert (await (await client.get(f"/jobs/{job['job_id']}")).json())["reverted_by"] == revert["job_id"]
    assert (await client.post(f"/jobs/{job['job_id']}/revert")).status == 409
    assert (await client.post(f"/jobs/{revert['job_id']}/revert")).status == 409


async def test_revert_with_force_undoes_changes_made_since(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    await import_rows(client, settings, customers(3))
    job = await import_rows(client, settings, [[*r[:CITY], "York", *r[CITY + 1 :]] for r in customers(3)])
    target = (await stored(pool))["person0@example.com"]["id"]
    assert (await client.patch(f"/customers/{target}", json={"city": "Hull"})).status == 200
    revert = await run(client, settings, await client.post(f"/jobs/{job['job_id']}/revert", json={"force": True}))
    assert (revert["rows_restored"], revert["rows_invalid"]) == (3, 0)
    assert {row["city"] for row in (await stored(pool)).values()} == {"Leeds"}


async def test_revert_refuses_what_is_not_a_finished_import(client: TestClient, settings: Settings) -> None:
    assert (await client.post(f"/jobs/{NO_JOB}/revert")).status == 404
    response = await client.post("/upload", data=form("c.csv", csv_bytes(customers(2))))
    queued = await response.json()
    refused = await client.post(f"/jobs/{queued['job_id']}/revert")
    assert refused.status == 409
    assert "queued" in (await refused.json())["detail"]
    bad = await client.post(f"/jobs/{queued['job_id']}/revert", json={"force": "yes"})
    assert bad.status == 422
    unknown = await client.post(f"/jobs/{queued['job_id']}/revert", json={"hard": True})
    assert unknown.status == 422


async def test_cancel_a_queued_job_at_once_and_409_once_ended(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    response = await client.post("/upload", data=form("c.csv", csv_bytes(customers(5))))
    job_id = (await response.json())["job_id"]
    cancelled = await client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status == 200
    doc = await cancelled.json()
    assert doc["status"] == "cancelled" and doc["finished_at"] is not None
    # The worker finds nothing to do: nothing imported.
    await run_burst_worker(settings)
    assert (await (await client.get(f"/jobs/{job_id}")).json())["status"] == "cancelled"
    assert await stored(pool) == {}
    again = await client.post(f"/jobs/{job_id}/cancel")
    assert again.status == 409
    done = await import_rows(client, settings, customers(1))
    assert (await client.post(f"/jobs/{done['job_id']}/cancel")).status == 409
    assert (await client.post(f"/jobs/{NO_JOB}/cancel")).status == 404
    # The event stream of a cancelled job ends with its `cancelled` event.
    events = await client.get(f"/jobs/{job_id}/events")
    assert "event: cancelled" in await events.text()


async def test_bulk_delete_checks_the_count_keeps_history_and_reverts(
    client: TestClient, settings: Settings, pool: aiomysql.Pool, redis: Redis
) -> None:
    await import_rows(client, settings, customers(6) + customers(4, start=100, domain="other.org"))
    before = await stored(pool)
    one = before["person1@example.com"]["id"]
    assert (await client.get(f"/customers/{one}")).status == 200  # cached
    refused = await client.post("/customers/bulk-delete", json={"q": "example.com", "expected_count": 5})
    assert refused.status == 409
    assert "6 customers match" in (await refused.json())["detail"]
    assert len(await stored(pool)) == 10
    bad = await client.post("/customers/bulk-delete", json={"q": "example.com"})
    assert bad.status == 422
    job = await run(
        client, settings, await client.post("/customers/bulk-delete", json={"q": "example.com", "expected_count": 6})
    )
    assert job["kind"] == "delete" and job["status"] == "completed", job
    assert (job["rows_read"], job["rows_deleted"]) == (6, 6)
    assert set(await stored(pool)) == {f"person{i}@other.org" for i in range(100, 104)}
    assert (await client.get(f"/customers/{one}")).status == 404
    history = (await (await client.get(f"/customers/{one}/history")).json())["items"]
    assert history[0]["action"] == "deleted" and history[0]["source"]["kind"] == "delete"
    assert history[0]["changes"]["email"] == ["person1@example.com", None]
    # Reverting the delete puts every customer back under its id, one version on.
    revert = await run(client, settings, await client.post(f"/jobs/{job['job_id']}/revert"))
    assert (revert["status"], revert["rows_restored"], revert["rows_invalid"]) == ("completed", 6, 0), revert
    after = await stored(pool)
    assert len(after) == 10
    for email, row in before.items():
        assert after[email]["id"] == row["id"] and after[email]["city"] == row["city"]
        assert after[email]["version"] == (row["version"] + 1 if "example.com" in email else row["version"])
    answer = await client.get(f"/customers/{one}")
    assert answer.status == 200 and (await answer.json())["email"] == "person1@example.com"


async def test_a_cancelled_revert_may_be_followed_by_another(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    job = await import_rows(client, settings, customers(4))
    first = await client.post(f"/jobs/{job['job_id']}/revert")
    assert first.status == 202
    queued = await first.json()
    assert (await client.post(f"/jobs/{queued['job_id']}/cancel")).status == 200
    assert (await (await client.get(f"/jobs/{job['job_id']}")).json())["reverted_by"] == queued["job_id"]
    second = await run(client, settings, await client.post(f"/jobs/{job['job_id']}/revert"))
    assert (second["status"], second["rows_deleted"]) == ("completed", 4)
    assert await stored(pool) == {}
    assert (await (await client.get(f"/jobs/{job['job_id']}")).json())["reverted_by"] == second["job_id"]


async def test_a_change_committed_after_the_reverts_snapshot_is_still_a_conflict(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    """The revert's batch reads the import's customers first (its snapshot), then locks them: a change
    the API commits in between must show among the later changes (a locking read), else it is undone."""
    from shared.customers import history_repo
    from shared.infra.db import transaction

    job = await import_rows(client, settings, customers(2))
    target = (await stored(pool))["person0@example.com"]["id"]
    async with transaction(pool) as cur:
        ids = await history_repo.job_customers(cur, job["job_id"], after_id=0, limit=10)  # the snapshot
        first = min(e.id for e in await history_repo.job_entries(cur, job["job_id"], ids))
        assert (await client.patch(f"/customers/{target}", json={"city": "Hull"})).status == 200
        later = await history_repo.later_entries(cur, ids, first, [job["job_id"]])
    assert [(e.customer_id, e.changes) for e in later] == [(target, {"city": ["Leeds", "Hull"]})]


async def test_an_email_another_customer_took_since_is_a_conflict(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    created = await client.post("/customers", json={"email": "x@example.com", "first_name": "X"})
    cid = (await created.json())["id"]
    fd = form("ids.csv", csv_bytes([[cid, "y@example.com", "X"]], header=["id", "email", "first_name"]))
    fd.add_field("match_on", "id")
    response = await client.post("/upload", data=fd)
    assert response.status == 202, await response.text()
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert (job["status"], job["rows_updated"]) == ("completed", 1), job
    # x@ is free now, and someone takes it.
    assert (await client.post("/customers", json={"email": "x@example.com", "first_name": "New"})).status == 201
    revert = await run(client, settings, await client.post(f"/jobs/{job['job_id']}/revert"))
    assert (revert["status"], revert["rows_restored"], revert["rows_invalid"]) == ("completed", 0, 1), revert
    errors = (await (await client.get(f"/jobs/{revert['job_id']}/errors")).json())["items"]
    assert errors[0]["row"] == cid and "x@example.com" in errors[0]["message"]
    assert (await (await client.get(f"/customers/{cid}")).json())["email"] == "y@example.com"


async def test_a_deleted_customer_whose_email_was_taken_since_is_a_conflict(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    created = await client.post("/customers", json={"email": "x@example.com", "first_name": "X"})
    cid = (await created.json())["id"]
    job = await run(
        client, settings, await client.post("/customers/bulk-delete", json={"q": "x@example", "expected_count": 1})
    )
    assert job["rows_deleted"] == 1
    taken = await client.post("/customers", json={"email": "x@example.com", "first_name": "New"})
    revert = await run(client, settings, await client.post(f"/jobs/{job['job_id']}/revert"))
    assert (revert["status"], revert["rows_restored"], revert["rows_invalid"]) == ("completed", 0, 1), revert
    errors = (await (await client.get(f"/jobs/{revert['job_id']}/errors")).json())["items"]
    assert errors[0]["row"] == cid and "another customer holds it" in errors[0]["message"]
    assert (await client.get(f"/customers/{cid}")).status == 404
    assert (await (await client.get(f"/customers/{(await taken.json())['id']}")).json())["first_name"] == "New"

"""GET /customers?sort=&count=: keyset pages on (field, id) in both directions, NULLs in a consistent place,
no repeats or gaps while rows change between pages, the total, the cache keyed by sort. Real MariaDB/Redis."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

CITIES = ["amsterdam", "berlin", "cork", "dublin", None]


async def create(client: TestClient, i: int, city: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": f"c{i:03d}@example.com", "last_name": f"name{i % 7}"}
    if city is not None:
        body["city"] = city
    response = await client.post("/customers", json=body)
    assert response.status == 201, await response.text()
    doc: dict[str, Any] = await response.json()
    return doc


async def seed(client: TestClient, n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [await create(client, i, rng.choice(CITIES)) for i in range(n)]


def expected(docs: list[dict[str, Any]], key: str, descending: bool) -> list[int]:
    """(field, id) order with NULL as the smallest value: first ascending, last descending."""
    ordered = sorted(docs, key=lambda d: (d[key] is not None, d[key] or "", d["id"]), reverse=descending)
    return [d["id"] for d in ordered]


async def walk(client: TestClient, query: str, limit: int) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        url = f"/customers?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url)
        assert response.status == 200, await response.text()
        page = await response.json()
        ids.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


@pytest.mark.parametrize("sort", ["city", "-city", "last_name", "-last_name", "email", "-id", "id"])
async def test_pages_follow_the_sort_with_nulls_first_ascending_last_descending(client: TestClient, sort: str) -> None:
    docs = await seed(client, 23)
    assert any(d.get("city") is None for d in docs) and any(d.get("city") for d in docs)
    key, descending = sort.lstrip("-"), sort.startswith("-")
    for doc in docs:
        doc.setdefault(key, None)
    # A page size that cuts through runs of equal values and through the NULLs.
    assert await walk(client, f"sort={sort}", 4) == expected(docs, key, descending)


@pytest.mark.parametrize("sort", ["created_at", "-updated_at"])
async def test_timestamps_sort_and_page(client: TestClient, sort: str) -> None:
    docs = await seed(client, 9)
    ids = [d["id"] for d in docs]  # created one after the other
    walked = await walk(client, f"sort={sort}", 2)
    assert walked == (list(reversed(ids)) if sort.startswith("-") else ids)


@pytest.mark.parametrize("sort", ["city", "-city"])
async def test_a_walk_while_rows_are_inserted_and_deleted_has_no_gaps_or_repeats(client: TestClient, sort: str) -> None:
    docs = await seed(client, 30)
    rng = random.Random(3)
    alive = {d["id"] for d in docs}
    deleted: set[int] = set()
    added: set[int] = set()
    seen: list[int] = []
    cursor = None
    step = 100
    while True:
        url = f"/customers?limit=4&sort={sort}" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Between pages: delete a customer not yet seen (or one seen), and add two, one of them a NULL.
        victim = rng.choice(sorted(alive - set(seen)) or sorted(alive))
        assert (await client.delete(f"/customers/{victim}")).status == 204
        alive.discard(victim)
        deleted.add(victim)
        for city in (rng.choice(CITIES[:-1]), None):
            doc = await create(client, step, city)
            step += 1
            alive.add(doc["id"])
            added.add(doc["id"])
    assert len(seen) == len(set(seen)), "a row came twice"
    stayed = {d["id"] for d in docs} - deleted
    assert stayed <= set(seen), f"rows that stayed were skipped: {sorted(stayed - set(seen))}"


async def test_count_adds_the_total_matching_q(client: TestClient) -> None:
    docs = await seed(client, 12)
    page = await (await client.get("/customers?limit=5&count=true&sort=-city")).json()
    assert page["total"] == 12 and len(page["items"]) == 5
    named = sum(1 for d in docs if d["last_name"] == "name3")
    page = await (await client.get("/customers?limit=50&count=true&q=name3")).json()
    assert page["total"] == named == len(page["items"])
    assert "total" not in await (await client.get("/customers?limit=5")).json()


async def test_the_cache_keeps_each_sort_apart(client: TestClient) -> None:
    docs = await seed(client, 6)
    first = await client.get("/customers?limit=3&sort=city")
    second = await client.get("/customers?limit=3&sort=-city")
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "miss"
    for doc in docs:
        doc.setdefault("city", None)
    assert [d["id"] for d in (await second.json())["items"]] == expected(docs, "city", True)[:3]
    again = await client.get("/customers?limit=3&sort=-city")
    assert again.headers["X-Cache"] == "hit"
    assert await again.json() == await second.json()
    counted = await client.get("/customers?limit=3&sort=-city&count=true")
    assert counted.headers["X-Cache"] == "miss" and (await counted.json())["total"] == 6


async def test_a_sort_that_is_not_a_field_is_a_422_naming_sort(client: TestClient) -> None:
    for bad in ("password", "city;DROP TABLE customers", "--city", "attributes"):
        response = await client.get("/customers", params={"sort": bad})
        assert response.status == 422, bad
        problem = await response.json()
        assert problem["errors"][0]["field"] == "sort"


async def test_a_cursor_from_another_sort_is_a_400(client: TestClient) -> None:
    await seed(client, 5)
    page = await (await client.get("/customers?limit=2&sort=city")).json()
    response = await client.get(f"/customers?limit=2&sort=-city&cursor={page['next_cursor']}")
    assert response.status == 400
    response = await client.get(f"/customers?limit=2&cursor={page['next_cursor']}")
    assert response.status == 400
    assert (await client.get("/customers?count=maybe")).status == 422

"""The cache never holds a customer older than MySQL, nor one MySQL no longer has.

Real MariaDB and Redis only. The race test hammers the real app with concurrent PATCHes, DELETEs and
cache-miss GETs on the same ids, then compares every `customer:{id}` key in Redis with MySQL. It was
checked to fail when the version guard is broken (the Lua script made to always SET): see
`test_race_detects_a_cache_without_version_guard`, which runs the same race against such a script.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.keys import CACHE
from shared import cache as cache_module
from shared import customer_repo
from shared.cache import CustomerCache, encode_document
from shared.db import connection
from shared.settings import Settings
from tests.support.proxy import TcpProxy, target_of, url_via

pytestmark = pytest.mark.usefixtures("clean")

CUSTOMERS = 30
ROUNDS = int(os.environ.get("RACE_ROUNDS", "15"))
JITTERY_ROUNDS = int(os.environ.get("RACE_JITTERY_ROUNDS", "15"))


def _doc(customer_id: int, version: int, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": customer_id,
        "version": version,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"ada{customer_id}@example.com",
        "city": f"City v{version}",
    }
    doc.update(fields)
    return doc


async def _stored(redis: Redis, cache: CustomerCache, customer_id: int) -> dict[str, Any] | None:
    raw = await redis.get(cache.key(customer_id))
    return None if raw is None else json.loads(raw)


# -- CustomerCache against the real Redis -------------------------------------------------------------


async def test_put_of_an_older_version_is_refused(cache: CustomerCache, redis: Redis) -> None:
    assert await cache.put_many([_doc(1, 3)]) == 1
    assert await cache.put_many([_doc(1, 2, city="Older")]) == 0
    assert await cache.put_many([_doc(1, 3, city="Same version")]) == 0
    assert await _stored(redis, cache, 1) == _doc(1, 3)

    assert await cache.put_many([_doc(1, 4, city="Newer")]) == 1
    stored = await _stored(redis, cache, 1)
    assert stored is not None and stored["version"] == 4 and stored["city"] == "Newer"
    assert 0 < await redis.ttl(cache.key(1)) <= cache.ttl_s


async def test_versions_compare_as_numbers_not_text(cache: CustomerCache, redis: Redis) -> None:
    await cache.put(_doc(2, 10))
    await cache.put(_doc(2, 9))
    stored = await _stored(redis, cache, 2)
    assert stored is not None and stored["version"] == 10


async def test_tombstone_blocks_a_refill_until_it_expires(redis: Redis, settings: Settings) -> None:
    cache = CustomerCache(redis, prefix=settings.redis_prefix, tombstone_s=1)
    await cache.put(_doc(3, 1))
    await cache.deleted(3)
    assert await redis.get(cache.key(3)) is None
    assert await redis.exists(cache.tombstone_key(3))

    # A slow read that loaded the row before the delete tries to put it back: refused, any version.
    assert await cache.put_many([_doc(3, 1), _doc(4, 1)]) == 1  # the other customer is written
    assert await cache.put_many([_doc(3, 99)]) == 0
    assert await redis.get(cache.key(3)) is None
    assert await _stored(redis, cache, 4) == _doc(4, 1)

    # The tombstone is short-lived: it must not block the key for ever.
    await asyncio.sleep(1.2)
    assert await cache.put_many([_doc(3, 2)]) == 1


async def test_generation_bump_makes_cached_pages_miss(cache: CustomerCache) -> None:
    page_id = CustomerCache.page_id(limit=10, after=0, q="")
    generation, page = await cache.get_page(page_id)
    assert page is None
    await cache.put_page(generation, page_id, b'{"items":[],"next_cursor":null}')
    assert await cache.get_page(page_id) == (generation, b'{"items":[],"next_cursor":null}')

    await cache.bump_generation()
    assert await cache.get_page(page_id) == (generation + 1, None)

    # Every kind of write retires pages too.
    for write in (cache.updated(_doc(5, 2)), cache.created(_doc(6, 1)), cache.deleted(5)):
        current, _ = await cache.get_page(page_id)
        await cache.put_page(current, page_id, b"page")
        await write
        assert await cache.get_page(page_id) == (current + 1, None)


async def test_encoded_document_starts_with_id_and_version() -> None:
    body = encode_document({"email": "x@example.com", "version": 7, "id": 12, "city": "Zürich"})
    assert body.startswith(b'{"id":12,"version":7,')
    assert json.loads(body)["city"] == "Zürich"


# -- through the app -----------------------------------------------------------------------------------


async def _create(client: TestClient, n: int) -> dict[str, Any]:
    response = await client.post(
        "/customers",
        json={"first_name": f"First{n}", "last_name": f"Last{n}", "email": f"race{n}@example.com", "city": "Start"},
    )
    assert response.status == 201, await response.text()
    doc: dict[str, Any] = await response.json()
    return doc


async def test_list_pages_hit_then_miss_after_each_write(client: TestClient) -> None:
    docs = [await _create(client, n) for n in range(3)]

    first = await client.get("/customers?limit=10")
    assert first.status == 200 and first.headers["X-Cache"] == "miss"
    body = await first.json()
    assert [item["id"] for item in body["items"]] == [d["id"] for d in docs]

    second = await client.get("/customers?limit=10")
    assert second.headers["X-Cache"] == "hit"
    assert await second.json() == body

    patched = await client.patch(f"/customers/{docs[1]['id']}", json={"city": "Elsewhere"})
    assert patched.status == 200
    after_patch = await client.get("/customers?limit=10")
    assert after_patch.headers["X-Cache"] == "miss"
    items = (await after_patch.json())["items"]
    assert items[1]["city"] == "Elsewhere" and items[1]["version"] == 2
    assert (await client.get("/customers?limit=10")).headers["X-Cache"] == "hit"

    assert (await client.delete(f"/customers/{docs[0]['id']}")).status == 204
    after_delete = await client.get("/customers?limit=10")
    assert after_delete.headers["X-Cache"] == "miss"
    assert [item["id"] for item in (await after_delete.json())["items"]] == [docs[1]["id"], docs[2]["id"]]

    await _create(client, 3)
    after_create = await client.get("/customers?limit=10")
    assert after_create.headers["X-Cache"] == "miss"
    assert len((await after_create.json())["items"]) == 3


async def _mysql_rows(pool: Any) -> dict[int, dict[str, Any]]:
    async with connection(pool) as conn, conn.cursor() as cur:
        rows = await customer_repo.list_page(cur, after_id=0, limit=100_000, search=None)
    # The same JSON round trip the cache and the API apply.
    return {doc["id"]: json.loads(encode_document(doc)) for doc in rows}


async def _redis_documents(redis: Redis, cache: CustomerCache) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    async for key in redis.scan_iter(match=f"{cache.prefix}customer:*", count=1000):
        raw = await redis.get(key)
        if raw is not None:
            found[int(key.decode().rsplit(":", 1)[1])] = json.loads(raw)
    return found


async def _assert_consistent(pool: Any, redis: Redis, cache: CustomerCache, when: str) -> dict[int, dict[str, Any]]:
    """Every cached customer equals its MySQL row (same version, same fields); no deleted one is cached."""
    rows = await _mysql_rows(pool)
    cached = await _redis_documents(redis, cache)
    resurrected = sorted(set(cached) - set(rows))
    assert not resurrected, f"{when}: deleted customers still in Redis: {resurrected}"
    stale = {cid: (doc["version"], rows[cid]["version"]) for cid, doc in cached.items() if doc != rows[cid]}
    assert not stale, f"{when}: Redis differs from MySQL, id: (cached version, mysql version): {stale}"
    return rows


async def _race(
    client: TestClient, redis: Redis, cache: CustomerCache, pool: Any, *, rounds: int, seed: int
) -> Counter[str]:
    """Concurrent PATCHes, DELETEs and cache-miss GETs on the same ids; consistency checked after
    every round, i.e. each time the writes have stopped. Returns what happened, for the caller to
    check that the race was really exercised."""
    rng = random.Random(seed)
    ids = [(await _create(client, n))["id"] for n in range(CUSTOMERS)]
    # A third of the customers are deleted, each in a round of its own, while reads and writes race.
    doomed = {cid: rng.randrange(1, rounds) for cid in rng.sample(ids, CUSTOMERS // 3)}
    deleted: set[int] = set()
    stats: Counter[str] = Counter()

    async def get(cid: int) -> None:
        response = await client.get(f"/customers/{cid}")
        stats[f"get {response.status} {response.headers.get('X-Cache', '-')}"] += 1
        assert response.status in (200, 404), await response.text()
        if response.status == 404:
            assert cid in doomed, f"customer {cid} vanished"
        else:
            assert response.headers["ETag"] == f'"v{(await response.json())["version"]}"'

    async def patch(cid: int, n: int) -> None:
        response = await client.patch(f"/customers/{cid}", json={"city": f"City {n}", "phone": str(n)})
        stats[f"patch {response.status}"] += 1
        assert response.status in (200, 404), await response.text()
        assert response.status == 200 or cid in doomed

    async def delete(cid: int) -> None:
        response = await client.delete(f"/customers/{cid}")
        stats[f"delete {response.status}"] += 1
        assert response.status in (204, 404), await response.text()

    async def list_page() -> None:
        response = await client.get("/customers?limit=1000")
        stats[f"list {response.status}"] += 1
        assert response.status == 200, await response.text()

    counter = 0
    for round_no in range(rounds):
        # Force misses: drop about half the cached documents while nothing writes. (Dropping keys while
        # writes are in flight would stand for an eviction racing a refill, which no version guard
        # without a floor can prevent; the TTL makes that window 300 s wide, not a request wide.)
        victims = [cache.key(cid) for cid in ids if rng.random() < 0.5]
        if victims:
            await redis.delete(*victims)
        ops = []
        for cid in ids:
            for _ in range(rng.randint(1, 3)):
                counter += 1
                ops.append(patch(cid, counter))
            ops.extend(get(cid) for _ in range(rng.randint(2, 4)))
            if doomed.get(cid) == round_no:
                ops.append(delete(cid))
                if rng.random() < 0.3:
                    ops.append(delete(cid))  # a second delete may race the first
                deleted.add(cid)
        ops.extend(list_page() for _ in range(2))
        rng.shuffle(ops)
        await asyncio.gather(*ops)
        rows = await _assert_consistent(pool, redis, cache, f"after round {round_no} (seed {seed})")
        assert set(rows) == set(ids) - deleted

    # Finally, through the API: the survivors as MySQL has them, the deleted ones 404 and not cached.
    rows = await _mysql_rows(pool)
    for cid in ids:
        response = await client.get(f"/customers/{cid}")
        if cid in deleted:
            assert response.status == 404, f"deleted customer {cid} answered {response.status}"
            assert await redis.get(cache.key(cid)) is None
        else:
            assert response.status == 200
            assert await response.json() == rows[cid]
    listed = await client.get("/customers?limit=1000")
    assert [item["id"] for item in (await listed.json())["items"]] == sorted(rows)
    assert (await listed.json())["items"] == [rows[cid] for cid in sorted(rows)]
    await _assert_consistent(pool, redis, cache, "at the end")
    return stats


@pytest.fixture
async def jittery_client(aiohttp_client: Any, settings: Settings) -> AsyncIterator[TestClient]:
    """The app with Redis and MySQL behind proxies that hold every chunk back 0-8 ms at random: each
    connection gets its own latency, so requests overtake each other as between replicas on a real
    network. Without it a single process rarely opens the race window wide enough to see."""
    rng = random.Random()
    proxies = [
        TcpProxy(*target_of(settings.redis_url, 6379), delay=lambda: rng.uniform(0, 0.008)),
        TcpProxy(settings.mysql.host, settings.mysql.port, delay=lambda: rng.uniform(0, 0.008)),
    ]
    for proxy in proxies:
        await proxy.start()
    jittery = replace(
        settings,
        redis_url=url_via(settings.redis_url, proxies[0].port),
        mysql_dsn=url_via(settings.mysql_dsn, proxies[1].port),
    )
    try:
        yield await aiohttp_client(create_app(jittery))
    finally:
        for proxy in proxies:
            await proxy.stop()


def _seed() -> int:
    return int(os.environ.get("RACE_SEED", time.time_ns() % 1_000_000))


async def test_concurrent_writes_and_cache_misses_never_leave_redis_stale(
    client: TestClient, redis: Redis, cache: CustomerCache, pool: Any
) -> None:
    seed = _seed()
    started = time.monotonic()
    stats = await _race(client, redis, cache, pool, rounds=ROUNDS, seed=seed)
    print(f"race seed {seed}: {dict(sorted(stats.items()))} in {time.monotonic() - started:.1f}s")
    _assert_race_ran(stats, ROUNDS)


async def test_same_race_over_a_jittery_network(
    jittery_client: TestClient, redis: Redis, cache: CustomerCache, pool: Any
) -> None:
    seed = _seed()
    started = time.monotonic()
    stats = await _race(jittery_client, redis, cache, pool, rounds=JITTERY_ROUNDS, seed=seed)
    print(f"jittery race seed {seed}: {dict(sorted(stats.items()))} in {time.monotonic() - started:.1f}s")
    _assert_race_ran(stats, JITTERY_ROUNDS)


def _assert_race_ran(stats: Counter[str], rounds: int) -> None:
    """The race was really run: many misses refilled the cache while PATCHes and DELETEs went on."""
    assert stats["get 200 miss"] >= rounds * 10
    assert stats["get 200 hit"] > 0
    assert stats["delete 204"] == CUSTOMERS // 3
    assert stats["get 404 -"] > 0


# Broken cache-aside writes, to show the race test catches them.
_ALWAYS_SET = """
local ttl = ARGV[1]
for i = 1, #KEYS, 2 do
  local n = (i + 1) / 2
  redis.call('SET', KEYS[i], ARGV[2 * n + 1], 'EX', ttl)
end
return #KEYS / 2
"""
_NO_VERSION_GUARD = cache_module._PUT_NEWER.replace("current_version == nil or current_version < version", "true")
_NO_TOMBSTONE = cache_module._PUT_NEWER.replace("redis.call('EXISTS', KEYS[i + 1]) == 0", "true")


@pytest.mark.parametrize(
    ("script", "caught"),
    [
        (_ALWAYS_SET, "Redis differs from MySQL|deleted customers still in Redis"),
        (_NO_VERSION_GUARD, "Redis differs from MySQL"),
        (_NO_TOMBSTONE, "deleted customers still in Redis"),
    ],
    ids=["always-set", "no-version-guard", "no-tombstone"],
)
async def test_race_detects_a_broken_guard(
    jittery_client: TestClient,
    redis: Redis,
    cache: CustomerCache,
    pool: Any,
    monkeypatch: pytest.MonkeyPatch,
    script: str,
    caught: str,
) -> None:
    """A test that cannot fail is a defect: with the keep-newer script weakened, the same race leaves
    stale or deleted customers in Redis. The script is swapped on the app's live cache object."""
    assert script != cache_module._PUT_NEWER
    app_cache = jittery_client.server.app[CACHE]
    monkeypatch.setattr(app_cache, "_put_newer", app_cache.redis.register_script(script))
    seed = _seed()
    with pytest.raises(AssertionError, match=caught) as failure:
        await _race(jittery_client, redis, cache, pool, rounds=JITTERY_ROUNDS, seed=seed)
    print(f"caught (seed {seed}): {str(failure.value).splitlines()[0]}")

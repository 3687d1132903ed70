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
import re
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


# Test-side eviction that forces cache misses around a write without ever removing a value as new as
# the write: evicting that (an eviction racing a refill) is a window no version guard without a floor
# can close, and with a 300 s TTL it is not one a request wide. Returns 1 evicted, 0 nothing cached,
# 2 the write (a newer version or the delete's tombstone) has reached Redis: the evictor stops then.
# KEYS: customer key, tombstone key; ARGV: the version MySQL had before the write.
_EVICT_OLDER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local version = tonumber(string.match(current, '^{"id":%d+,"version":(%d+)'))
if version and version > tonumber(ARGV[1]) then return 2 end
redis.call('DEL', KEYS[1])
return 1
"""


async def _race(
    client: TestClient, redis: Redis, cache: CustomerCache, pool: Any, *, rounds: int, seed: int
) -> Counter[str]:
    """Concurrent PATCHes, DELETEs and cache-miss GETs on the same ids; consistency is checked after
    every round, i.e. each time the writes have stopped. Returns what happened, for the caller to
    check that the race was really exercised.

    Each round, every customer gets one write (one or two PATCHes, or a DELETE) while readers keep
    GETting it and an evictor keeps dropping the cached copy until the write reaches Redis, so the
    readers miss, load MySQL and refill Redis all around the moment the write commits."""
    rng = random.Random(seed)
    evict_older = redis.register_script(_EVICT_OLDER)
    created = [await _create(client, n) for n in range(CUSTOMERS)]
    ids = [doc["id"] for doc in created]
    versions = {doc["id"]: doc["version"] for doc in created}
    # Half the customers are deleted, each in a round of its own, while reads and writes race.
    doomed = {cid: rng.randrange(1, rounds) for cid in rng.sample(ids, CUSTOMERS // 2)}
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

    async def write_under_reads(cid: int, writes: list[Any], readers: int) -> None:
        writing = True

        async def evictor() -> None:
            keys = [cache.key(cid), cache.tombstone_key(cid)]
            while writing and await evict_older(keys=keys, args=[versions[cid]]) != 2:
                await asyncio.sleep(0.0005)

        async def reader() -> None:
            while writing:
                await get(cid)

        tasks = [asyncio.create_task(evictor())] + [asyncio.create_task(reader()) for _ in range(readers)]
        try:
            await asyncio.sleep(rng.uniform(0, 0.005))  # let the readers get going
            await asyncio.gather(*writes)
        finally:
            # Readers finish the request they are in: a stale refill lands now, and stays for the check.
            writing = False
            await asyncio.gather(*tasks)

    counter = 0
    for round_no in range(rounds):
        ops = []
        for cid in ids:
            if cid in deleted:
                ops.append(get(cid))  # a 404 must not cache anything
                continue
            if doomed[cid] == round_no if cid in doomed else False:
                writes = [delete(cid) for _ in range(1 if rng.random() < 0.7 else 2)]  # two deletes race
                deleted.add(cid)
            else:
                # Mostly one PATCH, so a stale refill is not simply overwritten by a later write of the
                # same round; sometimes two, racing each other for the row lock.
                writes = []
                for _ in range(1 if rng.random() < 0.7 else 2):
                    counter += 1
                    writes.append(patch(cid, counter))
            ops.append(write_under_reads(cid, writes, readers=rng.randint(2, 4)))
        ops.extend(list_page() for _ in range(2))
        rng.shuffle(ops)
        await asyncio.gather(*ops)
        rows = await _assert_consistent(pool, redis, cache, f"after round {round_no} (seed {seed})")
        assert set(rows) == set(ids) - deleted
        versions.update((cid, row["version"]) for cid, row in rows.items())

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
    """The app with Redis and MySQL behind proxies that hold every chunk back 0-5 ms at random: each
    connection gets its own latency, so requests overtake each other as between replicas on a real
    network. Without it a single process rarely opens the race window wide enough to see."""
    rng = random.Random()
    proxies = [
        TcpProxy(*target_of(settings.redis_url, 6379), delay=lambda: rng.uniform(0, 0.005)),
        TcpProxy(settings.mysql.host, settings.mysql.port, delay=lambda: rng.uniform(0, 0.005)),
    ]
    for proxy in proxies:
        await proxy.start()
    jittery = replace(
        settings,
        redis_url=url_via(settings.redis_url, proxies[0].port),
        mysql_dsn=url_via(settings.mysql_dsn, proxies[1].port),
        mysql_pool_size=30,
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
    assert stats["delete 204"] == CUSTOMERS // 2
    assert stats["get 404 -"] > 0


# Broken cache-aside writes, to show the race test catches them: the keep-newer script with its
# tombstone check, its version check or both replaced by `true`.
def _weakened(*, tombstone: bool, version: bool) -> str:
    script = cache_module._PUT_NEWER
    if tombstone:
        script = re.sub(r"redis\.call\('EXISTS',[^\n]*?\) == 0", "true", script)
    if version:
        script = re.sub(r"current_version == nil or current_version <[^\n]*? then", "true then", script)
    return script


@pytest.mark.parametrize(
    ("script", "caught"),
    [
        (_weakened(tombstone=True, version=True), "Redis differs from MySQL|deleted customers still in Redis"),
        (_weakened(tombstone=False, version=True), "Redis differs from MySQL"),
        (_weakened(tombstone=True, version=False), "deleted customers still in Redis"),
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
    assert script != cache_module._PUT_NEWER, "the script changed shape: update _weakened()"
    app_cache = jittery_client.server.app[CACHE]
    monkeypatch.setattr(app_cache, "_put_newer", app_cache.redis.register_script(script))
    seed = _seed()
    with pytest.raises(AssertionError, match=caught) as failure:
        await _race(jittery_client, redis, cache, pool, rounds=JITTERY_ROUNDS, seed=seed)
    print(f"caught (seed {seed}): {str(failure.value).splitlines()[0]}")

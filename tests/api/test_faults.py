"""Outages of Redis and of MySQL, for real: the app reaches the server through a TCP proxy that the test
cuts (open connections reset, new ones refused) and restores. Nothing is faked; during an outage every
request must answer within a few seconds, and after it the service recovers by itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.http.keys import CUSTOMERS
from shared.config import Settings
from shared.customers.cache import CustomerCache
from shared.infra.db import mysql_deadline
from tests.support.proxy import TcpProxy, target_of, url_via

pytestmark = pytest.mark.usefixtures("clean")

QUICK_S = 3.0  # no request may take longer than this, outage or not
PROBLEM = "application/problem+json"


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes, elapsed: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    @property
    def cache(self) -> str | None:
        return self.headers.get("X-Cache")

    def json(self) -> Any:
        return json.loads(self.body)


async def call(client: TestClient, method: str, path: str, *, limit_s: float = QUICK_S, **kwargs: Any) -> Answer:
    """One request that must answer within limit_s (never hang), its body read."""
    started = time.monotonic()
    async with asyncio.timeout(limit_s + 2):
        async with client.request(method, path, **kwargs) as response:
            body = await response.read()
    elapsed = time.monotonic() - started
    assert elapsed < limit_s, f"{method} {path} took {elapsed:.2f}s"
    return Answer(response.status, response.headers, body, elapsed)


UNKNOWN_JOB = "00000000-0000-4000-8000-000000000000"


def assert_problem(answer: Answer, status: int = 503) -> None:
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    doc = answer.json()
    assert doc["status"] == status and doc["title"]


async def create(client: TestClient, name: str) -> dict[str, Any]:
    answer = await call(client, "POST", "/customers", json={"first_name": name, "email": f"{name}@example.com"})
    assert answer.status == 201, answer.body
    doc: dict[str, Any] = answer.json()
    return doc


async def stored(redis: Redis, cache: CustomerCache, customer_id: int) -> dict[str, Any] | None:
    raw = await redis.get(cache.key(customer_id))
    return None if raw is None else json.loads(raw)


async def eventually(check: Any, within_s: float = 5.0) -> Any:
    """Poll an async check until it returns something truthy; return that."""
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


@pytest.fixture
async def redis_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(*target_of(settings.redis_url, 6379))
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def mysql_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(settings.mysql.host, settings.mysql.port)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def via_redis_proxy(aiohttp_client: Any, settings: Settings, redis_proxy: TcpProxy) -> TestClient:
    """The real app whose Redis is reached through the proxy (MySQL directly)."""
    app = create_app(replace(settings, redis_url=url_via(settings.redis_url, redis_proxy.port)))
    client: TestClient = await aiohttp_client(app)
    return client


@pytest.fixture
async def via_mysql_proxy(aiohttp_client: Any, settings: Settings, mysql_proxy: TcpProxy) -> TestClient:
    """The real app whose MySQL is reached through the proxy (Redis directly)."""
    app = create_app(replace(settings, mysql_dsn=url_via(settings.mysql_dsn, mysql_proxy.port)))
    client: TestClient = await aiohttp_client(app)
    return client


# -- Redis down -------------------------------------------------------------------------------------


async def test_redis_outage_reads_bypass_writes_succeed_and_nothing_stale_afterwards(
    via_redis_proxy: TestClient, redis_proxy: TcpProxy, redis: Redis, cache: CustomerCache
) -> None:
    client = via_redis_proxy
    a = await create(client, "ada")
    b = await create(client, "bob")
    assert (await call(client, "GET", f"/customers/{a['id']}")).cache == "hit"  # cached at v1
    assert (await call(client, "GET", "/customers")).cache == "miss"
    assert (await call(client, "GET", "/customers")).cache == "hit"  # a list page is cached too
    assert (await call(client, "GET", "/readyz")).status == 200

    await redis_proxy.cut()

    read = await call(client, "GET", f"/customers/{a['id']}")
    assert read.status == 200 and read.cache == "bypass" and read.json() == a
    listed = await call(client, "GET", "/customers")
    assert listed.status == 200 and listed.cache == "bypass"
    assert [item["id"] for item in listed.json()["items"]] == [a["id"], b["id"]]

    patched = await call(client, "PATCH", f"/customers/{a['id']}", json={"city": "Paris"})
    assert patched.status == 200 and patched.cache == "bypass"
    assert patched.json()["version"] == 2 and patched.headers["ETag"] == '"v2"'
    created = await call(client, "POST", "/customers", json={"first_name": "Cy", "email": "cy@example.com"})
    assert created.status == 201 and created.cache == "bypass"
    c = created.json()
    deleted = await call(client, "DELETE", f"/customers/{b['id']}")
    assert deleted.status == 204 and deleted.headers["X-Cache"] == "bypass"

    read = await call(client, "GET", f"/customers/{a['id']}")
    assert read.cache == "bypass" and read.json()["version"] == 2 and read.json()["city"] == "Paris"
    assert (await call(client, "GET", f"/customers/{b['id']}")).status == 404
    listed = await call(client, "GET", "/customers")
    assert [item["id"] for item in listed.json()["items"]] == [a["id"], c["id"]]

    ready = await call(client, "GET", "/readyz")
    assert ready.status == 503 and ready.json()["checks"] == {"mysql": "up", "redis": "down"}
    assert_problem(await call(client, "GET", "/customers/cache"))
    assert (await call(client, "GET", "/healthz")).status == 200

    # The real Redis still holds what was cached before the outage: v1 of a, b, the old list page.
    assert (await stored(redis, cache, a["id"]) or {}).get("version") == 1
    assert await stored(redis, cache, b["id"]) is not None

    await redis_proxy.restore()

    # From the first request on, nothing older than the last write is served, whatever X-Cache says.
    async def recovered() -> bool:
        read = await call(client, "GET", f"/customers/{a['id']}")
        assert read.status == 200 and read.json()["version"] == 2 and read.json()["city"] == "Paris"
        gone = await call(client, "GET", f"/customers/{b['id']}")
        assert gone.status == 404
        listed = await call(client, "GET", "/customers")
        assert [item["id"] for item in listed.json()["items"]] == [a["id"], c["id"]]
        assert listed.json()["items"][0]["version"] == 2
        return read.cache != "bypass" and listed.cache != "bypass"

    await eventually(recovered)
    assert (await call(client, "GET", f"/customers/{a['id']}")).cache == "hit"
    await eventually(_ready(client))

    # And in Redis itself: v2 of a, b gone and tombstoned.
    assert (await stored(redis, cache, a["id"]) or {}).get("version") == 2
    assert await stored(redis, cache, b["id"]) is None
    assert await redis.exists(cache.tombstone_key(b["id"]))


def _ready(client: TestClient) -> Any:
    async def check() -> bool:
        return (await call(client, "GET", "/readyz")).status == 200

    return check


async def test_invalidations_missed_during_a_redis_outage_reach_redis_without_any_request(
    via_redis_proxy: TestClient, client: TestClient, redis_proxy: TcpProxy, redis: Redis, cache: CustomerCache
) -> None:
    """After the outage the replica that wrote replays what it could not apply, by itself: another
    replica (here `client`, on Redis directly) must not go on serving the copy cached before it."""
    a = await create(via_redis_proxy, "ada")
    b = await create(via_redis_proxy, "bob")
    assert (await call(client, "GET", f"/customers/{a['id']}")).cache == "hit"
    assert (await call(client, "GET", "/customers")).cache == "miss"

    await redis_proxy.cut()
    assert (await call(via_redis_proxy, "PATCH", f"/customers/{a['id']}", json={"city": "Oslo"})).status == 200
    assert (await call(via_redis_proxy, "DELETE", f"/customers/{b['id']}")).status == 204
    await redis_proxy.restore()

    async def replayed() -> bool:
        return (await stored(redis, cache, a["id"]) or {}).get("version") != 1 and not await redis.exists(
            cache.key(b["id"])
        )

    await eventually(replayed)
    read = await call(client, "GET", f"/customers/{a['id']}")
    assert read.json()["version"] == 2 and read.json()["city"] == "Oslo"
    assert (await call(client, "GET", f"/customers/{b['id']}")).status == 404
    listed = await call(client, "GET", "/customers")
    assert listed.cache == "miss" and [item["id"] for item in listed.json()["items"]] == [a["id"]]


# -- MySQL down -------------------------------------------------------------------------------------


async def test_mysql_outage_cached_reads_answer_the_rest_503_then_recovers_by_itself(
    via_mysql_proxy: TestClient, mysql_proxy: TcpProxy, redis: Redis, cache: CustomerCache
) -> None:
    client = via_mysql_proxy
    a = await create(client, "ada")  # written through: cached
    b = await create(client, "bob")
    await redis.delete(cache.key(b["id"]))  # b is not cached
    assert (await call(client, "GET", "/customers?limit=10")).cache == "miss"  # this page is cached now

    await mysql_proxy.cut()

    cached = await call(client, "GET", f"/customers/{a['id']}")
    assert cached.status == 200 and cached.cache == "hit" and cached.json() == a
    page = await call(client, "GET", "/customers?limit=10")
    assert page.status == 200 and page.cache == "hit"
    assert_problem(await call(client, "GET", f"/customers/{b['id']}"))
    assert_problem(await call(client, "GET", "/customers?limit=5"))
    assert_problem(await call(client, "PATCH", f"/customers/{a['id']}", json={"city": "Rome"}))
    assert_problem(await call(client, "POST", "/customers", json={"first_name": "Cy", "email": "cy@example.com"}))
    assert_problem(await call(client, "DELETE", f"/customers/{a['id']}"))
    ready = await call(client, "GET", "/readyz")
    assert ready.status == 503 and ready.json()["checks"] == {"mysql": "down", "redis": "up"}
    assert (await call(client, "GET", "/healthz")).status == 200
    # The failed writes changed nothing, in the cache either.
    again = await call(client, "GET", f"/customers/{a['id']}")
    assert again.cache == "hit" and again.json() == a

    connections_before = mysql_proxy.accepted
    await mysql_proxy.restore()

    # The very first requests after the outage succeed: no 503 from a pooled connection the outage broke.
    loaded = await call(client, "GET", f"/customers/{b['id']}")
    assert loaded.status == 200 and loaded.cache == "miss" and loaded.json() == b
    patched = await call(client, "PATCH", f"/customers/{a['id']}", json={"city": "Rome"})
    assert patched.status == 200 and patched.json()["version"] == 2
    assert (await call(client, "GET", "/customers?limit=5")).status == 200
    created = await call(client, "POST", "/customers", json={"first_name": "Cy", "email": "cy@example.com"})
    assert created.status == 201
    assert (await call(client, "GET", "/readyz")).status == 200
    assert mysql_proxy.accepted > connections_before  # fresh connections replaced the broken ones


async def test_pooled_connections_broken_while_idle_are_replaced(
    via_mysql_proxy: TestClient, mysql_proxy: TcpProxy, redis: Redis, cache: CustomerCache
) -> None:
    """An outage nobody noticed (no request during it) leaves every pooled connection broken: the
    requests after it must still succeed, first time."""
    client = via_mysql_proxy
    docs = [await create(client, f"user{n}") for n in range(8)]
    await redis.delete(*[cache.key(doc["id"]) for doc in docs])
    # Several requests at once, so the pool holds several connections.
    answers = await asyncio.gather(*(call(client, "GET", f"/customers/{doc['id']}") for doc in docs))
    assert [answer.status for answer in answers] == [200] * len(docs)
    await redis.delete(*[cache.key(doc["id"]) for doc in docs])

    await mysql_proxy.cut()
    await mysql_proxy.restore()

    answers = await asyncio.gather(*(call(client, "GET", f"/customers/{doc['id']}") for doc in docs))
    assert [(answer.status, answer.cache) for answer in answers] == [(200, "miss")] * len(docs)
    assert (await call(client, "GET", "/readyz")).status == 200


async def test_a_stalled_mysql_answers_503_in_bounded_time_and_poisons_nothing(
    via_mysql_proxy: TestClient, mysql_proxy: TcpProxy, redis: Redis, cache: CustomerCache
) -> None:
    """MySQL stops answering (no reset, no refusal: a hung server, a partition). Cached reads still
    answer at once; what needs MySQL answers 503 once the database deadline passes instead of hanging;
    the connections abandoned mid-statement, whose answers come late, never serve another request."""
    client = via_mysql_proxy
    deadline = client.app[CUSTOMERS].db_timeout_s
    docs = [await create(client, f"user{n}") for n in range(4)]
    await redis.delete(*[cache.key(doc["id"]) for doc in docs[1:]])  # only docs[0] stays cached

    mysql_proxy.hold_responses()
    stalled = await asyncio.gather(
        call(client, "GET", "/readyz", limit_s=deadline + 2),
        call(client, "GET", f"/customers/{docs[1]['id']}", limit_s=deadline + 2),
        call(client, "GET", "/customers?limit=7", limit_s=deadline + 2),
        call(client, "PATCH", f"/customers/{docs[2]['id']}", json={"city": "Lima"}, limit_s=deadline + 2),
        call(client, "GET", "/jobs", limit_s=deadline + 2),
        call(client, "GET", f"/jobs/{UNKNOWN_JOB}", limit_s=deadline + 2),
        call(client, "GET", f"/jobs/{UNKNOWN_JOB}/errors", limit_s=deadline + 2),
    )
    cached = await call(client, "GET", f"/customers/{docs[0]['id']}")
    assert cached.status == 200 and cached.cache == "hit"
    ready, *needs_mysql = stalled
    assert ready.status == 503 and ready.json()["checks"] == {"mysql": "down", "redis": "up"}
    for answer in needs_mysql:
        assert_problem(answer)
    mysql_proxy.release_responses()  # the late answers to the abandoned statements arrive now
    assert (await call(client, "GET", "/jobs")).status == 200
    assert (await call(client, "GET", f"/jobs/{UNKNOWN_JOB}")).status == 404

    for doc in docs:
        answer = await call(client, "GET", f"/customers/{doc['id']}")
        assert answer.status == 200 and answer.json() == doc, answer.body
    patched = await call(client, "PATCH", f"/customers/{docs[2]['id']}", json={"city": "Lima"})
    assert patched.status == 200 and patched.json()["version"] == 2  # the abandoned PATCH did not commit
    assert (await call(client, "GET", "/readyz")).status == 200


async def test_a_write_whose_outcome_is_unknown_drops_the_cached_copy(
    via_mysql_proxy: TestClient, mysql_proxy: TcpProxy, redis: Redis, cache: CustomerCache
) -> None:
    """MySQL goes silent during a PATCH: the client gets a 503, but the write may have been applied,
    so the cached copy is dropped rather than served (possibly stale) for a whole TTL."""
    client = via_mysql_proxy
    deadline = client.app[CUSTOMERS].db_timeout_s
    doc = await create(client, "unknown")
    assert await redis.get(cache.key(doc["id"])) is not None
    mysql_proxy.hold_responses()
    answer = await call(client, "PATCH", f"/customers/{doc['id']}", json={"city": "Oslo"}, limit_s=deadline + 2)
    assert_problem(answer)
    assert await redis.get(cache.key(doc["id"])) is None
    mysql_proxy.release_responses()
    again = await call(client, "GET", f"/customers/{doc['id']}")
    assert again.status == 200 and again.cache == "miss" and again.json() == doc


# -- the deadline itself (no server needed) ----------------------------------------------------


async def _swallows_one_cancellation() -> None:
    """What Python 3.11's wait_for does to a cancellation landing as its inner task completes,
    followed by a read with no timeout (aiomysql's handshake on a stalled server)."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(30)


async def test_the_mysql_deadline_holds_when_the_work_swallows_a_cancellation() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with mysql_deadline(0.2, again_s=0.05):
            await _swallows_one_cancellation()
    assert time.monotonic() - started < 5
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the task is left as it was found


async def test_the_mysql_deadline_leaves_a_task_clean_when_the_work_finishes_first() -> None:
    async with mysql_deadline(5):
        await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # no cancellation pending from the deadline


async def test_a_cancellation_from_outside_is_not_turned_into_a_timeout() -> None:
    async def work() -> None:
        async with mysql_deadline(2, again_s=0.05):
            await _swallows_one_cancellation()

    task = asyncio.create_task(work())
    await asyncio.sleep(0.01)
    task.cancel()  # the client went away before the deadline
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

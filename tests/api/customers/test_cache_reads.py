"""Cached reads batched into one MGET per event-loop turn, against the real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.customers.cache import CacheUnavailable, CustomerCache, encode_document

pytestmark = pytest.mark.usefixtures("clean")


def doc(customer_id: int, version: int = 1) -> dict[str, object]:
    return {"id": customer_id, "version": version, "email": f"c{customer_id}@example.com"}


async def test_concurrent_reads_each_get_their_own_document(cache: CustomerCache, redis: Redis) -> None:
    await cache.put_many([doc(i) for i in range(1, 600)])
    sent: list[str] = []
    original = redis.mget

    async def counting_mget(keys, *args):  # type: ignore[no-untyped-def]
        sent.append(str(len(keys)))
        return await original(keys, *args)

    redis.mget = counting_mget  # type: ignore[method-assign]
    ids = [*range(1, 600), 5, 5, 10_000]  # repeats and a missing id in the same turn
    values = await asyncio.gather(*(cache.get(i) for i in ids))
    redis.mget = original  # type: ignore[method-assign]
    for customer_id, value in zip(ids, values, strict=True):
        if customer_id == 10_000:
            assert value is None
        else:
            assert value == encode_document(doc(customer_id))
    # 602 reads in one turn: a few MGETs of at most max_batch keys, not 602 GETs.
    assert len(sent) == -(-len(ids) // cache.max_batch)


async def test_a_failed_batch_fails_every_read_in_it(settings: Settings) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    cache = CustomerCache(dead, prefix=settings.redis_prefix)
    results = await asyncio.gather(*(cache.get(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, CacheUnavailable) for r in results)
    with pytest.raises(CacheUnavailable):  # the breaker now answers at once
        await cache.get(1)
    await dead.aclose()

"""Rate limits (gateway/http/ratelimit.py) through the real app and Redis: per key or client address,
uploads apart, across gateway replicas, requests arriving together in one Redis call, failing open."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from gateway.http.ratelimit import RateLimiter
from shared.config import Settings
from tests.support.api import AS_CI, AS_OPS, KEYS, PROBLEM, form, stored
from tests.support.proxy import TcpProxy, target_of, url_via
from tests.support.workbooks import csv_bytes, customers


def limited(settings: Settings, **changes: Any) -> Settings:
    """Settings with rate limits on, in a Redis prefix of their own (so no other test's requests count)."""
    return replace(settings, redis_prefix=f"{settings.redis_prefix}rl{uuid.uuid4().hex[:8]}:", **changes)


def limit_headers(response: aiohttp.ClientResponse) -> tuple[int, int, int]:
    h = response.headers
    return int(h["RateLimit-Limit"]), int(h["RateLimit-Remaining"]), int(h["RateLimit-Reset"])


async def test_rate_limits_per_key_with_ratelimit_headers(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    client = await aiohttp_client(
        create_app(limited(settings, api_keys=KEYS, rate_limit_per_min=5, upload_rate_limit_per_min=2))
    )
    seen = []
    for _ in range(5):
        response = await client.get("/jobs", headers=AS_CI)
        assert response.status == 200
        limit, remaining, reset = limit_headers(response)
        seen.append(remaining)
        assert limit == 5 and 0 < reset <= 60
    assert seen == [4, 3, 2, 1, 0]
    refused = await client.get("/customers/1", headers=AS_CI)
    assert refused.status == 429 and refused.content_type == PROBLEM
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 13  # one request every 12 s comes back
    assert limit_headers(refused)[:2] == (5, 0)
    problem = await refused.json()
    assert "5 requests a minute" in problem["detail"] and "this API key" in problem["detail"]
    # Another key has its own allowance; public paths have none.
    other = await client.get("/jobs", headers=AS_OPS)
    assert other.status == 200 and limit_headers(other)[1] == 4
    for _ in range(10):
        health = await client.get("/healthz")
        assert health.status == 200 and "RateLimit-Limit" not in health.headers
    # A 404 counts and says so too.
    missing = await client.get("/customers/999999999", headers=AS_OPS)
    assert missing.status == 404 and limit_headers(missing)[1] == 3


async def test_uploads_have_their_own_lower_limit(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    client = await aiohttp_client(create_app(limited(settings, rate_limit_per_min=50, upload_rate_limit_per_min=2)))
    for i in range(2):
        response = await client.post("/upload", data=form(f"{i}.csv", csv_bytes(customers(1, start=i))))
        assert response.status == 202
        assert limit_headers(response)[:2] == (2, 1 - i)
    before = stored(settings)
    refused = await client.post("/upload", data=form("2.csv", csv_bytes(customers(1))))
    assert refused.status == 429
    assert "2 uploads a minute" in (await refused.json())["detail"]
    assert "this client address" in (await refused.json())["detail"]  # no keys: by address
    assert stored(settings) == before
    response = await client.get("/jobs")
    assert response.status == 200 and limit_headers(response)[:2] == (50, 49)


async def test_limits_hold_across_gateway_replicas(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    shared = limited(settings, api_keys=KEYS, rate_limit_per_min=4)
    first = await aiohttp_client(create_app(shared))
    second = await aiohttp_client(create_app(shared))
    for client in (first, second, first, second):
        assert (await client.get("/jobs", headers=AS_CI)).status == 200
    assert (await second.get("/jobs", headers=AS_CI)).status == 429
    assert (await first.get("/jobs", headers=AS_CI)).status == 429


async def test_the_limiter_refills_and_serves_requests_together(settings: Settings, redis: Any) -> None:
    limiter = RateLimiter(redis, prefix=f"{settings.redis_prefix}unit{uuid.uuid4().hex[:6]}:")
    calls = 0
    script = limiter._script

    async def counting(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await script(**kwargs)

    limiter._script = counting  # type: ignore[method-assign]
    decisions = await asyncio.gather(*(limiter.hit("api", "key:a", 120) for _ in range(120)))
    assert calls == 1  # 120 checks in one event-loop turn: one script call
    assert all(d is not None and d.allowed for d in decisions)
    assert sorted(d.remaining for d in decisions if d is not None) == list(range(120))
    denied = await limiter.hit("api", "key:a", 120)
    assert denied is not None and not denied.allowed and denied.retry_after_s == 1
    assert (await limiter.hit("api", "key:b", 120)) is not None  # another bucket
    await asyncio.sleep(0.6)  # one request every 0.5 s comes back
    again = await limiter.hit("api", "key:a", 120)
    assert again is not None and again.allowed and again.remaining == 0
    assert await limiter.hit("api", "key:a", 0) is None  # limit 0: off


@pytest.fixture
async def redis_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(*target_of(settings.redis_url, 6379))
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_limits_fail_open_when_redis_is_down_and_say_so_once(
    aiohttp_client: Any, settings: Settings, clean: None, redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.http.ratelimit")
    s = limited(settings, rate_limit_per_min=3)
    client = await aiohttp_client(create_app(replace(s, redis_url=url_via(s.redis_url, redis_proxy.port))))
    response = await client.get("/jobs")
    assert response.status == 200 and limit_headers(response)[1] == 2
    await redis_proxy.cut()
    for _ in range(12):  # far over the limit of 3: let through, without RateLimit headers
        response = await client.get("/jobs")
        assert response.status == 200 and "RateLimit-Limit" not in response.headers
    await asyncio.sleep(1.1)  # past the breaker: Redis is tried again, still down
    assert (await client.get("/jobs")).status == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.http.ratelimit"]
    assert sum("rate limits are off" in m for m in messages) == 1, messages
    await redis_proxy.restore()
    await asyncio.sleep(1.1)
    response = await client.get("/jobs")
    assert response.status == 200 and "RateLimit-Limit" in response.headers
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.http.ratelimit"]
    assert sum("enforced again" in m for m in messages) == 1, messages

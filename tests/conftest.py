"""Test fixtures. Every run gets its own MariaDB database and Redis key prefix (and arq queue), so
runs never collide; both are removed at the end. Nothing here fakes MySQL or Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pymysql
import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from shared.config import Settings, load_settings
from shared.customers.cache import CustomerCache
from shared.infra.db import QUIET_SERVER_NOTES, close_pool, open_database
from shared.infra.redis_clients import CacheRedis, cache_redis
from tests.support.openapi_check import CheckedTestClient
from tests.support.redis_servers import LocalCluster, ServersUnavailable

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    # pytest sets each test's warning filters anew: the server notes the code ignores are ignored here too.
    for note in QUIET_SERVER_NOTES:
        config.addinivalue_line("filterwarnings", f"ignore:{note}:pymysql.err.Warning")


def _base_settings(tmp_root: Path) -> Settings:
    run = uuid.uuid4().hex[:10]
    env = dict(os.environ)
    base = load_settings(env)
    mysql = base.mysql
    dsn = f"mysql://{mysql.user}:{mysql.password}@{mysql.host}:{mysql.port}/cit_{run}"
    return replace(
        base,
        mysql_dsn=dsn,
        redis_prefix=f"cit:{run}:",
        upload_dir=str(tmp_root / "uploads"),
        import_batch_size=500,
        job_lease_s=5,
        sweep_interval_s=2,
        api_keys=(),
        log_level="WARNING",
        # The whole run comes from one address: tests of the limits (tests/api/http/test_ratelimit.py) turn them on.
        rate_limit_per_min=0,
        upload_rate_limit_per_min=0,
    )


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    s = _base_settings(tmp_path_factory.mktemp("run"))
    yield s
    try:
        conn = pymysql.connect(host=s.mysql.host, port=s.mysql.port, user=s.mysql.user, password=s.mysql.password)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{s.mysql.database}`")
        conn.close()
    except pymysql.MySQLError:
        pass
    client = sync_redis.Redis.from_url(s.redis_url)
    for pattern in (f"{s.redis_prefix}*",):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    client.close()


def truncate_all(s: Settings) -> None:
    conn = pymysql.connect(
        host=s.mysql.host, port=s.mysql.port, user=s.mysql.user, password=s.mysql.password, database=s.mysql.database
    )
    with conn.cursor() as cur:
        cur.execute("DELETE FROM import_errors")
        cur.execute("DELETE FROM import_jobs")
        cur.execute("DELETE FROM customers")
        cur.execute("DELETE FROM customer_history")
    conn.commit()
    conn.close()
    client = sync_redis.Redis.from_url(s.redis_url)
    keys = [k for k in client.scan_iter(match=f"{s.redis_prefix}*", count=1000)]
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()
    if s.cache_redis_cluster:  # the suite's own cluster (redis_cluster below): nobody else's keys
        with sync_redis.RedisCluster.from_url(s.cache_url) as cluster:
            cluster.flushall(target_nodes=sync_redis.RedisCluster.PRIMARIES)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real 3-master Redis Cluster on free loopback ports, for this run only."""
    try:
        cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    except ServersUnavailable as exc:
        pytest.skip(f"no Redis Cluster: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def cache_backend(request: pytest.FixtureRequest) -> str:
    """Where the cache lives: "redis" (the shared Redis), or "cluster" for a test a module
    parametrizes with it (see on_cache_backend)."""
    return str(getattr(request, "param", "redis"))


def on_cache_backend(request: pytest.FixtureRequest, settings: Settings, backend: str) -> Settings:
    """For a module's `settings` override: the same run's settings, with the cache on the suite's
    Redis Cluster for the "cluster" backend."""
    if backend == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return replace(settings, cache_redis_url=cluster.url, cache_redis_cluster=True)
    return settings


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[object]:
    p = await open_database(settings.mysql, 5)
    yield p
    await close_pool(p)


@pytest.fixture
def clean(settings: Settings, pool: object) -> None:
    """Empty tables and this run's Redis keys before the test (the schema exists: `pool` made it)."""
    truncate_all(settings)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[CacheRedis]:
    """A client of the cache's Redis (a RedisCluster client when the cache is on a cluster)."""
    client = cache_redis(settings)
    yield client
    await client.aclose()


@pytest.fixture
def cache(redis: CacheRedis, settings: Settings) -> CustomerCache:
    return CustomerCache(redis, prefix=settings.redis_prefix, ttl_s=settings.cache_ttl_s)


@pytest.fixture
def aiohttp_client_cls() -> type[TestClient]:
    """Every test client (`client` below and any a test builds with aiohttp_client) checks each
    response it receives against the OpenAPI document: an undeclared status or shape fails the test."""
    return CheckedTestClient


@pytest.fixture
async def client(aiohttp_client, settings: Settings, clean: None) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(settings))

"""The Redis clients of a process, built from the Settings (README "Scaling out").

- The cache (customers, tombstones, list pages, their generation) lives on `Settings.cache_url`:
  one Redis, or with CACHE_REDIS_CLUSTER=true a Redis Cluster (any node's address).
- The queue (arq jobs, the sweep's checks, job event streams, rate limits) lives on
  `Settings.queue_url`: one Redis, or a Sentinel-managed primary (redis+sentinel://).

When both name the same single Redis, one client (and one connection pool) serves both, as before.
"""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis, RedisSettings
from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

from shared.settings import SENTINEL_SCHEME, SentinelAddress, Settings, parse_sentinel_url

CacheRedis = Redis | RedisCluster

# Errors a command is retried on against a Sentinel-managed primary: during a failover the old
# primary refuses writes (redis-py turns READONLY into ConnectionError and asks the sentinels again).
_RETRIED = [redis_errors.ConnectionError, redis_errors.TimeoutError, ConnectionError, TimeoutError]


def sentinel_address(settings: Settings) -> SentinelAddress | None:
    """The sentinels of QUEUE_REDIS_URL, or None when the queue is a plain Redis."""
    if settings.queue_url.startswith(f"{SENTINEL_SCHEME}:"):
        return parse_sentinel_url("QUEUE_REDIS_URL", settings.queue_url)
    return None


def shares_one_redis(settings: Settings) -> bool:
    """The cache and the queue are the same single Redis: one client serves both."""
    return not settings.cache_redis_cluster and settings.cache_url == settings.queue_url


def _sentinel_master(
    address: SentinelAddress, *, timeout_s: float, retries: int, backoff_cap_s: float, **pool: Any
) -> ArqRedis:
    sentinel = Sentinel(
        list(address.sentinels),
        sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    client: ArqRedis = sentinel.master_for(
        address.master,
        redis_class=ArqRedis,
        db=address.db,
        username=address.username,
        password=address.password,
        retry=Retry(ExponentialBackoff(cap=backoff_cap_s, base=0.05), retries),
        retry_on_error=list(_RETRIED),
        **pool,
    )
    return client


def gateway_queue(settings: Settings) -> ArqRedis:
    """The gateway's queue client. Short timeouts: a dead Redis must not hang a request (an upload
    whose enqueue fails is queued by the workers' sweep). Against sentinels, a command is retried a
    few times within ~1.5 s, the length of a failover."""
    address = sentinel_address(settings)
    if address is not None:
        client = _sentinel_master(address, timeout_s=1.0, retries=4, backoff_cap_s=0.5, max_connections=200)
    else:
        connections = ConnectionPool.from_url(
            settings.queue_url, socket_timeout=1.0, socket_connect_timeout=1.0, max_connections=200
        )
        client = ArqRedis(connections)
    client.default_queue_name = settings.queue_name
    return client


def worker_queue(settings: Settings) -> ArqRedis | None:
    """A worker's arq pool when the queue is Sentinel-managed: commands are retried for up to ~30 s,
    so a failover neither stops the worker's poll loop nor loses a finished job's result. None for a
    plain Redis: arq connects from redis_settings() as it always has."""
    address = sentinel_address(settings)
    if address is None:
        return None
    client = _sentinel_master(address, timeout_s=5.0, retries=40, backoff_cap_s=1.0)
    client.default_queue_name = settings.queue_name
    return client


def arq_redis_settings(settings: Settings) -> RedisSettings:
    """arq's RedisSettings for the queue (create_pool and the worker), sentinels included."""
    address = sentinel_address(settings)
    if address is None:
        rs = RedisSettings.from_dsn(settings.queue_url)
    else:
        rs = RedisSettings(
            host=list(address.sentinels),
            sentinel=True,
            sentinel_master=address.master,
            database=address.db,
            username=address.username,
            password=address.password,
        )
    rs.conn_timeout = 2
    rs.conn_retries = 30
    rs.conn_retry_delay = 1
    return rs


def cache_redis(settings: Settings, **options: Any) -> CacheRedis:
    """A client of the cache's Redis, or of its Redis Cluster (topology read from any node)."""
    if settings.cache_redis_cluster:
        return RedisCluster.from_url(settings.cache_url, **options)
    return Redis.from_url(settings.cache_url, **options)

"""The Redis clients of a process, built from the Settings (docs/scaling.md).

- The cache (customers, tombstones, list pages, their generation) lives on `Settings.cache_url`:
  one Redis, or with CACHE_REDIS_CLUSTER=true a Redis Cluster (any node's address).
- The queue (arq jobs, the sweep's checks, job event streams, rate limits) lives on
  `Settings.queue_target` (QUEUE_REDIS_URL, else REDIS_URL, parsed once): one Redis, or a
  Sentinel-managed primary (redis+sentinel://).

When both name the same single Redis, one client (and one connection pool) serves both, as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff

from shared.config import SentinelAddress, Settings

log = logging.getLogger(__name__)

CacheRedis = Redis | RedisCluster

# Errors a command is retried on against a Sentinel-managed primary: during a failover the old
# primary refuses writes (redis-py turns READONLY into ConnectionError and asks the sentinels again).
_RETRIED = [redis_errors.ConnectionError, redis_errors.TimeoutError, ConnectionError, TimeoutError]


class _LinearPacking(AbstractConnection):
    """redis-py's command packing, byte for byte, in time linear in the number of arguments.

    redis-py (5.x) re-joins its whole pending buffer for every argument, which makes a command of
    thousands of small arguments quadratic: the cache's keep-newer script takes two keys per document
    (every key a script touches must be in KEYS), 4,000 for a batch of 2,000 documents, and packing
    them cost ~8x more than the rest of the call. Values past the buffer cutoff (and memoryviews) are
    still sent as separate chunks, uncopied."""

    def pack_command(self, *args: Any) -> list[bytes]:
        assert not isinstance(args[0], float)
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        elif b" " in args[0]:
            args = tuple(args[0].split()) + args[1:]
        cutoff = self._buffer_cutoff
        output: list[bytes] = []
        pieces = [b"*%d\r\n" % len(args)]
        for arg in map(self.encoder.encode, args):
            if len(arg) > cutoff or isinstance(arg, memoryview):
                pieces.append(b"$%d\r\n" % len(arg))
                output.append(b"".join(pieces))
                output.append(arg)
                pieces = [b"\r\n"]
            else:
                pieces.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        output.append(b"".join(pieces))
        return output


class LinearPackingConnection(_LinearPacking, Connection):
    pass


class LinearPackingSSLConnection(_LinearPacking, SSLConnection):
    pass


class LinearPackingUnixConnection(_LinearPacking, UnixDomainSocketConnection):
    pass


def _connection_class(url: str) -> type[AbstractConnection]:
    if url.startswith("rediss:"):
        return LinearPackingSSLConnection
    if url.startswith("unix:"):
        return LinearPackingUnixConnection
    return LinearPackingConnection


def sentinel_address(settings: Settings) -> SentinelAddress | None:
    """The sentinels of QUEUE_REDIS_URL, or None when the queue is a plain Redis."""
    return settings.queue_target.sentinel


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
            settings.queue_url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            max_connections=200,
            connection_class=_connection_class(settings.queue_url),
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


async def follow_primary(client: Redis, interval_s: float = 0.5) -> None:
    """Until cancelled, for a Sentinel-managed client: ask the sentinels which Redis is the primary
    every `interval_s`; when it changed, drop the connections to the old one at once. Without this a
    pooled connection keeps writing to the old primary until the sentinels demote it (~10 s after a
    failover), and what it wrote there is lost. A plain Redis client returns at once."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return
    while True:
        await asyncio.sleep(interval_s)
        before = pool.master_address
        try:
            # Idle connections to a primary that is no longer named are closed here; busy ones when
            # they are given back (the pool no longer owns them).
            now = await pool.get_master_address()
        except (redis_errors.RedisError, OSError) as exc:
            log.warning("sentinels unavailable", extra={"error": repr(exc)})
            continue
        if before is not None and now != before:
            moved = {"old": f"{before[0]}:{before[1]}", "new": f"{now[0]}:{now[1]}"}
            log.warning("the queue's primary moved", extra=moved)


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
    return Redis.from_url(settings.cache_url, connection_class=_connection_class(settings.cache_url), **options)

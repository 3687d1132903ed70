"""Scaling out (docs/scaling.md): the cache on a Redis Cluster, the queue on a Sentinel-managed
Redis, both real servers the suite starts on loopback ports (tests/support/redis_servers.py).

The cache consistency and CRUD tests also run against the cluster ([cluster] in
test_cache_consistency.py and test_customers_api.py); here: the key layout, the settings, and an
import through real `python -m gateway` / `python -m worker` processes whose queue fails over to
the replica in the middle (SENTINEL FAILOVER) while the cache lives on the cluster.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis.crc import key_slot

from shared.config import Settings, SettingsError, load_settings
from shared.customers.cache import CustomerCache
from shared.infra.redis_clients import arq_redis_settings, sentinel_address, shares_one_redis
from tests.conftest import truncate_all
from tests.support.procs import (
    Service,
    free_port,
    get_json,
    service_env,
    sse_events,
    upload,
    wait_http_ready,
    wait_job,
)
from tests.support.redis_servers import LocalCluster, LocalSentinels, ServersUnavailable
from tests.support.workbooks import csv_bytes, customers


def test_a_customers_keys_share_a_slot_and_so_do_the_lists() -> None:
    cache = CustomerCache(sync_redis.Redis(), prefix="run:1:")  # type: ignore[arg-type]  # no I/O here
    for customer_id in (1, 42, 10**12):
        assert cache.key(customer_id) == f"run:1:{{customer:{customer_id}}}"
        assert key_slot(cache.key(customer_id).encode()) == key_slot(cache.tombstone_key(customer_id).encode())
    assert key_slot(cache.generation_key.encode()) == key_slot(cache.page_key("abc").encode())
    # Different customers spread over the cluster rather than all landing in one slot.
    assert len({key_slot(cache.key(i).encode()) for i in range(100)}) > 90


def test_every_key_of_a_script_is_declared() -> None:
    """No key name is built inside a script (a cluster refuses keys outside the declared slot): every
    key a redis.call touches is KEYS[...] or a local taken from KEYS."""
    from shared.customers import cache as cache_module

    for script in (cache_module._PUT_NEWER, cache_module._GET_PAGE):
        assert " .. " not in script and "prefix" not in script
        for command, key in re.findall(r"redis\.call\('(\w+)', ([^,)]+)", script):
            assert re.fullmatch(r"KEYS\[\d+\]|key|tomb", key), (command, key)
    assert "local key, tomb = KEYS[n], KEYS[n + 1]" in cache_module._PUT_NEWER


def test_the_scaling_settings_are_read_and_checked() -> None:
    s = load_settings(
        {
            "QUEUE_REDIS_URL": "redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2:26380/queue/2",
            "CACHE_REDIS_URL": "redis://10.0.0.9:7000/0",
            "CACHE_REDIS_CLUSTER": "true",
        },
        cwd=Path("/nonexistent"),
    )
    address = sentinel_address(s)
    assert address is not None
    assert address.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (address.master, address.db, address.password) == ("queue", 2, "secret")
    rs = arq_redis_settings(s)
    assert rs.sentinel and rs.sentinel_master == "queue" and rs.host == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert not shares_one_redis(s)

    default = load_settings({"REDIS_URL": "redis://10.0.0.3:6379/1"}, cwd=Path("/nonexistent"))
    assert default.cache_url == default.queue_url == "redis://10.0.0.3:6379/1"
    assert shares_one_redis(default) and sentinel_address(default) is None

    for env, named in (
        ({"QUEUE_REDIS_URL": "redis+sentinel://10.0.0.1:26379"}, "QUEUE_REDIS_URL"),
        ({"QUEUE_REDIS_URL": "redis+sentinel://10.0.0.1/queue"}, "QUEUE_REDIS_URL"),
        ({"QUEUE_REDIS_URL": "redis+sentinel://10.0.0.1:26379/queue/x"}, "QUEUE_REDIS_URL"),
        ({"QUEUE_REDIS_URL": "http://10.0.0.1"}, "QUEUE_REDIS_URL"),
        ({"CACHE_REDIS_URL": "sentinel://x"}, "CACHE_REDIS_URL"),
        ({"CACHE_REDIS_CLUSTER": "maybe"}, "CACHE_REDIS_CLUSTER"),
        ({"CACHE_REDIS_CLUSTER": "true", "REDIS_URL": "unix:///tmp/redis.sock"}, "REDIS_URL"),
    ):
        with pytest.raises(SettingsError, match=named):
            load_settings(env, cwd=Path("/nonexistent"))


# -- the queue fails over while the cache is on the cluster ------------------------------------------


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[LocalSentinels]:
    try:
        servers = LocalSentinels(tmp_path / "sentinel").start()
    except ServersUnavailable as exc:
        pytest.skip(f"no Redis Sentinel: {exc}")
    yield servers
    servers.stop()


def _job(base: str, job_id: str) -> dict:
    _, job = get_json(f"{base}/jobs/{job_id}")
    return dict(job)


@pytest.mark.e2e
def test_an_import_survives_a_sentinel_failover_with_the_cache_on_a_cluster(
    settings: Settings, pool: object, redis_cluster: LocalCluster, sentinels: LocalSentinels, tmp_path: Path
) -> None:
    scaled = replace(settings, cache_redis_url=redis_cluster.url, cache_redis_cluster=True)
    truncate_all(scaled)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(
        scaled,
        PORT=port,
        QUEUE_REDIS_URL=sentinels.url,
        CACHE_REDIS_URL=redis_cluster.url,
        CACHE_REDIS_CLUSTER="true",
        IMPORT_BATCH_SIZE=250,
    )
    services = [Service("gateway", env, tmp_path, "gateway")]
    try:
        wait_http_ready(base, services[0])
        services.append(Service("worker", env, tmp_path, "worker"))
        rows = 20_000
        status, first = upload(base, "first.csv", csv_bytes(customers(rows)))
        assert status == 202, first
        deadline = time.monotonic() + 60
        while (job := _job(base, first["job_id"]))["rows_read"] < 2000:
            assert job["status"] not in ("completed", "failed"), job
            assert time.monotonic() < deadline, "\n".join(s.output()[-3000:] for s in services)
            time.sleep(0.05)

        # A client follows the first job live from before the failover to its end.
        follower = EventFollower(f"{base}/jobs/{first['job_id']}/events")
        old = sentinels.start_failover()
        # Uploaded while the sentinels move the primary: queued now, or by the sweep if that failed.
        status, second = upload(base, "second.csv", csv_bytes(customers(3000, start=rows)))
        assert status == 202, second
        new = sentinels.wait_failover(old)
        during = _job(base, first["job_id"])
        assert during["status"] == "running" and during["rows_read"] < rows, during

        logs = lambda: "\n".join(f"--- {s.name}\n{s.output()[-4000:]}" for s in services)  # noqa: E731
        done = wait_job(base, first["job_id"], timeout=150)
        assert done["status"] == "completed", logs()
        counters = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_invalid")
        assert tuple(done[c] for c in counters) == (rows, rows, 0, 0, 0), done
        later = wait_job(base, second["job_id"], timeout=150)
        assert later["status"] == "completed", logs()
        assert tuple(later[c] for c in counters) == (3000, 3000, 0, 0, 0), later

        # The queue really moved. The live view came through it: the client following the job saw
        # it complete with its final counters. (Events the worker wrote to the old primary between
        # the promotion and the moment the sentinels named the new one are lost with the old
        # primary's data, as any write there is: Sentinel replicates asynchronously. The gateway
        # checks the job's row whenever the stream is silent, so the final event still arrives.)
        assert sentinels.master_port() == new != old
        followed = follower.result(timeout=30)
        assert followed and followed[-1][0] == "completed", followed
        assert tuple(followed[-1][1][c] for c in counters) == (rows, rows, 0, 0, 0), followed[-1]
        assert all(kind == "progress" for kind, _ in followed[:-1]), followed
        # The import warmed the cache on the cluster, and reads are served from it.
        customer_id = done.get("last_id") or _first_id(scaled)
        status, _ = get_json(f"{base}/customers/{customer_id}")
        assert status == 200
        cluster = sync_redis.RedisCluster.from_url(redis_cluster.url)
        try:
            cached = cluster.get(f"{scaled.redis_prefix}{{customer:{customer_id}}}")
        finally:
            cluster.close()
        assert cached is not None
    finally:
        for service in services:
            service.stop()


class EventFollower:
    """A client of GET /jobs/{id}/events in a thread: the (event, document) pairs until the stream ends."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._follow, args=(url,), daemon=True)
        self._thread.start()

    def _follow(self, url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=60) as stream:
                for event in sse_events(stream):
                    self.events.append(event)
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the event stream did not end; so far: {self.events}"
        assert self.error is None, repr(self.error)
        return self.events


def _first_id(settings: Settings) -> int:
    import pymysql

    m = settings.mysql
    conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password, database=m.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT MIN(id) FROM customers")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 4, b"p:{customer:1}", b"p:{customer:1}:tomb", "p:{customer:2}", "ü", 300, b"x" * 9000),
        ("SET", "k", memoryview(b"value"), "EX", 300),
        ("CONFIG GET", "maxmemory"),
        (b"CLIENT SETNAME", b"name"),
        ("MGET", *(f"key{i}" for i in range(5000))),
        ("INCRBYFLOAT", "k", 1.5),
    ],
    ids=["script", "memoryview", "two-word-name", "two-word-bytes", "many-keys", "float"],
)
def test_the_linear_packing_sends_the_same_bytes_as_redis_py(args: tuple) -> None:
    from redis.asyncio.connection import Connection

    from shared.infra.redis_clients import LinearPackingConnection

    def sent(chunks: list) -> bytes:
        return b"".join(bytes(chunk) for chunk in chunks)

    assert sent(LinearPackingConnection().pack_command(*args)) == sent(Connection().pack_command(*args))

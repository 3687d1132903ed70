"""The gateway's Prometheus metrics (prometheus-client), one Metrics object per app.

Counted as requests go: requests by method, route and status with their latency, customer reads by
cache outcome, uploads by outcome and their bytes. Read at scrape time (shared state, so never kept
per process): the arq queue's length in Redis and the unfinished jobs by status in MySQL. With
PROMETHEUS_MULTIPROC_DIR set, whichever gateway process answers adds up every process's figures
(see shared.infra.prometheus).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import aiomysql
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from shared.imports import job_repo
from shared.infra.db import DatabaseUnavailable, connection, mysql_deadline
from shared.infra.prometheus import FAST_BUCKETS, exposition, own_registry, scrape_registry, serving_registry

log = logging.getLogger(__name__)

CACHE_RESULTS = ("hit", "miss", "bypass")
UPLOAD_OUTCOMES = ("accepted", "rejected", "too_large")
SCRAPE_TIMEOUT_S = 2.0


class Metrics:
    def __init__(self, multiproc_dir: str = "") -> None:
        self.registry = own_registry()
        r = self.registry
        self.requests = Counter(
            "http_requests", "HTTP requests by method, route and status.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency by method and route, from the first byte read to the response handed over.",
            ["method", "route"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "customer_cache", "Customer reads by cache outcome (hit, miss, bypass).", ["result"], registry=r
        )
        self.uploads = Counter(
            "uploads", "Uploads by outcome (accepted, rejected, too_large).", ["outcome"], registry=r
        )
        self.upload_bytes = Counter("upload_bytes", "Bytes of the uploads accepted.", registry=r)
        self.uploads_in_progress = Gauge(
            "uploads_in_progress", "Uploads being received now.", registry=r, multiprocess_mode="livesum"
        )
        self.gc_frozen = Gauge(
            "gc_frozen_objects",
            "Objects the gateway moved to the collector's permanent generation once started (gc.freeze): "
            "full collections skip them.",
            registry=r,
            multiprocess_mode="livemax",
        )
        for result in CACHE_RESULTS:
            self.cache.labels(result)
        for outcome in UPLOAD_OUTCOMES:
            self.uploads.labels(outcome)
        self._serving = serving_registry(r, multiproc_dir)
        # (method, route, status) -> the counter and histogram children: labels() costs a lock and
        # a dict lookup each, and this runs on every request.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def cache_result(self, result: str) -> None:
        self.cache.labels(result).inc()

    def upload(self, outcome: str, size_bytes: int = 0) -> None:
        self.uploads.labels(outcome).inc()
        if size_bytes:
            self.upload_bytes.inc(size_bytes)

    async def render(self, pool: aiomysql.Pool, redis: Redis, queue_name: str) -> bytes:
        """The text format: this process's (or every process's) figures, then the shared state read now."""
        depth, jobs = await asyncio.gather(_queue_depth(redis, queue_name), _jobs_by_status(pool))
        return exposition(self._serving, scrape_registry(_SharedState(depth, jobs)))


class _SharedState(Collector):
    def __init__(self, depth: tuple[int, int] | None, jobs: dict[str, int] | None) -> None:
        self.depth = depth
        self.jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # A source that did not answer in time leaves its series out (a gap, not a wrong zero).
        if self.depth is not None:
            family = GaugeMetricFamily(
                "job_queue_depth",
                "arq jobs in the Redis queue: ready (due now: imports, webhook deliveries) or deferred (retries "
                "and the workers' next sweep, due later).",
                labels=["state"],
            )
            family.add_metric(["ready"], self.depth[0])
            family.add_metric(["deferred"], self.depth[1])
            yield family
        if self.jobs is not None:
            family = GaugeMetricFamily(
                "import_jobs", "Unfinished import jobs by status (uploaded, queued, running).", labels=["status"]
            )
            for status in job_repo.UNFINISHED:
                family.add_metric([status], self.jobs.get(status, 0))
            yield family


async def _queue_depth(redis: Redis, queue_name: str) -> tuple[int, int] | None:
    """(ready, deferred): arq scores each queued job with the time it is due, in ms."""
    now_ms = int(time.time() * 1000)
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            async with redis.pipeline(transaction=False) as pipe:
                pipe.zcount(queue_name, "-inf", now_ms)
                pipe.zcount(queue_name, f"({now_ms}", "+inf")
                ready, deferred = await pipe.execute()
            return int(ready), int(deferred)
    except Exception as exc:  # Redis down or slow: the series is left out of this scrape
        log.warning("metrics: queue depth unavailable", extra={"error": repr(exc)})
        return None


async def _jobs_by_status(pool: aiomysql.Pool) -> dict[str, int] | None:
    try:
        async with mysql_deadline(SCRAPE_TIMEOUT_S):
            async with connection(pool) as conn, conn.cursor() as cur:
                return await job_repo.count_unfinished(cur)
    except (DatabaseUnavailable, TimeoutError) as exc:
        log.warning("metrics: job counts unavailable", extra={"error": repr(exc)})
        return None

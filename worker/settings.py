"""arq settings built from the service's Settings (read once at start-up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import func

from shared.config import Settings
from shared.customers.cache import REDIS_ERRORS, CustomerCache
from shared.imports.events import JobEvents
from shared.imports.queue import (
    DELETE_FUNCTION,
    IMPORT_FUNCTION,
    PART_FUNCTION,
    REVERT_FUNCTION,
    WEBHOOK_FUNCTION,
    enqueue_delivery,
    enqueue_part,
)
from shared.imports.webhooks import webhook_session
from shared.infra.db import close_pool, open_database
from shared.infra.redis_clients import arq_redis_settings, cache_redis, follow_primary, worker_queue
from shared.infra.storage import open_store
from worker.importer import WorkerDeps, import_part, import_workbook
from worker.job_metrics import (
    WorkerMetrics,
    instrumented_import,
    instrumented_sweep,
    instrumented_webhook,
    start_server,
    stop_server,
)
from worker.pipeline.child import ParserSpares
from worker.sweeper import sweep_jobs
from worker.undo import delete_customers, revert_job
from worker.webhook_delivery import deliver_webhook

# Long enough for the slowest import; crash recovery does not depend on it (see worker.sweeper).
IMPORT_TIMEOUT_S = 6 * 3600
SWEEP_NAME = sweep_jobs.__name__
WEBHOOK_JOB_TIMEOUT_S = 120


def quiet_sweeps(record: logging.LogRecord) -> bool:
    """arq logs two lines for every job it runs, the sweep's every few seconds included: drop those
    (the sweep logs what it re-queues itself), keep every other line."""
    args = record.args if isinstance(record.args, tuple) else ()
    return not any(isinstance(arg, str) and f"cron:{SWEEP_NAME}" in arg for arg in args)


def redis_settings(settings: Settings) -> RedisSettings:
    """The queue's Redis (QUEUE_REDIS_URL, default REDIS_URL), sentinels included."""
    return arq_redis_settings(settings)


def _on_startup(settings: Settings) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """arq's on_startup: the process's database pool, upload store, cache, webhook session and metrics,
    handed to the jobs as ctx["deps"]."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        pool = await open_database(settings.mysql, settings.mysql_pool_size)
        store = open_store(settings)
        await store.open()
        # The cache's own client, on the queue's Redis or another, or a Redis Cluster (docs/scaling.md); its
        # connections pack the warm-up's thousands of script keys in linear time.
        cache_client = ctx["cache_redis"] = cache_redis(settings, socket_timeout=5.0, socket_connect_timeout=2.0)
        cache = CustomerCache(cache_client, prefix=settings.redis_prefix, ttl_s=settings.cache_ttl_s)
        ctx["http"] = webhook_session(allow_private=settings.webhook_allow_private)
        ctx["follow_primary"] = asyncio.create_task(follow_primary(ctx["redis"]))  # a no-op without sentinels
        metrics = ctx["metrics"] = WorkerMetrics(settings.prometheus_multiproc_dir)
        ctx["metrics_server"] = await start_server(metrics, settings)

        async def queue_webhook(job_id: str) -> None:
            with contextlib.suppress(*REDIS_ERRORS):  # owed in MySQL: the sweep queues it otherwise
                await enqueue_delivery(ctx["redis"], settings, job_id, "0")

        async def queue_part(job_id: str, part: int, arq_id: str) -> bool:
            return await enqueue_part(ctx["redis"], settings, job_id, part, arq_id)

        ctx["deps"] = WorkerDeps(
            settings=settings,
            pool=pool,
            cache=cache,
            store=store,
            events=JobEvents(ctx["redis"], settings.redis_prefix),
            bulk_load=settings.import_bulk_load,
            on_finished=queue_webhook,
            metrics=metrics,
            enqueue_part=queue_part,
            parsers=ParserSpares(),
        )
        ctx["deps"].parsers.refill()

    return on_startup


def _on_shutdown(settings: Settings) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """arq's on_shutdown: closes what on_startup opened."""

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        deps: WorkerDeps | None = ctx.get("deps")
        if deps is not None:
            if deps.parsers is not None:
                await deps.parsers.close()
            await close_pool(deps.pool)
            await deps.store.close()
        if "http" in ctx:
            await ctx["http"].close()
        await stop_server(ctx.get("metrics_server"), settings)
        if "cache_redis" in ctx:
            await ctx["cache_redis"].aclose()
        if "follow_primary" in ctx:
            ctx["follow_primary"].cancel()

    return on_shutdown


def build_worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for arq.Worker."""

    logging.getLogger("arq.worker").addFilter(quiet_sweeps)

    step = max(1, min(settings.sweep_interval_s, 60))

    return {
        "functions": [
            func(instrumented_import(import_workbook), name=IMPORT_FUNCTION, timeout=IMPORT_TIMEOUT_S, max_tries=20),
            # One part of a job split over several workers (timed and counted as part of its job).
            func(import_part, name=PART_FUNCTION, timeout=IMPORT_TIMEOUT_S, max_tries=20),
            # Undo an import (or a bulk delete); delete the customers a search matches (worker.undo).
            func(revert_job, name=REVERT_FUNCTION, timeout=IMPORT_TIMEOUT_S, max_tries=20),
            func(delete_customers, name=DELETE_FUNCTION, timeout=IMPORT_TIMEOUT_S, max_tries=20),
            func(
                instrumented_webhook(deliver_webhook), name=WEBHOOK_FUNCTION, timeout=WEBHOOK_JOB_TIMEOUT_S, max_tries=3
            ),
        ],
        "cron_jobs": [
            cron(
                instrumented_sweep(sweep_jobs),
                second=set(range(0, 60, step)),
                run_at_startup=True,
                unique=True,
                timeout=60,
            )
        ],
        "redis_settings": redis_settings(settings),
        # Against sentinels: a pool whose commands ride out a failover (None: arq connects itself).
        "redis_pool": worker_queue(settings),
        "queue_name": settings.queue_name,
        "on_startup": _on_startup(settings),
        "on_shutdown": _on_shutdown(settings),
        "max_jobs": settings.worker_concurrency,
        "job_timeout": IMPORT_TIMEOUT_S,
        "keep_result": 600,
        "poll_delay": 0.2,
        "health_check_key": f"{settings.queue_name}:health-check",
    }

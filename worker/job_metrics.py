"""The worker's Prometheus metrics, served on WORKER_METRICS_PORT (0: off) from the worker's own loop.

One WorkerMetrics object per worker process, made at start-up and kept in arq's ctx["metrics"] and
in WorkerDeps. The arq functions are wrapped here (`instrumented`), so the import, webhook and
sweep modules stay free of metrics code: only the batch commit calls `batch()` itself.

Several workers on one host: with PROMETHEUS_MULTIPROC_DIR set (deploy/run.sh sets one folder for
its workers) they all bind the port with SO_REUSEPORT and whichever answers a scrape adds up every
worker's files. Without it each worker needs a port of its own: a second one finding the port taken
logs a warning and serves no metrics (one process per container or pod needs neither).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from aiohttp import web
from arq import Retry
from prometheus_client import Counter, Gauge, Histogram

from shared.config import Settings
from shared.customers.cache import CacheUnavailable
from shared.imports import job_repo
from shared.imports.queue import Outcome
from shared.infra.db import DatabaseUnavailable, connection
from shared.infra.prometheus import (
    CONTENT_TYPE,
    FAST_BUCKETS,
    SLOW_BUCKETS,
    exposition,
    mark_dead,
    multiprocess_active,
    own_registry,
    serving_registry,
)

log = logging.getLogger(__name__)

ROW_OUTCOMES = ("inserted", "updated", "unchanged", "invalid")
# Why an import attempt did not complete. The job failed: invalid_file (the file, its header or the
# options), too_many_rows (MAX_ROWS_PER_JOB), gave_up (an internal error on its last attempt, or the
# sweep gave up on it). The attempt stopped and the job goes on later: crashed (an unexpected error),
# unavailable (MySQL or Redis down), lease_lost (another worker took the job over).
FAILURE_REASONS = ("invalid_file", "too_many_rows", "gave_up", "crashed", "unavailable", "lease_lost")
# The failure reason an attempt's Outcome is counted under, besides FAILED's (read from the job's error).
FAILURE_OF_OUTCOME = {Outcome.LEASE_LOST: "lease_lost"}
WEBHOOK_OUTCOMES = ("delivered", "retrying", "failed", "error")


class WorkerMetrics:
    def __init__(self, multiproc_dir: str = "") -> None:
        self.registry = own_registry()
        r = self.registry
        self.rows = Counter("import_rows", "Rows committed by outcome (dry runs left out).", ["outcome"], registry=r)
        self.batch_latency = Histogram(
            "import_batch_duration_seconds",
            "Time to write and commit one batch (upsert, counters, checkpoint).",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.job_duration = Histogram(
            "import_job_duration_seconds",
            "Wall time of the import attempt that ended a job, by how it ended (completed, failed).",
            ["status"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "import_failures", "Import attempts that did not complete, by reason.", ["reason"], registry=r
        )
        self.webhooks = Counter(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retrying, failed: given up, error: not attempted).",
            ["outcome"],
            registry=r,
        )
        self.takeovers = Counter(
            "sweep_takeovers", "Imports nobody was working on that the lease sweep queued again.", registry=r
        )
        self.running = Gauge(
            "import_jobs_running", "Import attempts running now.", registry=r, multiprocess_mode="livesum"
        )
        for outcome in ROW_OUTCOMES:
            self.rows.labels(outcome)
        for status in (job_repo.COMPLETED, job_repo.FAILED):
            self.job_duration.labels(status)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhooks.labels(outcome)
        self._serving = serving_registry(r, multiproc_dir)

    def batch(self, dry_run: bool, inserted: int, updated: int, unchanged: int, invalid: int, seconds: float) -> None:
        self.batch_latency.observe(seconds)
        if dry_run:
            return
        for outcome, count in zip(ROW_OUTCOMES, (inserted, updated, unchanged, invalid), strict=True):
            if count:
                self.rows.labels(outcome).inc(count)

    def render(self) -> bytes:
        return exposition(self._serving)


def failure_reason(error: str | None) -> str:
    """The reason label of a job that failed, from the error it recorded."""
    text = error or ""
    if "MAX_ROWS_PER_JOB" in text:
        return "too_many_rows"
    if text.startswith(("internal error", "gave up")):
        return "gave_up"
    return "invalid_file"


Job = TypeVar("Job", bound=Callable[..., Awaitable[Any]])


def instrumented_import(fn: Job) -> Job:
    """The import job, timed and its outcome counted (see FAILURE_REASONS)."""

    @functools.wraps(fn)
    async def run(ctx: dict[str, Any], job_id: str) -> Any:
        metrics: WorkerMetrics | None = ctx.get("metrics")
        if metrics is None:
            return await fn(ctx, job_id)
        started = time.monotonic()
        metrics.running.inc()
        try:
            result = await fn(ctx, job_id)
        except Retry as exc:
            cause = exc.__cause__
            unavailable = isinstance(cause, DatabaseUnavailable | CacheUnavailable)
            metrics.failures.labels("unavailable" if unavailable else "crashed").inc()
            raise
        except Exception:
            metrics.failures.labels("crashed").inc()
            raise
        finally:
            metrics.running.dec()
        outcome = Outcome(result)
        if outcome.ended:
            metrics.job_duration.labels(outcome.value).observe(time.monotonic() - started)
        if outcome == Outcome.FAILED:
            metrics.failures.labels(failure_reason(await _job_error(ctx, job_id))).inc()
        elif (reason := FAILURE_OF_OUTCOME.get(outcome)) is not None:
            metrics.failures.labels(reason).inc()
        return result

    return cast(Job, run)


async def _job_error(ctx: dict[str, Any], job_id: str) -> str | None:
    try:
        async with connection(ctx["deps"].pool) as conn, conn.cursor() as cur:
            job = await job_repo.get(cur, job_id)
    except DatabaseUnavailable:
        return None
    return None if job is None else job.error


def instrumented_webhook(fn: Job) -> Job:
    """The webhook delivery job: each attempt counted by outcome."""

    @functools.wraps(fn)
    async def run(ctx: dict[str, Any], job_id: str) -> Any:
        metrics: WorkerMetrics | None = ctx.get("metrics")
        try:
            result = await fn(ctx, job_id)
        except Exception:
            if metrics is not None:
                metrics.webhooks.labels("error").inc()
            raise
        outcome = {"delivered": "delivered", "pending": "retrying", "failed": "failed"}.get(result)
        if metrics is not None and outcome is not None:
            metrics.webhooks.labels(outcome).inc()
        return result

    return cast(Job, run)


def instrumented_sweep(fn: Job) -> Job:
    """The sweep (arq cron): the imports it re-queued are takeovers. Keeps the function's name, which
    names the cron job."""

    @functools.wraps(fn)
    async def run(ctx: dict[str, Any]) -> Any:
        queued = await fn(ctx)
        metrics: WorkerMetrics | None = ctx.get("metrics")
        if metrics is not None and isinstance(queued, int) and queued:
            metrics.takeovers.inc(queued)
        return queued

    return cast(Job, run)


async def start_server(metrics: WorkerMetrics, settings: Settings) -> web.AppRunner | None:
    """Serve GET /metrics on WORKER_METRICS_PORT in this event loop; None when off or the port is taken."""
    port = settings.worker_metrics_port
    if not port:
        return None

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"}
        )

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # Shared by the workers of a host only when they add up each other's figures (multiprocess mode).
    shared = multiprocess_active() and bool(settings.prometheus_multiproc_dir)
    site = web.TCPSite(runner, settings.host, port, reuse_port=shared or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        log.warning(
            "worker metrics not served: the port is taken (give each worker its own WORKER_METRICS_PORT, "
            "or set PROMETHEUS_MULTIPROC_DIR so that they share it)",
            extra={"port": port, "error": str(exc)},
        )
        return None
    log.info("worker metrics served", extra={"port": port, "multiprocess": shared})
    return runner


async def stop_server(runner: web.AppRunner | None, settings: Settings) -> None:
    if runner is not None:
        await runner.cleanup()
    mark_dead(settings.prometheus_multiproc_dir)

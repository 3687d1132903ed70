"""Submit uploads and run a real arq worker in burst mode, in the test's process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomysql
from arq import create_pool
from arq.connections import ArqRedis
from arq.worker import Worker

from shared.config import Settings
from shared.imports.events import JobEvents
from shared.imports.service import JobService, UploadRequest, get_job
from shared.infra.storage import UploadStore
from worker.settings import build_worker_settings, redis_settings


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


@asynccontextmanager
async def job_service(settings: Settings, pool: aiomysql.Pool) -> AsyncIterator[JobService]:
    """The gateway's JobService, on a queue client of its own."""
    arq: ArqRedis = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    try:
        yield JobService(settings, pool, arq, UploadStore(settings.upload_dir), JobEvents(arq, settings.redis_prefix))
    finally:
        await arq.aclose()


async def submit(settings: Settings, pool: aiomysql.Pool, filename: str, data: bytes, dry_run: bool = False) -> str:
    async with job_service(settings, pool) as jobs:
        received = await jobs.receive(_chunks(data))
        doc = await jobs.upload(UploadRequest(upload=received, filename=filename, dry_run=dry_run))
    return str(doc["job_id"])


async def run_burst_worker(settings: Settings) -> None:
    kwargs = build_worker_settings(settings)
    kwargs["cron_jobs"] = []
    worker = Worker(**kwargs, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def import_file(
    settings: Settings, pool: aiomysql.Pool, filename: str, data: bytes, dry_run: bool = False
) -> dict[str, Any]:
    job_id = await submit(settings, pool, filename, data, dry_run)
    await run_burst_worker(settings)
    return await get_job(pool, job_id)


def read(path: Path) -> bytes:
    return path.read_bytes()

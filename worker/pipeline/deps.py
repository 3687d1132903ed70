"""What a worker's jobs share: settings, the MySQL pool, the cache, the upload store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomysql

from shared.config import Settings
from shared.customers.cache import CustomerCache
from shared.imports.events import JobEvents
from shared.infra.storage import UploadStore
from worker.job_metrics import WorkerMetrics
from worker.pipeline.child import ParserSpares


@dataclass
class WorkerDeps:
    settings: Settings
    pool: aiomysql.Pool
    cache: CustomerCache
    store: UploadStore
    events: JobEvents | None = None
    bulk_load: bool = True
    # Called with the job id once a job with a callback_url has ended: queues its webhook.
    on_finished: Callable[[str], Awaitable[None]] | None = None
    metrics: WorkerMetrics | None = None
    # Queues one part of a job split over several workers: (job id, part, arq job id) -> queued.
    enqueue_part: Callable[[str, int, str], Awaitable[bool]] | None = None
    # A parser process started ahead for the next import (None: each import starts its own).
    parsers: ParserSpares | None = None

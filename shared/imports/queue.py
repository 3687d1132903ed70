"""The queue contract between the gateway and the workers: arq function names, job ids, enqueueing,
and what a run of a job answers (Outcome).

Only a job's id travels through the queue (arq pickles arguments); the durable state is the job's row.
The ids make enqueueing idempotent: arq refuses a second job of an id it still holds, so a job queued
twice (the upload and the sweep) runs once; the sweep's re-queues add the attempt and the sweep's tick.
"""

from __future__ import annotations

from enum import StrEnum

from arq.connections import ArqRedis

from shared.config import Settings

IMPORT_FUNCTION = "import_workbook"
PART_FUNCTION = "import_part"
WEBHOOK_FUNCTION = "deliver_webhook"
REVERT_FUNCTION = "revert_job"
DELETE_FUNCTION = "delete_customers"
# The arq function that runs a job of each kind (shared.imports.job_repo: import, revert, delete).
FUNCTION_OF_KIND = {"import": IMPORT_FUNCTION, "revert": REVERT_FUNCTION, "delete": DELETE_FUNCTION}


class Outcome(StrEnum):
    """What a run of an import (or of one of its parts) answers arq; the worker's metrics count them."""

    COMPLETED = "completed"
    FAILED = "failed"  # the file cannot be imported, or the job gave up: the job's row says why
    SKIPPED = "skipped"  # finished, or held by another worker: nothing to do
    LEASE_LOST = "lease-lost"  # another worker (or a cancel) took the job: stopped without committing
    SPLIT = "split"  # split into parts that other runs import (the job's lease handed back)

    @property
    def ended(self) -> bool:
        """The job ended in this run (its duration is measured)."""
        return self in (Outcome.COMPLETED, Outcome.FAILED)


def first_arq_id(job_id: str) -> str:
    """The arq id of a job's first run (a re-queue by the sweep adds attempt and tick)."""
    return f"import:{job_id}"


def requeued_arq_id(job_id: str, attempts: int, tick: int) -> str:
    """A fresh id for the sweep's re-queue: the first may still sit "in progress" in arq after a SIGKILL."""
    return f"{first_arq_id(job_id)}:{attempts}:{tick}"


def first_part_id(job_id: str, part: int) -> str:
    return f"part:{job_id}:{part}"


def requeued_part_id(job_id: str, part: int, attempts: int, tick: int) -> str:
    return f"{first_part_id(job_id, part)}:{attempts}:{tick}"


def webhook_arq_id(job_id: str, key: str) -> str:
    """One delivery attempt's id: `key` is the attempt number (or the sweep's attempts:tick)."""
    return f"webhook:{job_id}:{key}"


async def enqueue_import(arq: ArqRedis, settings: Settings, job_id: str, arq_id: str | None = None) -> bool:
    """Queue an import; False when arq already holds a job of that id."""
    job = await arq.enqueue_job(
        IMPORT_FUNCTION, job_id, _job_id=arq_id or first_arq_id(job_id), _queue_name=settings.queue_name
    )
    return job is not None


async def enqueue_part(arq: ArqRedis, settings: Settings, job_id: str, part: int, arq_id: str) -> bool:
    """One part of a job split over several workers (shared.imports.part_repo)."""
    job = await arq.enqueue_job(PART_FUNCTION, job_id, part, _job_id=arq_id, _queue_name=settings.queue_name)
    return job is not None


async def enqueue_job(arq: ArqRedis, settings: Settings, job_id: str, kind: str, arq_id: str | None = None) -> bool:
    """Queue a job of any kind (its function by FUNCTION_OF_KIND); False when arq already holds it."""
    job = await arq.enqueue_job(
        FUNCTION_OF_KIND[kind], job_id, _job_id=arq_id or first_arq_id(job_id), _queue_name=settings.queue_name
    )
    return job is not None


async def enqueue_delivery(arq: ArqRedis, settings: Settings, job_id: str, key: str, defer_s: float = 0) -> None:
    """One attempt at delivering the job's webhook (worker.webhook_delivery), after `defer_s`."""
    await arq.enqueue_job(
        WEBHOOK_FUNCTION,
        job_id,
        _job_id=webhook_arq_id(job_id, key),
        _queue_name=settings.queue_name,
        _defer_by=defer_s or None,
    )

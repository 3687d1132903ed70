"""The queue contract between the gateway and the workers: arq function names, job ids, enqueueing.

Only a job's id travels through the queue (arq pickles arguments); the durable state is the job's row.
"""

from __future__ import annotations

from arq.connections import ArqRedis

from shared.config import Settings

IMPORT_FUNCTION = "import_workbook"
PART_FUNCTION = "import_part"


def first_arq_id(job_id: str) -> str:
    """The arq id of a job's first run (a re-queue by the sweep adds attempt and tick)."""
    return f"import:{job_id}"


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

"""`python -m worker`: one arq worker process."""

from __future__ import annotations

import asyncio
import logging
import sys

from arq.worker import Worker

from shared.infra.runtime import start_process
from worker.settings import build_worker_settings


def main() -> int:
    settings = start_process("worker")
    if settings is None:
        return 2
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = Worker(**build_worker_settings(settings))
    logging.getLogger("worker").info("worker starting", extra={"queue": settings.queue_name})
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

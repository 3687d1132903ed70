"""`python -m worker`: one arq worker process."""

from __future__ import annotations

import asyncio
import logging
import sys

from arq.worker import Worker

from shared.logs import configure_logging
from shared.settings import SettingsError, load_settings
from worker.settings import build_worker_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"worker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging("worker", settings.log_level)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = Worker(**build_worker_settings(settings))
    logging.getLogger("worker").info("worker starting", extra={"queue": settings.queue_name})
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m gateway`: serve the HTTP API on PORT."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from gateway.app import create_app
from shared.infra.runtime import start_process


def main() -> int:
    settings = start_process("gateway")
    if settings is None:
        return 2
    logging.getLogger("gateway").info("gateway starting", extra={"port": settings.port})
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
        # Several gateway processes may share the port (GATEWAY_PROCESSES in deploy/run.sh):
        # the kernel spreads connections across them, one process per core.
        reuse_port=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m gateway`: serve the HTTP API on PORT."""

from __future__ import annotations

import asyncio
import logging
import sys

from aiohttp import web

from gateway.app import create_app
from shared.logs import configure_logging
from shared.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging("gateway", settings.log_level)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    log = logging.getLogger("gateway")
    log.info("gateway starting", extra={"port": settings.port})
    web.run_app(
        create_app(settings), host=settings.host, port=settings.port, print=None, access_log=None, shutdown_timeout=10
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

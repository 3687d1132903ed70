"""`python -m gateway`: serve the HTTP API on PORT."""

from __future__ import annotations

import gc
import logging
import sys

from aiohttp import web

from gateway.app import create_app
from gateway.http import keys
from shared.infra.runtime import start_process


async def _freeze_startup_objects(app: web.Application) -> None:
    """Once started (modules, schemas, the OpenAPI document, pools: ~65k objects that live as long as
    the process), move every object into the collector's permanent generation. Each full collection
    then looks only at what requests created since: ~1 ms instead of ~40 ms of CPU, during which
    the event loop answered nothing (the read tail: tests/bench/README.md, "Read tail"). Only here,
    in the served process: frozen garbage is never collected, which a test creating many apps
    would pay for."""
    gc.collect()
    gc.freeze()
    app[keys.METRICS].gc_frozen.set(gc.get_freeze_count())


def main() -> int:
    settings = start_process("gateway")
    if settings is None:
        return 2
    logging.getLogger("gateway").info("gateway starting", extra={"port": settings.port})
    app = create_app(settings)
    app.on_startup.append(_freeze_startup_objects)
    web.run_app(
        app,
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

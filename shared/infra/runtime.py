"""Process start-up shared by `python -m gateway` and `python -m worker`."""

from __future__ import annotations

import asyncio
import ctypes
import sys

from shared.config import Settings, SettingsError, load_settings
from shared.infra.logs import configure_logging
from shared.infra.prometheus import enable_multiprocess


def start_process(service: str) -> Settings | None:
    """Read the settings once, configure JSON logs and the event loop policy. None (after printing
    the reason) when a setting is bad: the caller exits with status 2."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        return None
    configure_logging(service, settings.log_level)
    if settings.prometheus_multiproc_dir:
        enable_multiprocess(settings.prometheus_multiproc_dir)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    return settings


def release_memory() -> None:
    """Hand freed heap back to the OS after a large job: glibc keeps it in the reader thread's arena
    otherwise, and a worker's resident size would ratchet up from one import to the next."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc

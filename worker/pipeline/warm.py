"""The warm step: cache documents of the rows a batch changed go into Redis (versioned Lua guard,
shared.customers.cache), one batch at a time, while the next batch is written."""

from __future__ import annotations

import asyncio
import logging

from shared.customers.cache import CacheUnavailable, CustomerCache

log = logging.getLogger("worker.importer")


class CacheWarmer:
    """At most one warm-up in flight: submit() waits for the previous one first."""

    def __init__(self, cache: CustomerCache) -> None:
        self.cache = cache
        self._running: asyncio.Task[None] | None = None

    async def submit(self, documents: list[bytes]) -> None:
        await self.drain()
        if documents:
            self._running = asyncio.create_task(self._warm(documents))

    async def drain(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running

    def cancel(self) -> None:
        if self._running is not None:
            self._running.cancel()
            self._running = None

    async def _warm(self, documents: list[bytes]) -> None:
        try:
            await self.cache.put_encoded(documents)
        except CacheUnavailable as exc:
            log.warning("cache warm-up skipped: redis unavailable", extra={"error": str(exc)})

    async def __aenter__(self) -> CacheWarmer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()

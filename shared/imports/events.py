"""Live job events: what `GET /jobs/{id}/events` streams.

Events travel through Redis: the worker that commits a batch appends a `progress` event (the job
document) to a Redis stream of the job's, and `completed` or `failed` when the job ends; any gateway
replica reads the stream from where its client is (the stream entry id is the SSE event id, so a
client that reconnects with `Last-Event-ID` misses nothing and sees nothing twice). A stream rather
than polling the job row: one event per committed batch, however fast batches go, and no query per
client per second. MySQL stays the truth: a job that already ended answers its final event from the
row at once, and while the stream is silent (or Redis is down) the row is checked, so a lost event
never leaves a client waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from shared.customers.cache import REDIS_ERRORS
from shared.imports.job_repo import FINAL_STATUSES

log = logging.getLogger(__name__)

STREAM_MAXLEN = 2000  # events kept per job (a client further behind starts from the oldest kept)
STREAM_TTL_S = 24 * 3600
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


class JobEvents:
    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    async def publish(self, job_id: str, event: str, document: dict[str, Any]) -> None:
        """Append an event; a Redis outage costs the live view only (clients fall back to the row)."""
        key = self.key(job_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, {"event": event, "data": json.dumps(document)}, maxlen=STREAM_MAXLEN, approximate=True)
                pipe.expire(key, STREAM_TTL_S)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("job event not published: redis unavailable", extra={"error": repr(exc), "event": event})

    async def read(self, job_id: str, after: str, block_ms: int) -> list[tuple[str, str, dict[str, Any]]]:
        """Events after the id `after` ("0-0": from the first kept), waiting up to block_ms."""
        answer = await self.redis.xread({self.key(job_id): after}, count=100, block=block_ms)
        found: list[tuple[str, str, dict[str, Any]]] = []
        for _, entries in answer or []:
            for entry_id, fields in entries:
                entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                values = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
                found.append((entry, _text(values.get("event")), json.loads(values.get("data") or "{}")))
        return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def follow_job(
    load: Callable[[str], Awaitable[dict[str, Any]]],
    events: JobEvents,
    document: dict[str, Any],
    last_event_id: str | None,
    *,
    block_ms: int = 800,
    row_check_s: float = 2.0,
) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """(event id, event, job document) until the job's final event, from the job's document as it
    is now (JobService.follow: an unknown job is a 404 before any stream starts). A job that already
    ended gives its final event at once. `load` reads the job's document from its row."""
    job_id = document["job_id"]
    if document["status"] in FINAL_STATUSES:
        yield "final", document["status"], document
        return
    after = last_event_id if last_event_id and _STREAM_ID.match(last_event_id) else "0-0"
    loop = asyncio.get_running_loop()
    checked = loop.time()
    rows_seen = -1
    while True:
        try:
            found = await events.read(job_id, after, block_ms)
            redis_down = False
        except REDIS_ERRORS:
            found, redis_down = [], True
            await asyncio.sleep(row_check_s / 2)
        for entry_id, event, data in found:
            after = entry_id
            yield entry_id, event, data
            if event in FINAL_STATUSES:
                return
        if found and not redis_down:
            continue
        if loop.time() - checked >= row_check_s or redis_down:
            checked = loop.time()
            document = await load(job_id)
            if document["status"] in FINAL_STATUSES:
                yield "final", document["status"], document
                return
            if redis_down and document["rows_read"] != rows_seen:
                rows_seen = document["rows_read"]
                yield f"row-{rows_seen}", "progress", document

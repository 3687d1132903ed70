"""Request rate limits held in Redis, so they hold across every gateway replica.

Each bucket (a limit's name and who is limited: an API key's name, or a client address when no keys
are configured) is a token bucket of `limit` requests per minute, kept as GCRA ("generic cell rate
algorithm"): one number per bucket, the time at which the bucket would be full again, updated by one
Lua script that uses Redis's own clock (so replicas with drifting clocks agree). A full bucket allows
a burst of `limit` requests, then one every 60/limit seconds.

Checks that arrive in the same event-loop turn share one script call (its KEYS are their buckets),
as cached reads share one MGET: one round trip serves many requests under load.

When Redis cannot be reached the limits fail open: requests go through without RateLimit headers,
the outage is logged once (and its end once), and Redis is not tried again for `breaker_s`, so an
outage never costs a timeout per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.customers.cache import REDIS_ERRORS

log = logging.getLogger(__name__)

PERIOD_S = 60

# KEYS: one bucket per check. ARGV[1]: the period in ms; ARGV[1 + i]: the limit of KEYS[i].
# Returns, per key, {allowed (1/0), remaining, retry_after_ms, reset_ms}. A bucket is the time (ms,
# Redis's clock) at which it would be full again ("theoretical arrival time"); it expires then.
_GCRA = """
local period = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i + 1])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  local next_tat = tat + interval
  local allowed_at = next_tat - period
  if allowed_at > now then
    out[i] = {0, 0, math.ceil(allowed_at - now), math.ceil(tat - now)}
  else
    redis.call('SET', key, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now))
    out[i] = {1, math.floor((period - (next_tat - now)) / interval), 0, math.ceil(next_tat - now)}
  end
end
return out
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # 0 when allowed
    reset_s: int  # seconds until the bucket is full again

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    def __init__(self, redis: Redis, *, prefix: str = "", breaker_s: float = 1.0, max_batch: int = 256) -> None:
        self.redis = redis
        self.prefix = prefix
        self.breaker_s = breaker_s
        self.max_batch = max_batch
        self._script = redis.register_script(_GCRA)
        self._down_until = 0.0
        self._down = False  # an outage is going on (logged once at its start, once at its end)
        self._pending: list[tuple[str, int, asyncio.Future[Decision | None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def key(self, bucket: str, identity: str) -> str:
        return f"{self.prefix}ratelimit:{bucket}:{identity}"

    async def hit(self, bucket: str, identity: str, limit: int) -> Decision | None:
        """Take one request from the bucket. None: not limited (limit 0, or Redis unavailable)."""
        if limit <= 0 or (self._down_until and time.monotonic() < self._down_until):
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision | None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send)
        self._pending.append((self.key(bucket, identity), limit, future))
        return await future

    def _send(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.max_batch):
            task = asyncio.create_task(self._run(pending[start : start + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, checks: list[tuple[str, int, asyncio.Future[Decision | None]]]) -> None:
        try:
            answers = await self._script(
                keys=[key for key, _, _ in checks], args=[PERIOD_S * 1000, *(limit for _, limit, _ in checks)]
            )
        except BaseException as exc:
            # Fail open: Redis down (REDIS_ERRORS) or any other error of the call (a full Redis
            # refusing writes, say), logged once per outage; a cancelled call lets its requests by.
            if isinstance(exc, Exception):
                self._trip(exc)
            for _, _, future in checks:
                if not future.done():
                    future.set_result(None)
            if not isinstance(exc, Exception):
                raise
            return
        if self._down:
            self._down = False
            log.warning("rate limits are enforced again: redis answers")
        self._down_until = 0.0
        for (_, limit, future), (allowed, remaining, retry_ms, reset_ms) in zip(checks, answers, strict=True):
            if not future.done():
                future.set_result(
                    Decision(
                        allowed=bool(allowed),
                        limit=limit,
                        remaining=max(int(remaining), 0),
                        retry_after_s=max(math.ceil(int(retry_ms) / 1000), 1) if not allowed else 0,
                        reset_s=max(math.ceil(int(reset_ms) / 1000), 0),
                    )
                )

    def _trip(self, exc: Exception) -> None:
        if not self._down:
            self._down = True
            unavailable = isinstance(exc, REDIS_ERRORS)
            log.warning(
                "rate limits are off: redis is unavailable, requests are let through until it answers"
                if unavailable
                else "rate limits are off: the limit script failed, requests are let through",
                extra={"error": repr(exc)},
            )
        self._down_until = time.monotonic() + self.breaker_s

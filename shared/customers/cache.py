"""Redis cache of customers: `{customer:<id>}` documents and list pages, on one Redis or a Redis
Cluster (every key a script touches is in its KEYS; see the key layout below and docs/scaling.md).

Every write into Redis keeps the newer `version` (one Lua script, atomic on the server), and a
delete leaves a tombstone, so a slow cache-miss read can never put an older or deleted customer back.
List pages live under a generation number that every write increments.

When Redis cannot be reached the cache raises CacheUnavailable quickly (a short circuit breaker
avoids paying a timeout on every request) and remembers the invalidations it could not apply; they
are replayed before this process serves anything from Redis again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

log = logging.getLogger(__name__)

REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    # A Redis Cluster without a master for a slot, or in the middle of a failover.
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.SlotNotCoveredError,
    redis_errors.TryAgainError,
    ConnectionError,
    OSError,
    TimeoutError,
)

# Every key a script touches comes in KEYS, so the scripts run on a Redis Cluster too: a customer's
# document `<prefix>{customer:42}` and its tombstone `<prefix>{customer:42}:tomb` share a hash tag
# (one slot); the list pages and their generation live under `{customers}`.
#
# KEYS: each document's key then its tombstone's key, in the order of the documents; ARGV: ttl and
# the documents packed into one string, each as its length in 8 decimal digits followed by the
# document. One argument for a whole batch: packing thousands of arguments was the client's (the
# import warm-up's) largest cost. Documents start with {"id":N,"version":V so the version is read
# without decoding the JSON. On a cluster the client calls it once per slot (see put_encoded).
_PUT_NEWER = """
local ttl, packed = ARGV[1], ARGV[2]
local written = 0
local pos = 1
local n = 1
while pos <= #packed do
  local size = tonumber(string.sub(packed, pos, pos + 7))
  local doc = string.sub(packed, pos + 8, pos + 7 + size)
  pos = pos + 8 + size
  local key, tomb = KEYS[n], KEYS[n + 1]
  n = n + 2
  local version = string.match(doc, '^{"id":%d+,"version":(%d+)')
  if version and redis.call('EXISTS', tomb) == 0 then
    local current = redis.call('GET', key)
    local current_version = nil
    if current then
      current_version = tonumber(string.match(current, '^{"id":%d+,"version":(%d+)'))
    end
    if current_version == nil or current_version < tonumber(version) then
      redis.call('SET', key, doc, 'EX', ttl)
      written = written + 1
    end
  end
end
return written
"""

# KEYS[1]: generation key, KEYS[2]: the page's key, holding "<generation>:<page>". Returns
# {generation, page}, the page only if it was stored under the current generation.
_GET_PAGE = """
local generation = redis.call('GET', KEYS[1]) or '0'
local stored = redis.call('GET', KEYS[2])
if stored then
  local colon = string.find(stored, ':', 1, true)
  if colon and string.sub(stored, 1, colon - 1) == generation then
    return {generation, string.sub(stored, colon + 1)}
  end
end
return {generation, false}
"""

# Concurrent per-slot script calls of one put_encoded on a cluster.
CLUSTER_WRITES_IN_FLIGHT = 64


def _document_id(doc: bytes) -> bytes:
    """The id of an encoded document (b'{"id":42,"version":...' -> b'42')."""
    return doc[6 : doc.index(b",", 6)]


CachedItem = tuple[int, bytes, int]  # id, document, ttl seconds


class CacheUnavailable(Exception):
    """Redis could not be reached; callers fall back to MySQL and answer `X-Cache: bypass`."""


def encode_document(doc: dict[str, Any]) -> bytes:
    """Serialise a customer with `id` and `version` first, as the Lua script expects."""
    keys = iter(doc)
    if next(keys, None) == "id" and next(keys, None) == "version":
        return orjson.dumps(doc)  # already in order (the import builds them so): no copy
    ordered = {"id": doc["id"], "version": doc["version"]}
    ordered.update((k, v) for k, v in doc.items() if k not in ordered)
    return orjson.dumps(ordered)


class CustomerCache:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str = "",
        ttl_s: int = 300,
        tombstone_s: int = 60,
        breaker_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.tombstone_s = tombstone_s
        self.breaker_s = breaker_s
        self._put_newer = redis.register_script(_PUT_NEWER)  # type: ignore[misc]
        self._get_page = redis.register_script(_GET_PAGE)  # type: ignore[misc]
        self._down_until = 0.0
        self.max_batch = 256
        self._reads: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_deletes: set[int] = set()
        self._pending_stale: set[int] = set()
        self._pending_generation = False

    # -- keys ----------------------------------------------------------------------------------
    # A customer's keys share the hash tag {customer:<id>}; the list's keys share {customers}.
    def key(self, customer_id: int) -> str:
        return f"{self.prefix}{{customer:{customer_id}}}"

    def tombstone_key(self, customer_id: int) -> str:
        return f"{self.prefix}{{customer:{customer_id}}}:tomb"

    @property
    def generation_key(self) -> str:
        return f"{self.prefix}{{customers}}:generation"

    def page_key(self, page_id: str) -> str:
        return f"{self.prefix}{{customers}}:page:{page_id}"

    # -- fault handling ------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        return bool(self._pending_deletes or self._pending_stale or self._pending_generation)

    def _check_breaker(self) -> None:
        if self._down_until and time.monotonic() < self._down_until:
            raise CacheUnavailable("redis marked down")

    def _trip(self, exc: BaseException) -> CacheUnavailable:
        if not self._down_until or time.monotonic() >= self._down_until:
            log.warning("redis unavailable", extra={"error": repr(exc)})
        self._down_until = time.monotonic() + self.breaker_s
        return CacheUnavailable(str(exc))

    async def flush_pending(self) -> None:
        """Replay remembered invalidations now (a background task calls this while any are pending)."""
        self._down_until = 0.0
        await self._ready()

    async def _ready(self) -> None:
        """Fail fast while the breaker is open; replay invalidations that could not be applied."""
        self._check_breaker()
        if not self.pending:
            return
        deletes, stale = set(self._pending_deletes), set(self._pending_stale)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for customer_id in deletes:
                    pipe.set(self.tombstone_key(customer_id), b"1", ex=self.tombstone_s)
                for customer_id in deletes | stale:
                    pipe.delete(self.key(customer_id))
                pipe.incr(self.generation_key)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise self._trip(exc) from exc
        self._pending_deletes -= deletes
        self._pending_stale -= stale
        self._pending_generation = False
        self._down_until = 0.0
        log.info("replayed cache invalidations", extra={"deleted": len(deletes), "stale": len(stale)})

    # -- customers -----------------------------------------------------------------------------
    async def get(self, customer_id: int) -> bytes | None:
        """The cached document, or None. Reads that arrive in the same event-loop turn share one
        MGET: under load, one Redis round trip (and one command packed and parsed) serves many
        requests, which is where a cached read's time goes otherwise."""
        await self._ready()
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        if not self._reads:
            asyncio.get_running_loop().call_soon(self._send_reads)
        self._reads.append((self.key(customer_id), future))
        return await future

    def _send_reads(self) -> None:
        reads, self._reads = self._reads, []
        for start in range(0, len(reads), self.max_batch):
            task = asyncio.create_task(self._mget(reads[start : start + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _mget(self, reads: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        try:
            keys = [key for key, _ in reads]
            if isinstance(self.redis, RedisCluster):  # one MGET per slot, sent to each slot's node
                values = await self.redis.mget_nonatomic(keys)
            else:
                values = await self.redis.mget(keys)
        except REDIS_ERRORS as exc:
            error = self._trip(exc)
            for _, future in reads:
                if not future.done():
                    future.set_exception(CacheUnavailable(str(error)))
            return
        except BaseException as exc:
            for _, future in reads:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else CacheUnavailable(repr(exc)))
            raise
        self._down_until = 0.0
        for (_, future), value in zip(reads, values, strict=True):
            if not future.done():
                future.set_result(value)

    async def put(self, doc: dict[str, Any]) -> bytes:
        """Store the customer unless Redis holds a newer version or a tombstone. Returns the bytes."""
        body = encode_document(doc)
        await self.put_encoded([body])
        return body

    async def put_encoded(self, documents: Sequence[bytes], chunk: int = 2000) -> int:
        """Keep-newer writes of many encoded documents (see encode_document) in a few round trips."""
        await self._ready()
        if self.cluster:
            return await self._put_encoded_by_slot(documents)
        written = 0
        try:
            for start in range(0, len(documents), chunk):
                batch = documents[start : start + chunk]
                packed = b"".join(b"%08d%s" % (len(doc), doc) for doc in batch)
                written += int(await self._put_newer(keys=self._document_keys(batch), args=[self.ttl_s, packed]))
        except REDIS_ERRORS as exc:
            raise self._trip(exc) from exc
        return written

    def _document_keys(self, documents: Sequence[bytes]) -> list[bytes]:
        """KEYS of the keep-newer script: each document's key, then its tombstone's."""
        prefix = self.prefix.encode()
        keys: list[bytes] = []
        for doc in documents:
            key = b"%s{customer:%s}" % (prefix, doc[6 : doc.index(b",", 6)])
            keys += (key, key + b":tomb")
        return keys

    async def _put_encoded_by_slot(self, documents: Sequence[bytes]) -> int:
        """On a cluster a script may only touch one slot: one call per slot (nearly one per
        customer), many at once across the nodes."""
        by_slot: dict[int, list[bytes]] = {}
        for doc in documents:
            by_slot.setdefault(key_slot(b"customer:" + _document_id(doc)), []).append(doc)
        limit = asyncio.Semaphore(CLUSTER_WRITES_IN_FLIGHT)

        async def write(docs: list[bytes]) -> int:
            async with limit:
                packed = b"".join(b"%08d%s" % (len(doc), doc) for doc in docs)
                return int(await self._put_newer(keys=self._document_keys(docs), args=[self.ttl_s, packed]))

        try:
            return sum(await asyncio.gather(*(write(docs) for docs in by_slot.values())))
        except REDIS_ERRORS as exc:
            raise self._trip(exc) from exc

    async def put_many(self, docs: Iterable[dict[str, Any]]) -> int:
        return await self.put_encoded([encode_document(d) for d in docs])

    async def _or_remember(
        self, write: Callable[[], Awaitable[object]], *, stale: int | None = None, deleted: int | None = None
    ) -> None:
        """Apply a write to Redis; if Redis cannot be reached, remember the invalidation it stood for
        (replayed before this process serves from Redis again) and raise CacheUnavailable."""
        try:
            await self._ready()
            await write()
        except (CacheUnavailable, *REDIS_ERRORS) as exc:  # type: ignore[misc]
            if stale is not None:
                self._pending_stale.add(stale)
            if deleted is not None:
                self._pending_deletes.add(deleted)
            self._pending_generation = True
            if isinstance(exc, CacheUnavailable):
                raise
            raise self._trip(exc) from exc

    async def _put_and_bump(self, doc: dict[str, Any]) -> None:
        await self.put(doc)
        await self.redis.incr(self.generation_key)

    async def updated(self, doc: dict[str, Any]) -> None:
        """After a committed update: write the new version through and retire cached pages. If
        Redis is down, remember to drop the old copy before serving from Redis again."""
        await self._or_remember(lambda: self._put_and_bump(doc), stale=int(doc["id"]))

    async def created(self, doc: dict[str, Any]) -> None:
        await self._or_remember(lambda: self._put_and_bump(doc))

    async def deleted(self, customer_id: int) -> None:
        """After a committed delete: tombstone first, so a racing refill cannot resurrect it."""

        async def write() -> None:
            # In this order on one connection (on a cluster, the customer's two keys are on one
            # node): once the tombstone is set no refill can land, and a refill that landed before
            # it is deleted. No MULTI: it could not span the generation's slot on a cluster.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.tombstone_key(customer_id), b"1", ex=self.tombstone_s)
                pipe.delete(self.key(customer_id))
                pipe.incr(self.generation_key)
                await pipe.execute()

        await self._or_remember(write, deleted=customer_id)

    async def deleted_many(self, ids: Sequence[int], chunk: int = 1000) -> None:
        """After a committed delete of many customers (a revert, a bulk delete): deleted() for each,
        a pipeline a chunk, then one generation bump."""

        async def write() -> None:
            for start in range(0, len(ids), chunk):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for customer_id in ids[start : start + chunk]:
                        pipe.set(self.tombstone_key(customer_id), b"1", ex=self.tombstone_s)
                        pipe.delete(self.key(customer_id))
                    await pipe.execute()
            await self.redis.incr(self.generation_key)

        if ids:
            await self._or_remember(write)

    async def restored_many(self, docs: Sequence[dict[str, Any]]) -> None:
        """After customers were given back earlier values (a revert): their new versions written
        through (keep-newer), a tombstone left by their deletion removed first, pages retired."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for doc in docs:
                    pipe.delete(self.tombstone_key(int(doc["id"])))
                await pipe.execute()
            await self.put_encoded([encode_document(doc) for doc in docs])
            await self.redis.incr(self.generation_key)

        if docs:
            await self._or_remember(write)

    async def forget(self, customer_id: int) -> None:
        """Drop the cached copy (no tombstone): after a write whose outcome is unknown, the next
        read must come from MySQL."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.key(customer_id))
                pipe.incr(self.generation_key)
                await pipe.execute()

        await self._or_remember(write, stale=customer_id)

    async def bump_generation(self) -> None:
        await self._or_remember(lambda: self.redis.incr(self.generation_key))

    # -- list pages ----------------------------------------------------------------------------
    @staticmethod
    def page_id(**params: Any) -> str:
        raw = json.dumps(params, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()

    async def get_page(self, page_id: str) -> tuple[int, bytes | None]:
        """Returns (generation, cached page or None); store a miss under that generation."""
        await self._ready()
        try:
            generation, page = await self._get_page(keys=[self.generation_key, self.page_key(page_id)])
        except REDIS_ERRORS as exc:
            raise self._trip(exc) from exc
        return int(generation), page or None

    async def put_page(self, generation: int, page_id: str, body: bytes) -> None:
        """Store a page read under `generation` (get_page serves it only while that is current)."""
        await self._ready()
        try:
            await self.redis.set(self.page_key(page_id), b"%d:%s" % (generation, body), ex=self.ttl_s)
        except REDIS_ERRORS as exc:
            raise self._trip(exc) from exc

    # -- inspection ----------------------------------------------------------------------------
    async def scan(self, cursor: int, count: int, node: int = 0) -> tuple[tuple[int, int] | None, list[CachedItem]]:
        """One SCAN step over cached customers: ((node, cursor) of the next step, or None after the
        last; [(id, document, ttl seconds)]). `node` counts the cluster's primaries (sorted by
        address), each scanned in turn; a single Redis is node 0."""
        await self._ready()
        pattern = f"{self.prefix}{{customer:*}}"
        try:
            if isinstance(self.redis, RedisCluster):
                await self.redis.initialize()  # a no-op once the topology is known
                primaries = sorted(self.redis.get_primaries(), key=lambda n: n.name)
                if node >= len(primaries):
                    return None, []
                answer, keys = await self.redis.scan(
                    cursor=cursor, match=pattern, count=count, target_nodes=primaries[node]
                )
                next_cursor = int(next(iter(answer.values()))) if isinstance(answer, dict) else int(answer)
                following = (node, next_cursor) if next_cursor else (node + 1, 0) if node + 1 < len(primaries) else None
            else:
                next_cursor, keys = await self.redis.scan(cursor=cursor, match=pattern, count=count)
                following = (0, int(next_cursor)) if int(next_cursor) else None
            if not keys:
                return following, []
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                    pipe.ttl(key)
                values = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise self._trip(exc) from exc
        items: list[CachedItem] = []
        start = len(self.prefix) + len("{customer:")
        for index, key in enumerate(keys):
            body, ttl = values[2 * index], values[2 * index + 1]
            text = key.decode() if isinstance(key, bytes) else str(key)
            suffix = text[start:-1]
            if body is None or not suffix.isdigit() or not text.endswith("}"):
                continue
            items.append((int(suffix), body, int(ttl)))
        return following, items

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except REDIS_ERRORS:
            return False

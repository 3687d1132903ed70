"""Customer operations: MySQL is the truth, Redis a cache kept never older than MySQL.

Reads try Redis, fall back to MySQL and refill (keep-newer). Writes commit to MySQL first, then
write through to Redis, so a read right after the response sees the change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiomysql
import orjson
from marshmallow import ValidationError

from shared.customers import customer_repo, history_repo
from shared.customers.cache import CacheUnavailable, CustomerCache, encode_document
from shared.customers.customer_repo import EmailTaken
from shared.customers.fields import ATTRIBUTES, STORED_FIELDS
from shared.customers.schemas import READ_ONLY_FIELDS, CustomerInSchema, flatten_errors
from shared.infra import cursors
from shared.infra.cursors import decode_cursor, encode_cursor
from shared.infra.db import OutcomeUnknown, connection, mysql_deadline, transaction
from shared.infra.logs import request_id_var

log = logging.getLogger(__name__)

HIT, MISS, BYPASS = "hit", "miss", "bypass"
MAX_LIMIT = 1000
_VERSION = re.compile(rb'^\{"id":\d+,"version":(\d+)')

__all__ = ["CustomerService", "EmailTaken", "InvalidInput", "NotFound", "PreconditionFailed"]


class NotFound(Exception):
    pass


class PreconditionFailed(Exception):
    def __init__(self, current_version: int) -> None:
        super().__init__(f"the customer has changed: its current version is {current_version}")
        self.current_version = current_version


def parse_sort(sort: str | None) -> tuple[str, bool]:
    """`sort` as (key, descending); InvalidInput naming `sort` when it is not one of SORT_KEYS."""
    if not sort:
        return "id", False
    descending = sort.startswith("-")
    key = sort[1:] if descending else sort
    if key not in customer_repo.SORT_KEYS:
        raise InvalidInput([("sort", f"One of: {', '.join(customer_repo.SORT_KEYS)}; a leading '-' sorts descending.")])
    return key, descending


def _next_cursor(sort: str | None, value: Any, last_id: int) -> str:
    if not sort or sort == "id":
        return encode_cursor({"after": last_id})  # the cursor GET /customers has always given
    if isinstance(value, dt.datetime):
        value = value.strftime("%Y-%m-%d %H:%M:%S.%f")  # as MySQL compares it with the column
    return encode_cursor({"sort": sort, "value": value, "id": last_id})


def _after(cursor: str | None, sort: str | None) -> tuple[Any, int] | None:
    """The (key value, id) a cursor continues after; BadCursor for one another sort gave."""
    if cursor is None:
        return None
    payload = decode_cursor(cursor)
    if not sort or sort == "id":
        if "sort" in payload:
            raise cursors.BadCursor("sort")
        last_id = cursors.whole_number(payload, "after")
        return last_id, last_id
    if payload.get("sort") != sort:
        raise cursors.BadCursor("sort")
    value = payload.get("value")
    if value is not None and (not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > 1000):
        raise cursors.BadCursor("value")
    return value, cursors.whole_number(payload, "id")


def after_id_or_key(after: tuple[Any, int] | None) -> Any:
    """What a cached page's id holds of its position."""
    if after is None:
        return 0
    return [after[0], after[1]]


class InvalidInput(Exception):
    """Field errors: [(field or None, message)]. (The gateway answers it with 422.)"""

    def __init__(self, errors: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(f"{f or 'body'}: {m}" for f, m in errors))
        self.errors = errors


@dataclass
class Cached:
    body: bytes
    version: int
    cache: str


async def _locked(cur: aiomysql.Cursor, customer_id: int, if_match: int | None) -> dict[str, Any]:
    """The row, locked for the rest of the transaction, after the If-Match check."""
    current = await customer_repo.get(cur, customer_id, for_update=True)
    if current is None:
        raise NotFound(customer_id)
    if if_match is not None and if_match != current["version"]:
        raise PreconditionFailed(current["version"])
    return current


class CustomerService:
    def __init__(self, pool: aiomysql.Pool, cache: CustomerCache, *, db_timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.cache = cache
        self.db_timeout_s = db_timeout_s
        self._schema = CustomerInSchema()

    @asynccontextmanager
    async def _mysql(self) -> AsyncIterator[None]:
        """Bound a request's MySQL work: a server that stopped answering (hung, partitioned: no reset
        for the driver to notice) becomes DatabaseUnavailable, a 503, instead of a request that hangs.
        aiomysql closes a connection cancelled mid-statement, so none goes back to the pool."""
        try:
            async with mysql_deadline(self.db_timeout_s):
                yield
        except TimeoutError:
            raise OutcomeUnknown(f"MySQL did not answer within {self.db_timeout_s:g} s") from None

    @asynccontextmanager
    async def _writing(self, customer_id: int | None) -> AsyncIterator[None]:
        """A write bounded like any MySQL work. If MySQL went silent after the COMMIT was sent, the
        write may have happened: drop the cached copy so no reader gets the old version for a whole
        TTL. (A connection that failed before the COMMIT was rolled back: the cache stays valid.)"""
        try:
            async with self._mysql():
                yield
        except OutcomeUnknown:
            if customer_id is not None:
                with contextlib.suppress(CacheUnavailable):
                    await self.cache.forget(customer_id)
            raise

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, customer_id: int) -> Cached:
        try:
            body = await self.cache.get(customer_id)
        except CacheUnavailable:
            doc = await self._load(customer_id)
            return Cached(encode_document(doc), int(doc["version"]), BYPASS)
        if body is not None:
            match = _VERSION.match(body)
            if match:
                return Cached(body, int(match.group(1)), HIT)
        doc = await self._load(customer_id)
        state = MISS
        try:
            body = await self.cache.put(doc)
        except CacheUnavailable:
            body, state = encode_document(doc), BYPASS
        return Cached(body, int(doc["version"]), state)

    async def _load(self, customer_id: int) -> dict[str, Any]:
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            doc = await customer_repo.get(cur, customer_id)
        if doc is None:
            raise NotFound(customer_id)
        return doc

    async def list_page(
        self, *, limit: int, cursor: str | None, search: str | None, sort: str | None = None, count: bool = False
    ) -> tuple[bytes, str]:
        """A page of `{items, next_cursor}` (and `total` with `count`), ordered by `sort` (a SORT_KEYS
        name, `-` first for descending; by id without one): Redis first, MySQL on a miss."""
        key, descending = parse_sort(sort)
        after = _after(cursor, sort)
        page_id = CustomerCache.page_id(
            limit=limit, after=after_id_or_key(after), q=search or "", sort=sort or "id", count=count
        )
        generation: int | None = None
        state = MISS
        try:
            generation, page = await self.cache.get_page(page_id)
            if page is not None:
                return page, HIT
        except CacheUnavailable:
            state = BYPASS
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            rows = await customer_repo.sorted_page(
                cur, key=key, descending=descending, after=after, limit=limit + 1, search=search
            )
            total = await customer_repo.count(cur, search=search) if count else None
        next_cursor = None
        if len(rows) > limit:
            doc, value = rows[limit - 1]
            next_cursor = _next_cursor(sort, value, int(doc["id"]))
        document: dict[str, Any] = {"items": [doc for doc, _ in rows[:limit]], "next_cursor": next_cursor}
        if total is not None:
            document["total"] = total
        body = orjson.dumps(document)
        if generation is not None:
            try:
                await self.cache.put_page(generation, page_id, body)
            except CacheUnavailable:
                state = BYPASS
        return body, state

    async def history(self, customer_id: int, *, limit: int, cursor: str | None) -> dict[str, Any]:
        """The customer's changes, newest first: `{items, next_cursor}`; NotFound only for an id that
        never named a customer (a deleted one's history stays readable)."""
        before = None if cursor is None else cursors.whole_number(decode_cursor(cursor), "before")
        async with self._mysql(), connection(self.pool) as conn, conn.cursor() as cur:
            entries = await history_repo.page(cur, customer_id, before_id=before, limit=limit + 1)
            if not entries and before is None and not await history_repo.known_customer(cur, customer_id):
                raise NotFound(customer_id)
        next_cursor = encode_cursor({"before": entries[limit - 1].id}) if len(entries) > limit else None
        return {"items": [history_item(entry) for entry in entries[:limit]], "next_cursor": next_cursor}

    # -- writes --------------------------------------------------------------------------------
    def _validate(self, data: Any, *, partial: bool = False) -> dict[str, Any]:
        """The customer's fields as loaded, plus the read-only fields a client sent back (`id`,
        `version`; `created_at` and `updated_at` are accepted and ignored)."""
        if not isinstance(data, dict):
            raise InvalidInput([(None, "The body must be a JSON object.")])
        try:
            loaded: dict[str, Any] = self._schema.load(data, partial=partial)
        except ValidationError as exc:
            raise InvalidInput(flatten_errors(exc.messages)) from None
        return loaded

    async def _write_through(self, doc: dict[str, Any], *, created: bool = False) -> str:
        try:
            if created:
                await self.cache.created(doc)
            else:
                await self.cache.updated(doc)
        except CacheUnavailable:
            return BYPASS
        return MISS

    async def create(self, data: Any, *, actor: str | None = None) -> tuple[dict[str, Any], str]:
        """`actor`: the API key's name, for the customer's history (so are the other writes')."""
        fields = _without_read_only(self._validate(data))
        async with self._mysql(), transaction(self.pool) as cur:
            customer_id = await customer_repo.insert(cur, fields)
            doc = await customer_repo.get(cur, customer_id)
            assert doc is not None
            await _history(cur, actor, customer_id, history_repo.CREATED, None, doc)
        return doc, await self._write_through(doc, created=True)

    async def replace(
        self, customer_id: int, data: Any, *, if_match: int | None, partial: bool, actor: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """PUT (all fields) or PATCH (the fields sent). Nothing is written, and the version stays,
        when no value changes. A body that carries `version` (sent back as GET gave it) is checked
        like If-Match; one that carries another customer's `id` is refused."""
        loaded = self._validate(data, partial=partial)
        sent_id, sent_version = loaded.get("id"), loaded.get("version")
        if sent_id is not None and sent_id != customer_id:
            raise InvalidInput([("id", f"Does not match the customer in the URL ({customer_id}).")])
        changes = _without_read_only(loaded)
        if partial:
            # marshmallow fills load_default for absent fields; a PATCH keeps them as they are.
            changes = {k: v for k, v in changes.items() if k in data}
        async with self._writing(customer_id), transaction(self.pool) as cur:
            current = await _locked(cur, customer_id, if_match)
            if sent_version is not None and sent_version != current["version"]:
                raise PreconditionFailed(current["version"])
            merged = {name: current[name] for name in STORED_FIELDS} if partial else {}
            if partial and changes.get(ATTRIBUTES) is not None:
                # A PATCH's attributes merge into the stored ones (RFC 7396): null removes a name.
                changes[ATTRIBUTES] = {**current[ATTRIBUTES], **changes[ATTRIBUTES]}
            merged.update(changes)
            merged[ATTRIBUTES] = {k: v for k, v in (merged.get(ATTRIBUTES) or {}).items() if v not in (None, "")}
            if all(merged.get(name) == current[name] for name in STORED_FIELDS):
                return current, MISS
            if partial:
                self._validate({k: v for k, v in merged.items() if v is not None})
            if not await customer_repo.update(cur, customer_id, merged, current["version"]):
                raise PreconditionFailed(current["version"])
            doc = await customer_repo.get(cur, customer_id)
            assert doc is not None
            await _history(cur, actor, customer_id, history_repo.UPDATED, current, doc)
        return doc, await self._write_through(doc)

    async def delete(self, customer_id: int, *, if_match: int | None, actor: str | None = None) -> str:
        async with self._writing(customer_id), transaction(self.pool) as cur:
            current = await _locked(cur, customer_id, if_match)
            await customer_repo.delete(cur, customer_id)
            await _history(cur, actor, customer_id, history_repo.DELETED, current, None)
        try:
            await self.cache.deleted(customer_id)
        except CacheUnavailable:
            return BYPASS
        return MISS

    async def cached(self, *, cursor: str | None, limit: int) -> dict[str, Any]:
        """What Redis holds now, `limit` documents a page, each with its remaining TTL. The cursor
        carries the SCAN cursor of the step the page stopped in and how many of that step's
        documents were already served (and, on a Redis Cluster, which primary is being scanned)."""
        scan, skip, node = 0, 0, 0
        if cursor is not None:
            payload = decode_cursor(cursor)
            scan = cursors.whole_number(payload, "scan", cursors.MAX_SCAN)
            skip = cursors.whole_number(payload, "skip", 1_000_000)
            node = cursors.whole_number(payload, "node", 4096) if "node" in payload else 0

        def position(node: int, scan: int, skip: int) -> str:
            return encode_cursor({"scan": scan, "skip": skip, **({"node": node} if node else {})})

        items: list[dict[str, Any]] = []
        for step_number in itertools.count(1):
            following, found = await self.cache.scan(scan, count=max(limit, 100), node=node)
            room = limit - len(items)
            step = found[skip:]
            for _, body, ttl in step[:room]:
                doc = json.loads(body)
                doc["ttl_s"] = ttl
                items.append(doc)
            if len(step) > room:
                return {"items": items, "next_cursor": position(node, scan, skip + room)}
            if following is None:
                return {"items": items, "next_cursor": None}
            (node, scan), skip = following, 0
            # A Redis holding much else (the queue, other prefixes) would make a page walk all of it:
            # a page stops after CACHE_SCAN_STEPS steps, shorter, with a cursor to go on from.
            if len(items) == limit or step_number >= CACHE_SCAN_STEPS:
                return {"items": items, "next_cursor": position(node, scan, 0)}
        raise AssertionError("unreachable")


# SCAN steps one page of GET /customers/cache may take (each looks at about max(limit, 100) keys).
CACHE_SCAN_STEPS = 20


def history_item(entry: history_repo.Entry) -> dict[str, Any]:
    """A history row as the API shows it."""
    return {
        "at": entry.at.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z"),
        "action": entry.action,
        "by": entry.actor,
        "source": {"kind": entry.source_kind, "job_id": entry.job_id, "request_id": entry.request_id},
        "version": entry.version,
        "changes": history_repo.readable_changes(entry.changes),
    }


async def _history(
    cur: aiomysql.Cursor,
    actor: str | None,
    customer_id: int,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """An API write's history row, in the write's transaction."""
    source = history_repo.Source(history_repo.API, actor=actor, request_id=request_id_var.get())
    version = int((after or before or {}).get("version") or 0) or None
    await history_repo.record(cur, source, [(customer_id, action, version, history_repo.diff(before, after))])


def _without_read_only(loaded: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in loaded.items() if k not in READ_ONLY_FIELDS}

"""Remembered mappings (DESIGN "Spreadsheet rules"): the mapping an import was started with is kept under the
file's normalised header; a later file with the same header gets it suggested in its preview
(`reason: "remembered"`), and `GET /mappings` / `DELETE /mappings/{id}` list and forget them."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import aiomysql

from shared.imports import mapping_repo
from shared.imports.options import ImportOptions
from shared.infra import cursors
from shared.infra.cursors import decode_cursor, encode_cursor
from shared.infra.db import bounded, connection
from shared.spreadsheet.preview import Preview, Remembered, build_preview


class MappingNotFound(Exception):
    def __init__(self, mapping_id: int) -> None:
        super().__init__(f"No remembered mapping {mapping_id}.")
        self.mapping_id = mapping_id


def preview_header(found: Preview) -> list[str] | None:
    """The header a preview read, normalised as it is remembered; None for a file without one."""
    if not found.document.get("header_row"):
        return None
    header = mapping_repo.normalised_header([column["header"] for column in found.document["columns"]])
    return header or None


async def recall(
    pool: aiomysql.Pool, found: Preview, path: Path, filename: str, kind: str, options: ImportOptions
) -> Preview:
    """The preview again with the mapping remembered for its header, if there is one (else as it is)."""
    header = preview_header(found)
    if header is None:
        return found
    async with connection(pool) as conn, conn.cursor() as cur:
        remembered = await mapping_repo.find(cur, header)
    if remembered is None:
        return found
    memory = Remembered(remembered.id, remembered.mapping, remembered.filename, mapping_repo.iso(remembered.last_used))
    return await asyncio.to_thread(build_preview, path, filename, kind, options, memory)


def effective_options(options: ImportOptions, found: Preview) -> ImportOptions:
    """The options an import runs with: the mapping the preview settled on (the one given merged with the
    suggestions and any remembered mapping), so the worker maps the columns exactly as the preview showed."""
    return dataclasses.replace(  # the other options (the import modes) as given
        options,
        mapping=found.document["mapping"],
        header_row=found.document["header_row"] if options.header_row is None else options.header_row,
    )


async def remember(cur: aiomysql.Cursor, found: Preview, filename: str, job_id: str) -> None:
    """Remember the mapping an import starts with under its file's header (nothing for a headerless file)."""
    header = preview_header(found)
    if header is not None and found.document["mapping"]:
        await mapping_repo.remember(cur, header, found.document["mapping"], filename, job_id)


class MappingService:
    """GET /mappings, DELETE /mappings/{id}."""

    def __init__(self, pool: aiomysql.Pool, *, db_timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.db_timeout_s = db_timeout_s

    async def list_page(self, *, limit: int, cursor: str | None) -> dict[str, Any]:
        before: tuple[dt.datetime, int] | None = None
        if cursor is not None:
            payload = decode_cursor(cursor)
            before = (cursors.timestamp(payload, "last_used"), cursors.whole_number(payload, "id"))
        rows = await bounded(self.db_timeout_s, self._page(before, limit + 1))
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor({"last_used": last.last_used.isoformat(), "id": last.id})
        return {"items": [row.document() for row in rows[:limit]], "next_cursor": next_cursor}

    async def _page(self, before: tuple[dt.datetime, int] | None, limit: int) -> list[mapping_repo.RememberedMapping]:
        async with connection(self.pool) as conn, conn.cursor() as cur:
            return await mapping_repo.list_page(cur, before=before, limit=limit)

    async def delete(self, mapping_id: int) -> None:
        if not await bounded(self.db_timeout_s, self._delete(mapping_id)):
            raise MappingNotFound(mapping_id)

    async def _delete(self, mapping_id: int) -> bool:
        async with connection(self.pool) as conn, conn.cursor() as cur:
            return await mapping_repo.delete(cur, mapping_id)

"""SQL for `import_mappings`: the mapping an import was started with, remembered under the file's header.

A header is remembered by its normalised cells in order (shared.spreadsheet.rules.fold_header: case,
spaces and dashes folded; trailing empty cells dropped), so the next export of the same tool, with the
same columns, gets the same mapping suggested. One row a header: starting another import of that
header replaces the mapping and moves `last_used`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiomysql

from shared.imports.options import Mapping_
from shared.spreadsheet.rules import fold_header

_COLUMNS = "id, header, mapping, filename, last_used"


@dataclass(frozen=True)
class RememberedMapping:
    id: int
    header: list[str]
    mapping: Mapping_
    filename: str
    last_used: dt.datetime

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "header": self.header,
            "mapping": self.mapping,
            "filename": self.filename,
            "last_used": iso(self.last_used),
        }


def iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def normalised_header(cells: Sequence[Any]) -> list[str]:
    """The header as it is remembered: each cell folded, in order, trailing empty cells dropped."""
    folded = [fold_header(cell) for cell in cells]
    while folded and not folded[-1]:
        folded.pop()
    return folded


def header_key(header: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(header), ensure_ascii=False).encode()).hexdigest()


def _from_row(row: Sequence[Any]) -> RememberedMapping:
    return RememberedMapping(int(row[0]), json.loads(row[1]), json.loads(row[2]), row[3], row[4])


async def find(cur: aiomysql.Cursor, header: Sequence[str]) -> RememberedMapping | None:
    await cur.execute(f"SELECT {_COLUMNS} FROM import_mappings WHERE header_sha256 = %s", (header_key(header),))
    row = await cur.fetchone()
    return _from_row(row) if row else None


async def remember(
    cur: aiomysql.Cursor, header: Sequence[str], mapping: Mapping_, filename: str, job_id: str | None
) -> None:
    """Remember `mapping` for `header` (replacing what was remembered for it)."""
    await cur.execute(
        "INSERT INTO import_mappings (header_sha256, header, mapping, filename, job_id) VALUES (%s, %s, %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE mapping = VALUES(mapping), filename = VALUES(filename), job_id = VALUES(job_id),"
        " last_used = CURRENT_TIMESTAMP(6)",
        (
            header_key(header),
            json.dumps(list(header), ensure_ascii=False),
            json.dumps(mapping, ensure_ascii=False),
            filename[:255],
            job_id,
        ),
    )


async def list_page(
    cur: aiomysql.Cursor, *, before: tuple[dt.datetime, int] | None, limit: int
) -> list[RememberedMapping]:
    """The most recently used first (keyset on (last_used, id), descending)."""
    if before is None:
        await cur.execute(f"SELECT {_COLUMNS} FROM import_mappings ORDER BY last_used DESC, id DESC LIMIT %s", (limit,))
    else:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM import_mappings WHERE (last_used, id) < (%s, %s)"
            " ORDER BY last_used DESC, id DESC LIMIT %s",
            (*before, limit),
        )
    return [_from_row(row) for row in await cur.fetchall()]


async def delete(cur: aiomysql.Cursor, mapping_id: int) -> bool:
    await cur.execute("DELETE FROM import_mappings WHERE id = %s", (mapping_id,))
    return bool(cur.rowcount)

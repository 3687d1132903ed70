"""Which part of a split job a row belongs to (docs/scaling.md).

Parts are cut by the email's hash, not by ranges of rows: all the rows of one email fall in one
part, read in file order by one worker, so a file's duplicate emails are counted and stored exactly
as one worker would (the first inserted, each later one updated or unchanged, the last one's values
kept), and two parts never write the same customer. The hash is CRC-32 of the email as the schema
keys it (stripped, lower-case): the same in every process, unlike Python's hash().
"""

from __future__ import annotations

import zlib
from typing import Any

from shared.spreadsheet.rules import normalize_cell


def part_of(cells: list[Any], email_index: int, row_number: int, parts: int) -> int:
    """The part (0 .. parts-1) that imports this row. A row without an email (invalid anyway) goes
    by its row number, so each part reports its share of them."""
    value = cells[email_index] if email_index < len(cells) else None
    text = value.strip() if isinstance(value, str) else normalize_cell(value)
    if not text:
        return row_number % parts
    return zlib.crc32(text.lower().encode("utf-8", "surrogatepass")) % parts

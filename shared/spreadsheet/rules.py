"""Spreadsheet rules that do not depend on the file format: headers, aliases and cell values."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.customers.fields import ALIASES, CUSTOMER_FIELDS, REQUIRED_FIELDS
from shared.spreadsheet.names import split_full_name

# The fields and their header aliases are declared in shared.customers.fields; re-exported here for the readers.
__all__ = ["ALIASES", "CUSTOMER_FIELDS"]

_FOLD = re.compile(r"[\s\-]+")


class HeaderError(ValueError):
    """The header row lacks required columns; the message names them and quotes the header found."""

    def __init__(self, missing: list[str], found: list[str]) -> None:
        quoted = ", ".join(found) or "nothing"
        super().__init__(
            "missing required column(s): "
            + ", ".join(missing)
            + f". The first non-empty row must be the header; it holds: {quoted}"
        )
        self.missing = missing
        self.found = found


def fold_header(name: Any) -> str:
    text = "" if name is None else str(name)
    return _FOLD.sub("_", text.strip()).lower().strip("_")


@dataclass
class HeaderMap:
    """Where each customer field sits in a row, and what was ignored. A field is in at most one of
    `positions` (one column) and `joined` (several, joined in order); first_name and last_name may
    come from the `full_name` column instead (split, shared.spreadsheet.names); `attributes` keeps
    other columns under a name. `labels`: each used column as the file shows it (its header text, or
    its letter), for row errors in the user's words."""

    positions: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    joined: dict[str, tuple[int, ...]] = field(default_factory=dict)
    full_name: int | None = None
    attributes: dict[str, int] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)

    def sources(self, name: str) -> tuple[int, ...]:
        """The columns a field's (or `attributes.<name>`'s) value comes from."""
        if name in self.positions:
            return (self.positions[name],)
        if name in self.joined:
            return self.joined[name]
        if name.startswith("attributes.") and name[11:] in self.attributes:
            return (self.attributes[name[11:]],)
        if name in ("first_name", "last_name") and self.full_name is not None:
            return (self.full_name,)
        return ()

    def label(self, name: str | None) -> str | None:
        """The column(s) a field comes from as the file shows them ("Address1 + Address2"); None for none."""
        if name is None:
            return None
        shown = [self.labels.get(index) or column_letter(index) for index in self.sources(name)]
        return " + ".join(shown) or None


# Columns a file may carry that are not customer fields and need no warning: the `errors` column of a
# rejected-rows download, and the read-only columns of an export (ignored on import).
SILENTLY_IGNORED = frozenset({"errors", "id", "version", "created_at", "updated_at"})


def auto_positions(cells: Sequence[Any]) -> tuple[dict[str, int], list[str]]:
    """Match header cells to customer fields: case-insensitive, spaces/dashes folded to `_`, aliases
    accepted, any order. Exact names win over aliases. Returns (positions, ignored columns)."""
    positions: dict[str, int] = {}
    via_alias: dict[str, str] = {}
    ignored: list[str] = []
    for index, cell in enumerate(cells):
        folded = fold_header(cell)
        if not folded or folded in SILENTLY_IGNORED:
            continue
        if folded in CUSTOMER_FIELDS:
            if folded in positions and folded not in via_alias:
                ignored.append(f"{cell!s} (duplicate of column {folded})")
                continue
            if folded in via_alias:
                ignored.append(f"{via_alias.pop(folded)} (column {folded} already present)")
            positions[folded] = index
        elif folded in ALIASES:
            target = ALIASES[folded]
            if target in positions:
                ignored.append(f"{cell!s} (column {target} already present)")
                continue
            positions[target] = index
            via_alias[target] = str(cell)
        else:
            ignored.append(str(cell).strip())
    return positions, ignored


def header_texts(cells: Sequence[Any]) -> list[str]:
    return [str(c).strip()[:100] for c in cells if fold_header(c)][:50]


IGNORED_LISTED = 20


def ignored_columns_warning(ignored: Sequence[str]) -> list[str]:
    """The warning for unknown columns: the first IGNORED_LISTED names (each cut to 100 characters) and a
    count of the rest, so a header of thousands of columns gives a warning of a bounded size."""
    if not ignored:
        return []
    listed = ", ".join(name[:100] for name in ignored[:IGNORED_LISTED])
    rest = len(ignored) - IGNORED_LISTED
    return [f"ignored unknown column(s): {listed}" + (f" and {rest:,} more" if rest > 0 else "")]


def map_header(cells: Sequence[Any]) -> HeaderMap:
    """The automatic header rules; HeaderError naming the missing columns."""
    positions, ignored = auto_positions(cells)
    missing = [name for name in REQUIRED_FIELDS if name not in positions]
    if missing:
        raise HeaderError(missing, header_texts(cells))
    return HeaderMap(positions, ignored_columns_warning(ignored))


# A text cell starting with one of these is run as a formula by Excel when the file is opened
# (CSV injection). Files the service writes prefix such a cell with an apostrophe, which Excel shows
# as text; reading a file, an apostrophe before one of them is dropped, so the value round-trips.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def excel_safe(text: str) -> str:
    """A value as a file for Excel should hold it: never a formula."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


# Excel's text prefix: a CSV cell written `'02108` or `'+44 20 7946 0018` (Shopify's postcodes and phones, a
# number kept as text) holds the text after the apostrophe; so does an Excel-safe value (see excel_safe).
TEXT_PREFIXED = (*FORMULA_TRIGGERS, "(", *"0123456789")
# Several values in one cell, as Google Contacts writes them (`+44 20 7946 0018 ::: +44 7700 900123`): the
# first is kept (and the import names the cells: worker.pipeline.source.several_values).
MULTI_VALUE = " ::: "


def from_excel_safe(text: str) -> str:
    """The text after Excel's text prefix: before a number, a sign or a formula trigger, or a code with no
    lower-case letter (Shopify's `'M5C 1N7`); a name like `'s-Hertogenbosch` keeps its apostrophe."""
    if not text.startswith("'") or not text[1:2]:
        return text
    rest = text[1:]
    if rest.startswith(TEXT_PREFIXED) or (rest[0].isalnum() and not any(c.islower() for c in rest)):
        return rest
    return text


def normalize_cell(value: Any) -> str | None:
    """A cell as text: whole numbers without `.0`, dates as ISO, white space trimmed, blank as None,
    Excel's text prefix dropped (`'05401` → `05401`), of several values (` ::: `) the first."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("'"):
            text = from_excel_safe(text).strip()
        if MULTI_VALUE in text:
            text = text.split(MULTI_VALUE, 1)[0].strip()
        return text or None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    text = str(value).strip()
    return text or None


def row_is_empty(cells: Sequence[Any]) -> bool:
    for value in cells:
        if value is None:
            continue
        if isinstance(value, str) and not value.strip():
            continue
        return False
    return True


def extract_row(cells: Sequence[Any], header: HeaderMap) -> dict[str, Any]:
    """A row's values as the header map says: each field's text (joined, split from full_name), and
    `attributes` (name -> text) when the map keeps any."""
    width = len(cells)
    row: dict[str, Any] = {
        name: normalize_cell(cells[index]) if index < width else None for name, index in header.positions.items()
    }
    for name, indexes in header.joined.items():
        row[name] = join_cells(cells, indexes, name)
    if header.full_name is not None:
        first, last = split_full_name(normalize_cell(cells[header.full_name]) if header.full_name < width else None)
        row.setdefault("first_name", first)
        row.setdefault("last_name", last)
    if header.attributes:
        row["attributes"] = {
            name: normalize_cell(cells[index]) if index < width else None for name, index in header.attributes.items()
        }
    return row


def join_cells(cells: Sequence[Any], indexes: Sequence[int], name: str) -> str | None:
    """Several columns' values as one field's: the non-empty ones in order, joined by ", " for an
    address and a space otherwise."""
    width = len(cells)
    parts = [text for index in indexes if index < width and (text := normalize_cell(cells[index])) is not None]
    return (", " if name == "address" else " ").join(parts) or None


def column_letter(index: int) -> str:
    """0-based index to the spreadsheet's letters: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def letter_index(letters: str) -> int:
    index = 0
    for char in letters.upper():
        index = index * 26 + ord(char) - 64
    return index - 1

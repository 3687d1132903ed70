"""What a client may say about a file (mapping, header row, sheet, encoding) and how it picks columns.

`mapping` maps a customer field to a source column: the header text when the file has a header row,
a column letter (`A`, `B`, ...) or 1-based number when `header_row` is 0 (no header row; letters and
numbers are accepted with a header too, when no header cell has that text). Fields left out fall back
to the automatic header rules (names and aliases, any order). Without `header_row` the header is the
first row, among the first ones, from which every customer field can be mapped; failing that, the
first non-empty row.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from shared.spreadsheet.rules import (
    CUSTOMER_FIELDS,
    SILENTLY_IGNORED,
    HeaderError,
    HeaderMap,
    auto_positions,
    fold_header,
    header_texts,
    ignored_columns_warning,
    letter_index,
    normalize_cell,
    row_is_empty,
)

MAX_HEADER_ROW = 1_000_000
_LETTERS = re.compile(r"^[A-Za-z]{1,3}$")


class OptionError(ValueError):
    """An option is malformed or does not fit the file: (field, message) pairs; a 422."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


@dataclass(frozen=True)
class ImportOptions:
    mapping: dict[str, str] | None = None
    header_row: int | None = None  # None: found automatically; 0: the file has no header row
    sheet: str | None = None  # a name or a 1-based index
    encoding: str | None = None  # CSV only; None: detected

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, raw: str | None) -> ImportOptions:
        return cls(**json.loads(raw)) if raw else cls()

    def merged(self, other: ImportOptions) -> ImportOptions:
        """These options with every option `other` gives replacing them."""
        values = asdict(self)
        values.update({k: v for k, v in asdict(other).items() if v is not None})
        return ImportOptions(**values)


def parse_options(raw: Mapping[str, Any]) -> ImportOptions:
    """Options from a JSON body (mapping an object) or form/query values (mapping a JSON string)."""
    errors: list[tuple[str, str]] = []
    mapping = _parse_mapping(raw.get("mapping"), errors)
    header_row = _parse_header_row(raw.get("header_row"), errors)
    sheet = raw.get("sheet")
    if sheet is not None:
        if isinstance(sheet, int) and not isinstance(sheet, bool):
            sheet = str(sheet)
        if not isinstance(sheet, str) or not sheet.strip() or len(sheet) > 255:
            errors.append(("sheet", "A sheet name or its 1-based number."))
            sheet = None
    encoding = raw.get("encoding")
    if encoding is not None:
        encoding = _parse_encoding(encoding, errors)
    if errors:
        raise OptionError(errors)
    return ImportOptions(mapping=mapping, header_row=header_row, sheet=sheet, encoding=encoding)


def _parse_mapping(value: Any, errors: list[tuple[str, str]]) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            errors.append(("mapping", 'A JSON object of customer field to column, like {"phone": "Phone 1"}.'))
            return None
    if not isinstance(value, dict):
        errors.append(("mapping", 'A JSON object of customer field to column, like {"phone": "Phone 1"}.'))
        return None
    mapping: dict[str, str] = {}
    for field, column in value.items():
        if field not in CUSTOMER_FIELDS:
            errors.append((f"mapping.{field}", f"Not a customer field (one of: {', '.join(CUSTOMER_FIELDS)})."))
        elif isinstance(column, int) and not isinstance(column, bool) and 1 <= column <= 16384:
            mapping[field] = str(column)
        elif isinstance(column, str) and column.strip() and len(column) <= 255:
            mapping[field] = column.strip()
        else:
            errors.append((f"mapping.{field}", "A header text, a column letter or a 1-based column number."))
    return mapping


def _parse_header_row(value: Any, errors: list[tuple[str, str]]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not 0 <= value <= MAX_HEADER_ROW:
        errors.append(("header_row", f"A row number from 1 to {MAX_HEADER_ROW}, or 0 when the file has no header."))
        return None
    return value


def _parse_encoding(value: Any, errors: list[tuple[str, str]]) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > 40:
        errors.append(("encoding", "A text encoding, like utf-8, cp1252 or utf-16."))
        return None
    try:
        info = codecs.lookup(value.strip())
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        errors.append(("encoding", f"Unknown encoding {value!r}: try utf-8, cp1252, latin-1 or utf-16."))
        return None
    if not getattr(info, "_is_text_encoding", True):
        errors.append(("encoding", f"{value!r} is not a text encoding."))
        return None
    return info.name


# -- columns -----------------------------------------------------------------------------------------


def column_ref(ref: str, header: Sequence[Any] | None, width: int) -> int | None:
    """The 0-based column a mapping value names, or None when no column has that name."""
    if header is not None:
        texts = [normalize_cell(c) for c in header]
        for index, text in enumerate(texts):
            if text == ref:
                return index
        folded = fold_header(ref)
        for index, text in enumerate(texts):
            if text is not None and fold_header(text) == folded:
                return index
    if ref.isdigit() and 1 <= int(ref) <= max(width, 1):
        return int(ref) - 1
    if _LETTERS.match(ref) and letter_index(ref) < width:
        return letter_index(ref)
    return None


def row_width(rows: Iterable[Sequence[Any]]) -> int:
    width = 0
    for cells in rows:
        for index in range(len(cells) - 1, -1, -1):
            if normalize_cell(cells[index]) is not None:
                width = max(width, index + 1)
                break
    return width


def resolve_columns(header: Sequence[Any] | None, width: int, mapping: Mapping[str, str] | None) -> HeaderMap:
    """Where each field sits: the mapping first, the automatic header rules for the rest. Raises
    OptionError naming the mapping's field for a column that does not exist, a column mapped twice
    or a field left unmapped; HeaderError (missing columns) when no mapping was given."""
    positions: dict[str, int] = {}
    errors: list[tuple[str, str]] = []
    for field, ref in (mapping or {}).items():
        index = column_ref(ref, header, width)
        if index is None:
            where = "no header cell has that text and it is no column" if header is not None else "no such column"
            errors.append((f"mapping.{field}", f"Column {ref!r} does not exist ({where}; the sheet has {width})."))
            continue
        taken = next((other for other, at in positions.items() if at == index), None)
        if taken is not None:
            errors.append((f"mapping.{field}", f"Column {ref!r} is already mapped to {taken}."))
            continue
        positions[field] = index
    ignored: list[str] = []
    if header is not None:
        automatic, ignored = auto_positions(header)
        used = set(positions.values())
        for field, index in automatic.items():
            if field not in positions and index not in used:
                positions[field] = index
                used.add(index)
        ignored = [
            str(cell).strip()
            for index, cell in enumerate(header)
            if fold_header(cell) and index not in used and fold_header(cell) not in SILENTLY_IGNORED
        ]
    named = {error[0] for error in errors}
    missing = [field for field in CUSTOMER_FIELDS if field not in positions and f"mapping.{field}" not in named]
    if mapping is None and not errors and missing:
        raise HeaderError(missing, header_texts(header or []))
    errors += [(f"mapping.{field}", "Required: map it to a column.") for field in missing]
    if errors:
        raise OptionError(errors)
    return HeaderMap(positions, ignored_columns_warning(ignored))


@dataclass(frozen=True)
class HeaderChoice:
    """The header row (0: none) and its cells, and the columns picked from it."""

    row: int
    cells: list[Any] | None
    width: int
    columns: HeaderMap


def choose_header(head: Sequence[tuple[int, list[Any]]], options: ImportOptions) -> HeaderChoice:
    """Pick the header among the first rows of the sheet, as the options say (see the module doc)."""
    rows = [(number, cells) for number, cells in head if not row_is_empty(cells)]
    if options.header_row == 0:
        width = row_width(cells for _, cells in rows)
        return HeaderChoice(0, None, width, resolve_columns(None, width, options.mapping))
    if options.header_row is not None:
        found = next(((n, c) for n, c in head if n == options.header_row), None)
        if found is None or row_is_empty(found[1]):
            raise OptionError([("header_row", f"Row {options.header_row} is empty or not among the first rows.")])
        number, cells = found
        width = row_width([cells])
        return HeaderChoice(number, cells, width, resolve_columns(cells, width, options.mapping))
    if not rows:
        raise HeaderError(list(CUSTOMER_FIELDS), [])
    first_error: Exception | None = None
    for number, cells in rows:
        try:
            columns = resolve_columns(cells, row_width([cells]), options.mapping)
        except (HeaderError, OptionError) as exc:
            first_error = first_error or exc
            continue
        return HeaderChoice(number, cells, row_width([cells]), columns)
    assert first_error is not None
    raise first_error

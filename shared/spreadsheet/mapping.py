"""How the columns are picked from a file, as the import options say (shared.imports.options holds the
options and reads them).

`mapping` maps a customer field to a source column: the header text when the file has a header row,
a column letter (`A`, `B`, ...) or 1-based number when `header_row` is 0 (no header row; letters and
numbers are accepted with a header too, when no header cell has that text), or a list of columns
joined in order (", " for the address, a space otherwise). Two more targets: `full_name` (one column
split into first_name and last_name where those are not mapped) and `attributes.<name>` (a column
kept on the customer under that name). A field mapped to null is left out. Fields the mapping does not
name fall back to the automatic header rules (names and aliases, any order); a header cell written
`attributes.<name>` (as an export writes it) is that attribute. Only the email needs a column.
Without `header_row` the header is the first row, among the first ones, from which the email can be
mapped; failing that, the first non-empty row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.customers.fields import ATTRIBUTE_PREFIX, FULL_NAME, MAX_ATTRIBUTE_NAME, REQUIRED_FIELDS
from shared.imports.options import ColumnRef, ImportOptions, Mapping_, OptionError
from shared.spreadsheet import detect
from shared.spreadsheet.headers import CONFIDENT, SAMPLE_ROWS, header_positions, suggest_columns
from shared.spreadsheet.rules import (
    SILENTLY_IGNORED,
    HeaderError,
    HeaderMap,
    column_letter,
    fold_header,
    header_texts,
    ignored_columns_warning,
    letter_index,
    normalize_cell,
    row_is_empty,
)

_LETTERS = re.compile(r"^[A-Za-z]{1,3}$")


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


def resolve_columns(header: Sequence[Any] | None, width: int, mapping: Mapping[str, ColumnRef] | None) -> HeaderMap:
    """Where each field sits: the mapping first, the automatic header rules for the fields it does not
    name (null: left out). Raises OptionError naming the mapping's field for a column that does not
    exist, a column mapped twice or the email left unmapped; HeaderError (missing columns) when no
    mapping was given."""
    placed = _Placement(header, width)
    placed.place_mapped(mapping or {})
    named = set(mapping or {})
    if header is not None:
        placed.place_by_header(header, named)
    positions, joined, used, errors = placed.positions, placed.joined, placed.used, placed.errors
    full_name = placed.full_name
    labels = {index: _label(header, index) for index in used}
    ignored = [
        _label(header, index)
        for index in range(width if header is None else len(header))
        if index not in used
        and (header is None or (fold_header(header[index]) and fold_header(header[index]) not in SILENTLY_IGNORED))
    ]
    if full_name is not None and "first_name" in positions and "last_name" in positions:
        full_name = None  # both parts have columns of their own: nothing left to split
    have = set(positions) | set(joined)
    missing = [field for field in REQUIRED_FIELDS if field not in have and f"mapping.{field}" not in dict(errors)]
    if missing and not errors and not named.intersection(missing):
        # The file has no column for it and nobody said which: the header is the problem.
        raise HeaderError(missing, header_texts(header or []))
    errors += [(f"mapping.{field}", "Required: map it to a column.") for field in missing]
    if errors:
        raise OptionError(errors)
    return HeaderMap(
        positions,
        ignored_columns_warning(ignored),
        joined=joined,
        full_name=full_name,
        attributes=placed.attributes,
        labels=labels,
    )


class _Placement:
    """Where the fields sit while resolve_columns finds them: the mapping's columns first, then the header
    rules' for the fields the mapping does not name; each column is used once."""

    def __init__(self, header: Sequence[Any] | None, width: int) -> None:
        self.header, self.width = header, width
        self.positions: dict[str, int] = {}
        self.joined: dict[str, tuple[int, ...]] = {}
        self.attributes: dict[str, int] = {}
        self.full_name: int | None = None
        self.used: dict[int, str] = {}
        self.errors: list[tuple[str, str]] = []

    def take(self, field: str, ref: str) -> int | None:
        index = column_ref(ref, self.header, self.width)
        if index is None:
            where = "no header cell has that text and it is no column" if self.header is not None else "no such column"
            self.errors.append(
                (f"mapping.{field}", f"Column {ref!r} does not exist ({where}; the sheet has {self.width}).")
            )
            return None
        if index in self.used and self.used[index] != field:
            self.errors.append((f"mapping.{field}", f"Column {ref!r} is already mapped to {self.used[index]}."))
            return None
        self.used[index] = field
        return index

    def place_mapped(self, mapping: Mapping[str, ColumnRef]) -> None:
        for field, ref in mapping.items():
            if ref is None:
                continue
            if isinstance(ref, list):
                indexes = [self.take(field, item) for item in ref]
                if all(index is not None for index in indexes):
                    self.joined[field] = tuple(index for index in indexes if index is not None)
                continue
            index = self.take(field, ref)
            if index is None:
                continue
            if field == FULL_NAME:
                self.full_name = index
            elif field.startswith(ATTRIBUTE_PREFIX):
                self.attributes[field[len(ATTRIBUTE_PREFIX) :]] = index
            else:
                self.positions[field] = index

    def place_by_header(self, header: Sequence[Any], named: set[str]) -> None:
        # Headers as tools write them (shared.spreadsheet.headers), by the header alone.
        for field, columns in header_positions(header).items():
            if field in named or any(index in self.used for index in columns):
                continue
            if field == FULL_NAME:
                if self.full_name is None:
                    self.full_name = columns[0]
            elif len(columns) > 1:
                self.joined[field] = tuple(columns)
            else:
                self.positions[field] = columns[0]
            self.used.update(dict.fromkeys(columns, field))
        for index, cell in enumerate(header):
            # An export's `attributes.<name>` columns import back as those attributes.
            text = normalize_cell(cell)
            if text and text.startswith(ATTRIBUTE_PREFIX) and index not in self.used and text not in named:
                name = text[len(ATTRIBUTE_PREFIX) :].strip()
                if name and len(name) <= MAX_ATTRIBUTE_NAME and name not in self.attributes:
                    self.attributes[name] = index
                    self.used[index] = text


def merge_mapping(header: Sequence[Any] | None, width: int, *layers: Mapping[str, ColumnRef] | None) -> Mapping_:
    """Mappings merged, each layer over the ones before it (the suggestions, a remembered mapping, the
    one given): a field a later layer names is taken from it (null: left out, and kept as null so the
    header rules do not map it again); an earlier layer's field whose column a later layer uses for
    another target is dropped."""
    merged: Mapping_ = {}
    for layer in layers:
        if not layer:
            continue
        taken = {index for ref in layer.values() for index in _indexes(ref, header, width)}
        merged = {
            field: ref
            for field, ref in merged.items()
            if field not in layer and not taken.intersection(_indexes(ref, header, width))
        }
        merged.update(layer)
    return merged


def _indexes(ref: ColumnRef, header: Sequence[Any] | None, width: int) -> list[int]:
    refs = [] if ref is None else ref if isinstance(ref, list) else [ref]
    return [index for item in refs if (index := column_ref(item, header, width)) is not None]


def _label(header: Sequence[Any] | None, index: int) -> str:
    """A column as the file shows it: its header text, else its letter."""
    text = normalize_cell(header[index]) if header is not None and index < len(header) else None
    return text[:100] if text else column_letter(index)


def headerless_mapping(rows: Sequence[tuple[int, list[Any]]], width: int) -> Mapping_:
    """The columns of a file without a header row, as their values suggest them (by letter): the same
    suggestions the preview shows (shared.spreadsheet.headers), the confident ones."""
    data = [cells for _, cells in rows[:SAMPLE_ROWS]]
    values = [
        [v for cells in data if index < len(cells) and (v := normalize_cell(cells[index])) is not None]
        for index in range(width)
    ]
    return {
        s.target: column_letter(index)
        for index, s in enumerate(suggest_columns(None, values))
        if s.target is not None and s.confidence >= CONFIDENT
    }


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
        raise HeaderError(list(REQUIRED_FIELDS), [])
    # shared.spreadsheet.detect: the header below a title block, or none when the first row is data.
    found_row = detect.header_row(head)
    if found_row == 0:
        width = row_width(cells for _, cells in rows)
        guessed = headerless_mapping(rows, width)
        return HeaderChoice(
            0, None, width, resolve_columns(None, width, merge_mapping(None, width, guessed, options.mapping))
        )
    if found_row is not None:
        cells = next(cells for number, cells in rows if number == found_row)
        try:
            return HeaderChoice(
                found_row, cells, row_width([cells]), resolve_columns(cells, row_width([cells]), options.mapping)
            )
        except (HeaderError, OptionError):
            pass  # the rows in order, as below: the first from which the mapping's columns can be taken
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

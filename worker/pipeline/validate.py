"""The map → validate steps a batch at a time: cells → each field's column → checks on whole columns.

RowValidator (shared.customers.schemas) costs a few Python calls per cell; most rows of a real file are valid,
so this checks a batch by columns instead: each field's cells are normalised in one comprehension,
lengths are compared once a column (its longest value), emails matched by one regular expression over
the whole column. Fields mapped to several columns are joined, first and last names split from a
`full_name` column, and `attributes.<name>` columns gathered into the row's attributes (canonical
JSON text) first. A row any of these doubts (a value too long, an email the simple pattern does not
vouch for, a cell that is not plain text) goes
through RowValidator, which answers exactly as RowSchema.load does: every message a user sees is
marshmallow's. The fast pattern only ever accepts what marshmallow accepts (tests/api/imports/test_pipeline.py
compares the two on a large generated corpus).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from marshmallow import ValidationError, validate

from shared.customers.customer_repo import encode_attributes
from shared.customers.fields import ATTRIBUTE_PREFIX, ATTRIBUTES, MAX_ATTRIBUTE_VALUE
from shared.customers.schemas import RowValidator, flatten_errors
from shared.spreadsheet.names import split_full_name
from shared.spreadsheet.rules import CUSTOMER_FIELDS, MULTI_VALUE, HeaderMap, extract_row, join_cells, normalize_cell

# A strict subset of marshmallow's Email validator (dot-atom local part of ASCII letters, digits and
# the specials it allows; a domain of ASCII labels and a 2-6 letter top-level label), lower-case only:
# the schema lower-cases emails before validating them.
_LOCAL = r"[a-z0-9!#$%&'*+/=?^`{}|~_-]+(?:\.[a-z0-9!#$%&'*+/=?^`{}|~_-]+)*"
_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,6}"
SIMPLE_EMAIL = re.compile(f"{_LOCAL}@{_DOMAIN}")
_EMAIL_COLUMN = re.compile(f"(?:{_LOCAL}@{_DOMAIN}\n)*{_LOCAL}@{_DOMAIN}")

Row = tuple[str | None, ...]
# A row error in the user's words: (the column as the file shows it, the field, the value, the message).
RowError = tuple[str | None, str | None, str | None, str]
VALUE_SHOWN = 100


class BatchValidator:
    """validate(rows) → per row, its values in STORED_FIELDS order (the attributes as their JSON text)
    or the ValidationError that RowSchema.load raises for it (plus any attribute too long)."""

    def __init__(self, header: HeaderMap, row_validator: RowValidator | None = None) -> None:
        self.header = header
        self.row_validator = row_validator or RowValidator()
        self.singles = {name: index for name, index in header.positions.items() if name in CUSTOMER_FIELDS}
        self.lengths = self._fast_plan()

    def _fast_plan(self) -> tuple[int, ...] | None:
        """Each field's maximum length, if the schema is the one the column checks stand for:
        optional text fields with a maximum length, a required email; else None (row by row)."""
        plan = self.row_validator._plan
        if tuple(entry[0] for entry in plan) != CUSTOMER_FIELDS:
            return None
        lengths: list[int] = []
        for name, required, allow_none, max_length, others in plan:
            if max_length is None:
                return None
            if name == "email":
                if not required or len(others) != 1 or not isinstance(others[0], validate.Email):
                    return None
            elif required or not allow_none or others:
                return None
            lengths.append(max_length)
        return tuple(lengths)

    def _columns(self, rows: Sequence[list[Any]]) -> dict[str, tuple[bool, Sequence[Any]]]:
        """Each mapped field's cells (raw: False) or derived values, already text (True)."""
        header = self.header
        found: dict[str, tuple[bool, Sequence[Any]]] = {}
        if self.singles:
            names, indexes = tuple(self.singles), tuple(self.singles.values())
            if len(indexes) == 1:
                (index,) = indexes
                found[names[0]] = (False, [cells[index] if index < len(cells) else None for cells in rows])
            elif min(map(len, rows)) > max(indexes):  # each field's cells, transposed at C speed
                for name, raw in zip(names, zip(*map(itemgetter(*indexes), rows), strict=True), strict=True):
                    found[name] = (False, raw)
            else:
                for name, index in zip(names, indexes, strict=True):
                    found[name] = (False, [cells[index] if index < len(cells) else None for cells in rows])
        for name, indexes in header.joined.items():
            found[name] = (True, [join_cells(cells, indexes, name) for cells in rows])
        if header.full_name is not None:
            at = header.full_name
            split = [split_full_name(normalize_cell(cells[at]) if at < len(cells) else None) for cells in rows]
            for part, name in enumerate(("first_name", "last_name")):
                found.setdefault(name, (True, [pair[part] for pair in split]))
        return found

    def _attributes(self, rows: Sequence[list[Any]], doubtful: set[int]) -> list[str | None]:
        items = list(self.header.attributes.items())
        if not items:
            return [None] * len(rows)
        out: list[str | None] = []
        for i, cells in enumerate(rows):
            width = len(cells)
            values = {
                name: text
                for name, index in items
                if index < width and (text := normalize_cell(cells[index])) is not None
            }
            if any(len(text) > MAX_ATTRIBUTE_VALUE for text in values.values()):
                doubtful.add(i)
            out.append(encode_attributes(values))
        return out

    def validate(self, rows: Sequence[list[Any]]) -> list[Row | ValidationError]:
        if self.lengths is None or not rows:
            return [self._one(cells) for cells in rows]
        doubtful: set[int] = set()
        columns: list[Sequence[str | None]] = []
        found = self._columns(rows)
        empty: list[str | None] = [None] * len(rows)
        for name, max_length in zip(CUSTOMER_FIELDS, self.lengths, strict=True):
            derived, raw = found.get(name, (True, empty))
            column = list(raw) if derived else _normalised(raw)
            if name == "email":
                column = [None if value is None else value.lower() for value in column]
                if None in column or not _EMAIL_COLUMN.fullmatch("\n".join(column)):  # type: ignore[arg-type]
                    doubtful.update(
                        i for i, value in enumerate(column) if value is None or not SIMPLE_EMAIL.fullmatch(value)
                    )
            present = [value for value in column if value is not None]
            if present and max(map(len, present)) > max_length:
                doubtful.update(i for i, value in enumerate(column) if value is not None and len(value) > max_length)
            columns.append(column)
        columns.append(self._attributes(rows, doubtful))
        results: list[Row | ValidationError] = list(zip(*columns, strict=True))
        for i in doubtful:
            results[i] = self._one(rows[i])
        return results

    def _one(self, cells: list[Any]) -> Row | ValidationError:
        row = extract_row(cells, self.header)
        attributes = row.pop(ATTRIBUTES, None) or {}
        messages: dict[str, Any] = {}
        try:
            data = self.row_validator(row)
        except ValidationError as exc:
            messages = dict(exc.messages) if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        for name, value in attributes.items():
            if value is not None and len(value) > MAX_ATTRIBUTE_VALUE:
                messages[ATTRIBUTE_PREFIX + name] = [f"Longer than {MAX_ATTRIBUTE_VALUE} characters."]
        if messages:
            return ValidationError(messages)
        return (*(data[name] for name in CUSTOMER_FIELDS), encode_attributes(attributes))

    def describe(self, cells: list[Any], error: ValidationError) -> list[RowError]:
        """A refused row's problems in the user's words: the column as the file shows it, the field,
        the value (at most VALUE_SHOWN characters) and the message."""
        row = extract_row(cells, self.header)
        attributes = row.get(ATTRIBUTES) or {}
        described: list[RowError] = []
        for field, message in flatten_errors(error.messages):
            if field is not None and field.startswith(ATTRIBUTE_PREFIX):
                value = attributes.get(field[len(ATTRIBUTE_PREFIX) :])
            else:
                value = row.get(field) if field is not None else None
            shown = None if value is None else str(value)[:VALUE_SHOWN]
            described.append((self.header.label(field), field, shown, message.rstrip(".")))
        return described


def _normalised(raw: Sequence[Any]) -> list[str | None]:
    """normalize_cell of each cell (and the schema's own strip, which then changes nothing), with no
    call for plain text: stripped, blank as None; anything else goes through normalize_cell."""
    try:  # a column of text only (most are)
        texts: list[str] = list(map(str.strip, raw))  # TypeError for anything but text
    except TypeError:  # an empty cell, a number, a date: not only text
        pass
    else:
        joined = "\n" + "\n".join(texts)
        # A value (or a line of one) starts with an apostrophe, or holds several values: normalize_cell.
        if "\n'" in joined or MULTI_VALUE in joined:
            return [
                (text or None) if text[:1] != "'" and MULTI_VALUE not in text else normalize_cell(value)
                for value, text in zip(raw, texts, strict=True)
            ]
        if "" in texts:
            return [text or None for text in texts]
        return texts  # type: ignore[return-value]
    stripped = [value.strip() if type(value) is str else value for value in raw]
    return [
        (text or None)
        if type(text) is str and text[:1] != "'" and MULTI_VALUE not in text
        else None
        if value is None
        else normalize_cell(value)
        for value, text in zip(raw, stripped, strict=True)
    ]

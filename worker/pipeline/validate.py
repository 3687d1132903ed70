"""The map → validate steps a batch at a time: cells → each field's column → checks on whole columns.

RowValidator (shared.customers.schemas) costs a few Python calls per cell; most rows of a real file are valid,
so this checks a batch by columns instead: each field's cells are normalised in one comprehension,
lengths are compared once a column (its longest value), emails matched by one regular expression over
the whole column, and the name rule checked on two columns. A row any of these doubts (a value too
long, an email the simple pattern does not vouch for, no name, a cell that is not plain text) goes
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

from shared.customers.schemas import RowValidator
from shared.spreadsheet.rules import CUSTOMER_FIELDS, HeaderMap, extract_row, normalize_cell

# A strict subset of marshmallow's Email validator (dot-atom local part of ASCII letters, digits and
# the specials it allows; a domain of ASCII labels and a 2-6 letter top-level label), lower-case only:
# the schema lower-cases emails before validating them.
_LOCAL = r"[a-z0-9!#$%&'*+/=?^`{}|~_-]+(?:\.[a-z0-9!#$%&'*+/=?^`{}|~_-]+)*"
_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,6}"
SIMPLE_EMAIL = re.compile(f"{_LOCAL}@{_DOMAIN}")
_EMAIL_COLUMN = re.compile(f"(?:{_LOCAL}@{_DOMAIN}\n)*{_LOCAL}@{_DOMAIN}")

Row = tuple[str | None, ...]


class BatchValidator:
    """validate(rows) → per row, its values in CUSTOMER_FIELDS order or the ValidationError that
    RowSchema.load raises for it."""

    def __init__(self, header: HeaderMap, row_validator: RowValidator | None = None) -> None:
        self.header = header
        self.row_validator = row_validator or RowValidator()
        self.positions = tuple(header.positions[name] for name in CUSTOMER_FIELDS)
        self.width = max(self.positions) + 1
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

    def validate(self, rows: Sequence[list[Any]]) -> list[Row | ValidationError]:
        if self.lengths is None or not rows:
            return [self._one(cells) for cells in rows]
        doubtful: set[int] = set()
        columns: list[list[str | None]] = []
        width = self.width
        if min(map(len, rows)) >= width:  # each field's cells, transposed at C speed
            raws: list[Sequence[Any]] = list(zip(*map(itemgetter(*self.positions), rows), strict=True))
        else:
            raws = [[cells[index] if index < len(cells) else None for cells in rows] for index in self.positions]
        for name, raw, max_length in zip(CUSTOMER_FIELDS, raws, self.lengths, strict=True):
            column = _normalised(raw)
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
        first, last = columns[CUSTOMER_FIELDS.index("first_name")], columns[CUSTOMER_FIELDS.index("last_name")]
        if None in first:
            doubtful.update(i for i, (a, b) in enumerate(zip(first, last, strict=True)) if a is None and b is None)
        results: list[Row | ValidationError] = list(zip(*columns, strict=True))
        for i in doubtful:
            results[i] = self._one(rows[i])
        return results

    def _one(self, cells: list[Any]) -> Row | ValidationError:
        try:
            data = self.row_validator(extract_row(cells, self.header))
        except ValidationError as exc:
            return exc
        return tuple(data[name] for name in CUSTOMER_FIELDS)


def _normalised(raw: Sequence[Any]) -> list[str | None]:
    """normalize_cell of each cell (and the schema's own strip, which then changes nothing), with no
    call for plain text: stripped, blank as None; anything else goes through normalize_cell."""
    try:  # a column of text only (most are)
        texts: list[str] = list(map(str.strip, raw))  # TypeError for anything but text
    except TypeError:  # an empty cell, a number, a date: not only text
        pass
    else:
        if "\n'" in "\n" + "\n".join(texts):  # a value (or a line of one) starts with an apostrophe
            return [
                (text or None) if text[:1] != "'" else normalize_cell(value)
                for value, text in zip(raw, texts, strict=True)
            ]
        if "" in texts:
            return [text or None for text in texts]
        return texts  # type: ignore[return-value]
    stripped = [value.strip() if type(value) is str else value for value in raw]
    return [
        (text or None) if type(text) is str and text[:1] != "'" else None if value is None else normalize_cell(value)
        for value, text in zip(raw, stripped, strict=True)
    ]

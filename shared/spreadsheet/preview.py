"""A file's preview: its sheets, the header row, each column with samples and the field it most
likely holds, and the first rows. The gateway builds it from the first rows only (never the whole
sheet), to check an upload before anything is queued and to let a client build a mapping."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.spreadsheet.mapping import (
    HeaderChoice,
    ImportOptions,
    OptionError,
    choose_header,
    row_width,
)
from shared.spreadsheet.readers import HEAD_ROWS, Rejection, SheetNotFound, UploadRejected, WorkbookError, read_head
from shared.spreadsheet.rules import (
    ALIASES,
    CUSTOMER_FIELDS,
    HeaderError,
    column_letter,
    fold_header,
    normalize_cell,
    row_is_empty,
)

PREVIEW_ROWS = 20
SAMPLES = 5

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_WEB = re.compile(r"^(https?://|www\.)\S+$|^[\w-]+(\.[\w-]+)+/?\S*$", re.I)
_PHONE = re.compile(r"^\+?[\d\s\-().]{7,20}$")
_POSTAL = re.compile(r"^([A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|\d{5}(-\d{4})?|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{4})$", re.I)
_NAMES = {**{name: name for name in CUSTOMER_FIELDS}, **ALIASES}


@dataclass
class Preview:
    """The preview document, and the problem (if any) that stops the file importing as it is."""

    document: dict[str, Any]
    choice: HeaderChoice | None
    problem: HeaderError | OptionError | None


def suggest_by_header(text: str | None) -> tuple[str | None, float]:
    folded = fold_header(text)
    if not folded:
        return None, 0.0
    if folded in CUSTOMER_FIELDS:
        return folded, 1.0
    if folded in ALIASES:
        return ALIASES[folded], 0.95
    close = difflib.get_close_matches(folded, list(_NAMES), n=1, cutoff=0.75)
    if close:
        ratio = difflib.SequenceMatcher(None, folded, close[0]).ratio()
        return _NAMES[close[0]], round(0.9 * ratio, 2)
    return None, 0.0


def suggest_by_values(values: Sequence[str]) -> tuple[str | None, float]:
    """What a column's values look like: an email-looking column is `email`, and so on."""
    if not values:
        return None, 0.0
    for field, pattern in (("email", _EMAIL), ("web", _WEB), ("postal", _POSTAL), ("phone", _PHONE)):
        share = sum(1 for v in values if pattern.match(v)) / len(values)
        if share >= 0.8 and (field != "phone" or all(sum(c.isdigit() for c in v) >= 7 for v in values)):
            return field, round(0.8 * share, 2)
    return None, 0.0


def _columns(choice: HeaderChoice | None, header: list[Any] | None, data: list[list[Any]]) -> list[dict[str, Any]]:
    width = max(row_width([header]) if header else 0, row_width(data))
    picked = {index: field for field, index in choice.columns.positions.items()} if choice else {}
    columns: list[dict[str, Any]] = []
    claimed: dict[str, tuple[float, int]] = {}
    for index in range(width):
        text = normalize_cell(header[index]) if header and index < len(header) else None
        values = [v for row in data if index < len(row) and (v := normalize_cell(row[index])) is not None]
        field, confidence = suggest_by_header(text)
        if field is None:
            field, confidence = suggest_by_values(values[:PREVIEW_ROWS])
        if index in picked:
            field, confidence = picked[index], max(confidence, 0.95)
        columns.append(
            {
                "index": index + 1,
                "letter": column_letter(index),
                "header": text,
                "samples": values[:SAMPLES],
                "suggested_field": field,
                "confidence": confidence if field else 0.0,
            }
        )
        # One column a field: the most confident keeps the suggestion.
        if field is not None:
            best = claimed.get(field)
            if best is None or confidence > best[0]:
                if best is not None:
                    columns[best[1]]["suggested_field"], columns[best[1]]["confidence"] = None, 0.0
                claimed[field] = (confidence, index)
            else:
                columns[-1]["suggested_field"], columns[-1]["confidence"] = None, 0.0
    return columns


def build_preview(path: Path, filename: str, kind: str, options: ImportOptions) -> Preview:
    """Read the first rows as the options say and describe the file. Raises UploadRejected for a
    file that cannot be read at all (an encoding that does not fit, say) or an unknown sheet."""
    try:
        reader, head = read_head(path, kind, HEAD_ROWS, sheet=options.sheet, encoding=options.encoding)
    except SheetNotFound as exc:
        raise UploadRejected(
            Rejection.UNPROCESSABLE,
            "Unknown sheet",
            f"{filename!r}: {exc}.",
            errors=[{"field": "sheet", "message": str(exc)}],
        ) from None
    except WorkbookError as exc:
        raise UploadRejected(Rejection.UNPROCESSABLE, "Unreadable file", f"{filename!r}: {exc}.") from None
    if not any(not row_is_empty(cells) for _, cells in head):
        what = "sheet is empty" if kind == "xlsx" else "file holds no rows"
        raise UploadRejected(
            Rejection.UNPROCESSABLE, "No header row", f"{filename!r}: the {what}: there is no header row and no data."
        )
    layout = getattr(reader, "layout", None)
    choice: HeaderChoice | None = None
    problem: HeaderError | OptionError | None = None
    try:
        choice = choose_header(head, options)
    except (HeaderError, OptionError) as exc:
        problem = exc
    if choice is not None:
        header_row, header = choice.row, choice.cells
    elif options.header_row is not None:
        header_row = options.header_row
        header = next((cells for n, cells in head if n == header_row), None) if header_row else None
    else:
        header_row, header = next((n, cells) for n, cells in head if not row_is_empty(cells))
    data = [(n, cells) for n, cells in head if n > header_row and not row_is_empty(cells)]
    columns = _columns(choice, header, [cells for _, cells in data])
    mapping: dict[str, str] = {}
    for column in columns:
        field = column["suggested_field"]
        if field is not None:
            mapping[field] = column["header"] if header is not None and column["header"] else column["letter"]
    if options.mapping:
        mapping.update(options.mapping)
    width = len(columns)
    document = {
        "kind": kind,
        "sheets": [
            {"index": s.index, "name": s.name, "hidden": s.hidden, "selected": s.name == layout.sheet_name}
            for s in layout.sheets
        ]
        if layout is not None
        else [],
        "sheet": layout.sheet_name if layout is not None else None,
        "encoding": reader.encoding,
        "header_row": header_row,
        "columns": columns,
        "mapping": mapping,
        "unmapped_required": [f for f in CUSTOMER_FIELDS if f not in mapping],
        "rows": [
            {"row": n, "values": [normalize_cell(c) for c in (list(cells) + [None] * width)[:width]]}
            for n, cells in data[:PREVIEW_ROWS]
        ],
        "rows_total_estimate": reader.total_estimate,
    }
    return Preview(document, choice, problem)


def problem_extra(preview: Preview) -> dict[str, Any]:
    """The members a 422 problem document carries for a file whose columns do not fit: what is
    missing, the header found, field errors of a mapping, and the preview to build a mapping from."""
    extra: dict[str, Any] = {"preview": preview.document}
    problem = preview.problem
    if isinstance(problem, HeaderError):
        extra["missing_columns"] = problem.missing
        extra["header"] = problem.found
    elif isinstance(problem, OptionError):
        extra["errors"] = [{"field": field, "message": message} for field, message in problem.errors]
    return extra

"""A file's preview: its sheets, the header row, each column with samples and the field it most
likely holds, and the first rows. The gateway builds it from the first rows only (never the whole
sheet), to check an upload before anything is queued and to let a client build a mapping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.customers.fields import ATTRIBUTE_PREFIX, REQUIRED_FIELDS
from shared.imports.options import ImportOptions, Mapping_, OptionError
from shared.spreadsheet.detect import formula_warning, is_footer
from shared.spreadsheet.headers import CONFIDENT, SAMPLE_ROWS, suggest_columns
from shared.spreadsheet.mapping import (
    HeaderChoice,
    choose_header,
    column_ref,
    merge_mapping,
    resolve_columns,
    row_width,
)
from shared.spreadsheet.readers import HEAD_ROWS, Rejection, SheetNotFound, UploadRejected, WorkbookError, read_head
from shared.spreadsheet.rules import (
    HeaderError,
    column_letter,
    normalize_cell,
    row_is_empty,
)

PREVIEW_ROWS = SAMPLE_ROWS
SAMPLES = 5
# Why a column got its suggestion (each preview column's `reason`): its header text, its values, a
# mapping remembered from an earlier file with the same header, or the mapping the client gave.
REASONS = ("header", "values", "remembered", "mapping")


@dataclass(frozen=True)
class Remembered:
    """A mapping remembered for this file's header (shared.imports.mapping_repo)."""

    id: int
    mapping: Mapping_
    filename: str
    last_used: str  # ISO 8601, UTC


@dataclass
class Preview:
    """The preview document, and the problem (if any) that stops the file importing as it is."""

    document: dict[str, Any]
    choice: HeaderChoice | None
    problem: HeaderError | OptionError | None


def _columns(header: list[Any] | None, data: list[list[Any]]) -> list[dict[str, Any]]:
    """Each column with its samples and the field it most likely holds (by its header, else its values):
    one column a field, the most confident keeps the suggestion."""
    width = max(row_width([header]) if header else 0, row_width(data))
    texts = [normalize_cell(header[index]) if header and index < len(header) else None for index in range(width)]
    values = [
        [v for row in data[:PREVIEW_ROWS] if index < len(row) and (v := normalize_cell(row[index])) is not None]
        for index in range(width)
    ]
    # shared.spreadsheet.headers: headers as tools write them, weighed by the values (evidence.py).
    suggestions = suggest_columns(texts if header else None, values)
    return [
        {
            "index": index + 1,
            "letter": column_letter(index),
            "header": texts[index],
            "samples": values[index][:SAMPLES],
            "suggested_field": suggestion.target,
            "confidence": suggestion.confidence if suggestion.target else 0.0,
            "reason": suggestion.reason if suggestion.target else None,
        }
        for index, suggestion in enumerate(suggestions)
    ]


def _clear(column: dict[str, Any]) -> None:
    column["suggested_field"], column["confidence"], column["reason"] = None, 0.0, None


def _ref(column: dict[str, Any], has_header: bool) -> str:
    """How a mapping names the column: its header text when the file has a header row, else its letter."""
    return column["header"] if has_header and column["header"] else column["letter"]


def _mark(
    columns: list[dict[str, Any]],
    header: list[Any] | None,
    layers: list[tuple[str, Mapping_]],
    mapping: Mapping_,
) -> None:
    """Each column as the merged mapping uses it: its target, and why (the layer it came from)."""
    width = len(columns)
    used: dict[int, tuple[str, str]] = {}
    for target, ref in mapping.items():
        refs = [] if ref is None else ref if isinstance(ref, list) else [ref]
        origin = next((reason for reason, layer in reversed(layers) if target in layer), "header")
        for item in refs:
            index = column_ref(item, header, width)
            if index is not None:
                used[index] = (target, origin)
    for index, column in enumerate(columns):
        if index in used:
            target, origin = used[index]
            if column["suggested_field"] != target or origin in ("remembered", "mapping"):
                column["suggested_field"], column["reason"] = target, origin
                column["confidence"] = 1.0
        elif column["suggested_field"] is not None and column["confidence"] >= CONFIDENT:
            _clear(column)  # its field comes from another column now


def build_preview(
    path: Path, filename: str, kind: str, options: ImportOptions, remembered: Remembered | None = None
) -> Preview:
    """Read the first rows as the options say and describe the file. Raises UploadRejected for a
    file that cannot be read at all (an encoding that does not fit, say) or an unknown sheet.

    The preview's `mapping` is what an import started now uses: the confident suggestions, over them
    a mapping remembered for this header, over both the mapping given (shared.spreadsheet.mapping's
    merge_mapping)."""
    reader, head = _read_first_rows(path, filename, kind, options)
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
    # A report's footer lines ("Total (32)", "Confidential") are no rows (the import skips them too).
    data = [(n, cells) for n, cells in head if n > header_row and not row_is_empty(cells) and not is_footer(cells)]
    columns = _columns(header, [cells for _, cells in data])
    has_header = header is not None and header_row > 0
    found = header if has_header else None
    layers: list[tuple[str, Mapping_]] = [("header", _suggested(columns, has_header))]
    if remembered is not None:
        layers.append(("remembered", remembered.mapping))
    if options.mapping:
        layers.append(("mapping", options.mapping))
    mapping = merge_mapping(found, len(columns), *(layer for _, layer in layers))
    _mark(columns, found, layers, mapping)
    row_problem = isinstance(problem, OptionError) and any(field == "header_row" for field, _ in problem.errors)
    # No row the header rules take for a header, and no mapping to say otherwise: the values' guesses
    # alone do not make the first row a header (a headerless file's first customer would be lost).
    unfound = isinstance(problem, HeaderError) and not options.mapping and remembered is None
    if not row_problem and not unfound:
        # The merged mapping is what the import will use: check it fits the file.
        try:
            resolved = resolve_columns(found, len(columns), mapping)
        except (HeaderError, OptionError) as exc:
            choice, problem = None, exc
        else:
            choice, problem = HeaderChoice(header_row, found, len(columns), resolved), None
    document = _document(kind, reader, header_row, columns, mapping, remembered, choice, data)
    return Preview(document, choice, problem)


def _read_first_rows(path: Path, filename: str, kind: str, options: ImportOptions) -> tuple[Any, list[Any]]:
    """The reader and the first HEAD_ROWS rows; UploadRejected for an unknown sheet, a file that cannot be
    read, or one that holds no row at all."""
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
    return reader, head


def _suggested(columns: list[dict[str, Any]], has_header: bool) -> Mapping_:
    """The mapping the columns suggest with confidence (an export's attribute columns included); several
    columns of one field (the address and its second line) are joined in order."""
    for column in columns:
        if has_header and column["suggested_field"] is None and (column["header"] or "").startswith(ATTRIBUTE_PREFIX):
            # An export's attribute column: imported back as that attribute.
            column["suggested_field"], column["confidence"], column["reason"] = column["header"], 1.0, "header"
    suggested: Mapping_ = {}
    for column in columns:
        if column["suggested_field"] is not None and column["confidence"] >= CONFIDENT:
            field, ref = column["suggested_field"], _ref(column, has_header)
            before = suggested.get(field)
            suggested[field] = ref if before is None else [*(before if isinstance(before, list) else [before]), ref]
    return suggested


def _document(
    kind: str,
    reader: Any,
    header_row: int,
    columns: list[dict[str, Any]],
    mapping: Mapping_,
    remembered: Remembered | None,
    choice: HeaderChoice | None,
    data: list[Any],
) -> dict[str, Any]:
    """The preview document the API answers."""
    layout = getattr(reader, "layout", None)
    width = len(columns)
    return {
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
        "unmapped_required": [f for f in REQUIRED_FIELDS if mapping.get(f) is None],
        "remembered": None
        if remembered is None
        else {"id": remembered.id, "filename": remembered.filename, "last_used": remembered.last_used},
        "warnings": [*(choice.columns.warnings if choice is not None else []), *_formula_warnings(reader)],
        "rows": [
            {"row": n, "values": [normalize_cell(c) for c in (list(cells) + [None] * width)[:width]]}
            for n, cells in data[:PREVIEW_ROWS]
        ],
        "rows_total_estimate": reader.total_estimate,
    }


def _formula_warnings(reader: Any) -> list[str]:
    """Formula cells of the first rows with no saved value (read as empty), named before the import starts."""
    cells, count = reader.uncached_formulas()
    return [formula_warning(cells, count)] if count else []


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

"""The read → map → validate steps: a sheet as a sequence of typed messages (runs in the parser process)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from shared.mapping import ImportOptions, choose_header
from shared.readers import HEAD_ROWS, WorkbookError, open_reader
from shared.schemas import RowValidator, flatten_errors
from shared.spreadsheet import CUSTOMER_FIELDS, extract_row, normalize_cell, row_is_empty
from worker.pipeline.messages import ParsedBatch, SheetEnd, SheetInfo
from worker.pipeline.stage import stage_rows


@dataclass(frozen=True)
class SourceParams:
    """What the parser process needs to know of the job."""

    path: Path
    kind: str
    options: ImportOptions
    memory_budget_bytes: int
    batch_size: int
    resume_after_row: int
    # MAX_ROWS_PER_JOB: a file with more data rows fails before any row past the limit is emitted
    # (the batches before it are committed, as with any job that fails part-way).
    max_rows: int | None = None


def width_problem(cells: list[Any], width: int) -> str | None:
    """For a CSV, where every record should hold one value per header column: what is wrong with
    this record's count, if anything (trailing empty values are harmless)."""
    count = len(cells)
    if count > width:
        while count > width and (cells[count - 1] is None or not str(cells[count - 1]).strip()):
            count -= 1
    if count == width:
        return None
    if count > width:
        return (
            f"the row has {count} values but the header has {width} columns: a value holds an unquoted "
            "separator, or there are values under no header. Nothing of this row was imported"
        )
    return (
        f"the row has {count} values but the header has {width} columns: some values are missing. "
        "Nothing of this row was imported"
    )


def too_many_rows(limit: int) -> str:
    return (
        f"the file has more than {limit:,} data rows, the most one job takes (MAX_ROWS_PER_JOB): "
        f"split it into files of at most {limit:,} rows"
    )


def _head(rows: Iterator[tuple[int, list[Any]]]) -> list[tuple[int, list[Any]]]:
    """The first rows, enough of them to find the header in: HEAD_ROWS non-empty ones at most."""
    head: list[tuple[int, list[Any]]] = []
    filled = 0
    for item in rows:
        head.append(item)
        if not row_is_empty(item[1]):
            filled += 1
            if filled >= HEAD_ROWS:
                break
    return head


class RowSource:
    """Reads the sheet, maps its header, validates each row and stages each batch. Rows up to the
    job's checkpoint are read and skipped (a resumed job). Raises WorkbookError, HeaderError or
    OptionError for a file that cannot be imported."""

    def __init__(self, params: SourceParams) -> None:
        self.params = params

    def messages(self) -> Iterator[SheetInfo | ParsedBatch | SheetEnd]:
        """A SheetInfo, then ParsedBatch objects of at most batch_size rows, then a SheetEnd when the
        sheet had no data rows."""
        p = self.params
        validate_row = RowValidator()
        names = CUSTOMER_FIELDS
        reader = open_reader(p.path, p.kind, p.memory_budget_bytes, sheet=p.options.sheet, encoding=p.options.encoding)
        try:
            rows = reader.rows()
            head = _head(rows)
            if all(row_is_empty(cells) for _, cells in head):
                raise WorkbookError("the sheet is empty: no header row and no data")
            choice = choose_header(head, p.options)
            header = choice.columns
            width = choice.width
            by_index = {index: name for name, index in header.positions.items()}
            header_text = choice.cells or []
            yield SheetInfo(
                reader.name,
                None if reader.total_estimate is None else reader.total_estimate + (1 if choice.row == 0 else 0),
                header.warnings,
                sheet=reader.sheet_name,
                encoding=reader.encoding,
                header_row=choice.row,
                source_header=[
                    by_index.get(i) or (normalize_cell(header_text[i]) if i < len(header_text) else None)
                    for i in range(width)
                ],
            )
            data_rows = 0
            batch = ParsedBatch()
            values: list[tuple[str | None, ...]] = []
            strict = reader.strict_width
            for number, cells in itertools.chain(head, rows):
                if number <= choice.row or row_is_empty(cells):
                    continue
                data_rows += 1
                if p.max_rows is not None and data_rows > p.max_rows:
                    raise WorkbookError(too_many_rows(p.max_rows))
                if number <= p.resume_after_row:
                    continue
                batch.last_row = number
                batch.rows_read += 1
                problem = width_problem(cells, width) if strict else None
                if problem is not None:
                    batch.invalid += 1
                    batch.errors.append((number, None, problem))
                    batch.rejected.append((number, [normalize_cell(c) for c in cells]))
                else:
                    try:
                        data = validate_row(extract_row(cells, header))
                    except ValidationError as exc:
                        batch.invalid += 1
                        batch.errors.extend(
                            (number, column, message) for column, message in flatten_errors(exc.messages)
                        )
                        batch.rejected.append((number, [normalize_cell(c) for c in cells]))
                    else:
                        values.append(tuple(data[name] for name in names))
                if batch.rows_read >= p.batch_size:
                    batch.staged = stage_rows(values)
                    yield batch
                    batch, values = ParsedBatch(), []
            if batch.rows_read:
                batch.staged = stage_rows(values)
                yield batch
            if not data_rows:
                yield SheetEnd(["no data rows: the file holds a header row and nothing under it"])
        finally:
            reader.close()

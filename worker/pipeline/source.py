"""The read → map → validate steps: a sheet as a sequence of typed messages (runs in the parser process)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from shared.customers.fields import ATTRIBUTE_PREFIX, FULL_NAME
from shared.imports.parts import part_of
from shared.spreadsheet.mapping import ImportOptions, choose_header
from shared.spreadsheet.readers import HEAD_ROWS, WorkbookError, open_reader
from shared.spreadsheet.rules import normalize_cell, row_is_empty
from worker.pipeline.messages import ParsedBatch, SheetEnd, SheetInfo
from worker.pipeline.modes import Modes, RowKeys
from worker.pipeline.stage import stage_rows
from worker.pipeline.validate import BatchValidator


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
    # One part of a job split over several workers (shared.imports.parts): only its rows are emitted.
    part: int = 0
    parts: int = 1


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


_CHUNK = 1024


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
            by_index.update({index: ATTRIBUTE_PREFIX + name for name, index in header.attributes.items()})
            if header.full_name is not None:
                by_index[header.full_name] = FULL_NAME
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
            validator = BatchValidator(header)
            email_index = header.positions["email"]
            keys = RowKeys(Modes.of(p.options), header_text, choice.row != 0, email_index)
            if problem := keys.missing_id_column():
                raise WorkbookError(problem)
            data_rows = 0
            batch = ParsedBatch()
            pending: list[tuple[int, list[Any]]] = []
            strict = reader.strict_width
            source = itertools.chain(head, rows)
            # A chunk of rows at a time: the per-row work is a few comprehensions, not a loop body.
            while chunk := list(itertools.islice(source, _CHUNK)):
                kept = [item for item in chunk if item[0] > choice.row and not row_is_empty(item[1])]
                over = p.max_rows is not None and data_rows + len(kept) > p.max_rows
                if over:
                    kept = kept[: max(p.max_rows - data_rows, 0)]  # type: ignore[operator]
                data_rows += len(kept)
                if p.parts > 1:
                    kept = [item for item in kept if part_of(item[1], email_index, item[0], p.parts) == p.part]
                if p.resume_after_row and kept and kept[0][0] <= p.resume_after_row:
                    keys.skipped_rows([item for item in kept if item[0] <= p.resume_after_row], email_index)
                    kept = [item for item in kept if item[0] > p.resume_after_row]
                while kept:
                    room = p.batch_size - batch.rows_read
                    part, kept = kept[:room], kept[room:]
                    batch.rows_read += len(part)
                    batch.last_row = part[-1][0]
                    if strict and any(len(cells) != width for _, cells in part):
                        for number, cells in part:
                            problem = width_problem(cells, width) if len(cells) != width else None
                            if problem is None:
                                pending.append((number, cells))
                            else:
                                batch.invalid += 1
                                batch.errors.append((number, None, None, None, problem))
                                batch.rejected.append((number, [normalize_cell(c) for c in cells]))
                    else:
                        pending.extend(part)
                    if batch.rows_read >= p.batch_size:
                        yield _complete(batch, pending, validator, keys)
                        batch, pending = ParsedBatch(), []
                if over:
                    raise WorkbookError(too_many_rows(p.max_rows))  # type: ignore[arg-type]
            if batch.rows_read:
                yield _complete(batch, pending, validator, keys)
            ending = keys.warnings()  # repeated emails
            if not data_rows:
                ending.insert(0, "no data rows: the file holds a header row and nothing under it")
            if ending:
                yield SheetEnd(ending)
        finally:
            reader.close()


def _complete(
    batch: ParsedBatch, pending: list[tuple[int, list[Any]]], validator: BatchValidator, keys: RowKeys | None = None
) -> ParsedBatch:
    """Validate the batch's rows (all at once) and stage the valid ones (with what the import's modes
    need of them, when `keys` is given)."""
    width_problems = bool(batch.errors)
    failed = False
    values = []
    valid = []
    for (number, cells), result in zip(pending, validator.validate([cells for _, cells in pending]), strict=True):
        if isinstance(result, ValidationError):
            failed = True
            batch.invalid += 1
            batch.errors.extend((number, *error) for error in validator.describe(cells, result))
            batch.rejected.append((number, [normalize_cell(c) for c in cells]))
        else:
            values.append(result)
            valid.append((number, cells))
    if width_problems and failed:
        # Rows of the wrong width were noted as they came: keep every list in the file's order.
        batch.errors.sort(key=lambda error: error[0])
        batch.rejected.sort(key=lambda row: row[0])
    batch.staged = stage_rows(values) if keys is None else keys.stage(batch, valid, values)
    return batch

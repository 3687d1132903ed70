"""The read → map → validate steps: a sheet as a sequence of typed messages (runs in the parser process)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from shared.customers.fields import ATTRIBUTE_PREFIX, FIELD_LENGTHS, FULL_NAME, STORED_FIELDS
from shared.imports.options import ImportOptions
from shared.imports.parts import part_of
from shared.spreadsheet.detect import footer_warning, formula_warning, is_footer
from shared.spreadsheet.evidence import normalize_phone
from shared.spreadsheet.mapping import choose_header
from shared.spreadsheet.readers import HEAD_ROWS, WorkbookError, open_reader
from shared.spreadsheet.rules import MULTI_VALUE, HeaderMap, column_letter, normalize_cell, row_is_empty
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
    # PHONE_DEFAULT_REGION: phones written in international format (empty: as written).
    phone_region: str = ""


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
            footers: list[tuple[int, list[Any]]] = []
            # Cells holding several values (` ::: `): the first is kept (normalize_cell), the rows warned.
            several: list[tuple[int, int]] = []
            mapped = mapped_columns(header)
            batch = ParsedBatch()
            pending: list[tuple[int, list[Any]]] = []
            strict = reader.strict_width
            source = itertools.chain(head, rows)
            # A chunk of rows at a time: the per-row work is a few comprehensions, not a loop body.
            while chunk := list(itertools.islice(source, _CHUNK)):
                kept = [item for item in chunk if item[0] > choice.row and not row_is_empty(item[1])]
                # Lines after the table that are no customers ("Total (32)", "Confidential"): skipped,
                # named in a warning, not counted. Only a row with no email can be one.
                blank = [item for item in kept if email_index >= len(item[1]) or not item[1][email_index]]
                if blank and (found := [item for item in blank if is_footer(item[1], email_index)]):
                    footers.extend((number, cells) for number, cells in found)
                    skip = {number for number, _ in found}
                    kept = [item for item in kept if item[0] not in skip]
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
                        several_values(pending, mapped, several)
                        yield _complete(batch, pending, validator, keys, p.phone_region)
                        batch, pending = ParsedBatch(), []
                if over:
                    raise WorkbookError(too_many_rows(p.max_rows))  # type: ignore[arg-type]
            if batch.rows_read:
                several_values(pending, mapped, several)
                yield _complete(batch, pending, validator, keys, p.phone_region)
            ending = keys.warnings()  # repeated emails
            if footers:
                ending.append(footer_warning(footers))
            if several:
                ending.append(several_values_warning(several, header))
            uncached, count = reader.uncached_formulas()
            if count:
                ending.append(formula_warning(uncached, count))
            if not data_rows:
                ending.insert(0, "no data rows: the file holds a header row and nothing under it")
            if ending:
                yield SheetEnd(ending)
        finally:
            reader.close()


def mapped_columns(header: HeaderMap) -> tuple[int, ...]:
    """Every column an import takes a value from."""
    used = set(header.positions.values()) | set(header.attributes.values())
    used.update(index for indexes in header.joined.values() for index in indexes)
    if header.full_name is not None:
        used.add(header.full_name)
    return tuple(sorted(used))


def several_values(pending: list[tuple[int, list[Any]]], mapped: tuple[int, ...], found: list[tuple[int, int]]) -> None:
    """Note (row, column) of each mapped cell holding several values. One join of the batch's cells (C
    speed; a workbook's numbers and empty cells through repr) says whether there are any; only then is each
    cell looked at."""
    if not pending or not mapped:
        return
    try:
        text = "\x1f".join(itertools.chain.from_iterable(cells for _, cells in pending))
    except TypeError:  # not text only (a workbook's numbers, dates, empty cells)
        text = repr([cells for _, cells in pending])
    if MULTI_VALUE not in text:
        return
    for number, cells in pending:
        for index in mapped:
            if index < len(cells) and isinstance(cells[index], str) and MULTI_VALUE in cells[index]:
                found.append((number, index))


SEVERAL_LISTED = 5


def several_values_warning(found: list[tuple[int, int]], header: HeaderMap) -> str:
    listed = ", ".join(
        f"row {row} {header.labels.get(index) or column_letter(index)!r}" for row, index in found[:SEVERAL_LISTED]
    )
    more = f" and {len(found) - SEVERAL_LISTED} more" if len(found) > SEVERAL_LISTED else ""
    return (
        f"{len(found)} cell(s) held several values (' ::: ' between them, as Google Contacts writes): the first "
        f"of each was imported ({listed}{more})"
    )


_PHONE = STORED_FIELDS.index("phone")


def _international_phone(row: Any, region: str) -> Any:
    phone = row[_PHONE]
    if not phone:
        return row
    return (*row[:_PHONE], normalize_phone(phone, region, FIELD_LENGTHS["phone"]), *row[_PHONE + 1 :])


def _complete(
    batch: ParsedBatch,
    pending: list[tuple[int, list[Any]]],
    validator: BatchValidator,
    keys: RowKeys | None = None,
    phone_region: str = "",
) -> ParsedBatch:
    """Validate the batch's rows (all at once) and stage the valid ones (with what the import's modes
    need of them, when `keys` is given; their phones in international format with `phone_region`)."""
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
    if phone_region:
        values = [_international_phone(row, phone_region) for row in values]
    batch.staged = stage_rows(values) if keys is None else keys.stage(batch, valid, values)
    return batch

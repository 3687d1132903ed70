"""What the stages hand each other: plain dataclasses, picklable (they cross a process boundary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.customers.customer_repo import stored_values


@dataclass
class SheetInfo:
    """The sheet was opened and its header found."""

    reader: str
    total_estimate: int | None
    warnings: list[str]
    sheet: str | None = None
    encoding: str | None = None
    header_row: int | None = None
    # The header a rejected-rows download carries: the field name of each mapped column, the
    # file's own header text for the others.
    source_header: list[str | None] | None = None


@dataclass
class SheetEnd:
    """The sheet was read to its end; what the rows as a whole call for saying."""

    warnings: list[str]


@dataclass
class SourceFailed:
    """The file cannot be imported (unreadable, no header, an option that does not fit): the job fails
    with this message. `detail`: the traceback of an unexpected error, for the worker's log."""

    message: str
    detail: str | None = None


@dataclass
class StagedRows:
    """A batch's valid rows as the writer needs them, one entry per row in file order: its email,
    the hex hash of its values (customer_repo.row_hash_hex) and its line of the staging file without
    the newline (numbered by its index here; it holds the values). `known_query` asks the table what it holds of these
    emails (customer_repo.known_query)."""

    emails: list[str]
    hashes: list[str]
    lines: list[str]
    known_query: str
    # Import modes (worker.pipeline.modes): each row's number in the file; when the file has them, its
    # `id` (match_on=id) and `version` cells; and the cells as read, for a row error found at commit.
    rows: list[int] = field(default_factory=list)
    ids: list[int | None] | None = None
    versions: list[int | None] | None = None
    cells: list[list[str | None]] | None = None
    labels: dict[str, str] | None = None  # field -> its column as the file shows it (id, version, email)

    def __len__(self) -> int:
        return len(self.emails)


@dataclass
class ParsedBatch:
    last_row: int = 0
    rows_read: int = 0
    # The valid rows as loaded; the pipeline does not fill it (it sends `staged`), a caller building a
    # batch by hand does, then calls prepare().
    valid: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # (row, the column as the file shows it, the field, the value, the message)
    errors: list[tuple[int, str | None, str | None, str | None, str]] = field(default_factory=list)
    rejected: list[tuple[int, list[str | None]]] = field(default_factory=list)
    invalid: int = 0
    staged: StagedRows | None = None

    def prepare(self) -> ParsedBatch:
        from worker.pipeline.stage import stage_rows

        self.staged = stage_rows([tuple(stored_values(data)) for _, data in self.valid])
        return self


SourceMessage = SheetInfo | ParsedBatch | SheetEnd | SourceFailed

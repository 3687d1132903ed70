"""The stage step (runs in the parser process): valid rows → what the writer sends to MySQL and Redis.

Built a column at a time where it can be: NULLs and MySQL escapes per column (a column without a
special character, nearly all of them, is taken as it is), then each row's line by one C-level join.
The lines are exactly customer_repo.stage_line's, and their hashes customer_repo.row_hash_hex's
(tests/api/imports/test_pipeline.py checks both).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from shared.customers import customer_repo
from shared.customers.fields import STORED_FIELDS
from worker.pipeline.messages import StagedRows

_EMAIL_AT = STORED_FIELDS.index("email")
_NULL = "\\N"


def _tsv_column(column: Sequence[str | None]) -> list[str]:
    present = "".join([value for value in column if value is not None])
    if customer_repo.needs_tsv_escape(present):
        escape = customer_repo.tsv_escape
        return [_NULL if value is None else escape(value) for value in column]
    if None not in column:
        return column  # type: ignore[return-value]
    return [_NULL if value is None else value for value in column]


def stage_rows(
    rows: Sequence[tuple[str | None, ...]], *, ids: Sequence[int] = (), with_values: bool = False
) -> StagedRows:
    """Rows in STORED_FIELDS order (the attributes as their JSON text) → StagedRows (lines numbered by
    their index in `rows`)."""
    if not rows:
        return StagedRows([], [], [], "")
    columns = list(zip(*rows, strict=True))
    bodies = list(map("\t".join, zip(*map(_tsv_column, columns), strict=True)))
    blake2b = hashlib.blake2b
    hashes = [blake2b(body.encode(), digest_size=16).hexdigest() for body in bodies]
    lines = list(map("\t".join, zip(map(str, range(len(bodies))), bodies, hashes, strict=True)))
    emails: list[str] = list(columns[_EMAIL_AT])  # validated: never None
    # The query for what the table holds: also by id (match_on=id), with every row's values (blank_cells=keep).
    return StagedRows(emails, hashes, lines, customer_repo.known_query(emails, ids=ids, with_values=with_values))

"""The stage step (runs in the parser process): valid rows → what the writer sends to MySQL and Redis."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from shared import customer_repo
from shared.spreadsheet import CUSTOMER_FIELDS
from worker.pipeline.messages import StagedRows

_EMAIL_AT = CUSTOMER_FIELDS.index("email")


def stage_rows(rows: Sequence[tuple[str | None, ...]]) -> StagedRows:
    """Rows in CUSTOMER_FIELDS order → StagedRows (lines numbered by their index in `rows`)."""
    emails: list[str] = []
    hashes: list[str] = []
    lines: list[str] = []
    documents: list[bytes] = []
    dumps = orjson.dumps
    stage_line = customer_repo.stage_line
    names = CUSTOMER_FIELDS
    for seq, row in enumerate(rows):
        line, digest = stage_line(seq, row)
        lines.append(line)
        hashes.append(digest)
        emails.append(row[_EMAIL_AT])  # type: ignore[arg-type]  # validated: never None
        documents.append(dumps(dict(zip(names, row, strict=True)))[1:-1])
    return StagedRows(emails, hashes, lines, documents, customer_repo.known_query(emails) if emails else "")

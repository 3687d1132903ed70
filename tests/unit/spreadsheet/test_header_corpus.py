"""The column suggestions on the export-layout corpus (tests/data/exports, provenance in tests/data/README.md):
the preview of each file as a new user uploads it, scored against the mapping a careful person makes.
Prints right / wrong / missed per file (`pytest -s`, and always in the terminal summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.imports.options import ImportOptions
from shared.spreadsheet.preview import build_preview
from tests.support.header_corpus import FileScore, expectations, preview_scores, table

# The floor: no wrong suggestion at all, and at least this share of the columns to map suggested right.
MIN_RIGHT_SHARE = 0.9


def _suggest(path: Path, mapping: dict[str, Any]) -> tuple[int, list[str | None], list[str | None]]:
    kind = "xlsx" if path.suffix == ".xlsx" else "csv"
    preview = build_preview(path, path.name, kind, ImportOptions())
    columns = preview.document["columns"]
    return preview.document["header_row"], [c["header"] for c in columns], [c["suggested_field"] for c in columns]


@pytest.fixture(scope="module")
def corpus() -> list[tuple[FileScore, int]]:
    return preview_scores(_suggest)


def test_the_corpus_has_twelve_tools_or_more() -> None:
    tools = {name.split("-")[0] for name in expectations()}
    assert len(tools) >= 8 and len(expectations()) >= 14  # 14 files from 12 tools (HubSpot and Mailchimp twice)


def test_suggestions_on_real_export_layouts(
    corpus: list[tuple[FileScore, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    results = [score for score, _ in corpus]
    with capsys.disabled():
        print("\nColumn suggestions on tests/data/exports (right / wrong / missed):\n" + table(results))
    right = sum(r.right for r in results)
    expected = sum(r.right + len(r.missed) for r in results) + sum(
        1 for r in results for w in r.wrong if "expected" in w
    )
    assert [w for r in results for w in r.wrong] == []
    assert right / expected >= MIN_RIGHT_SHARE, table(results)


def test_each_file_previews_from_its_header_row(corpus: list[tuple[FileScore, int]]) -> None:
    found = {score.name: row for score, row in corpus}
    for name, mapping in expectations().items():
        assert found[name] == mapping.get("header_row", 1), name

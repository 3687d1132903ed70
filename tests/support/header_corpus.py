"""The export-layout corpus (tests/data/exports): each file's column suggestions scored against the mapping
a careful person makes (expected.json). Used by tests/unit/spreadsheet/test_header_corpus.py and
tests/bench/header_corpus.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXPORTS = Path(__file__).resolve().parent.parent / "data" / "exports"


@dataclass
class FileScore:
    """How a file's suggestions compare with the expected mapping: `right` columns suggested the expected
    target, `wrong` suggested another (or one where none was expected), `missed` none where one was."""

    name: str
    right: int = 0
    wrong: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return self.right + len(self.missed) + sum(1 for w in self.wrong if "expected" in w)


def expectations() -> dict[str, dict[str, Any]]:
    raw = json.loads((EXPORTS / "expected.json").read_text(encoding="utf-8"))
    return {name: mapping for name, mapping in raw.items() if not name.startswith("_")}


def expected_columns(mapping: dict[str, Any]) -> dict[str, str]:
    """Column header → target, from a file's expected mapping (field → column or list of columns)."""
    columns: dict[str, str] = {}
    for target, refs in mapping.items():
        if target in ("header_row", "sheet"):
            continue
        for ref in refs if isinstance(refs, list) else [refs]:
            columns[ref] = target
    return columns


def score(
    name: str, headers: Sequence[str | None], suggested: Sequence[str | None], mapping: dict[str, Any]
) -> FileScore:
    want = expected_columns(mapping)
    result = FileScore(name)
    for header, target in zip(headers, suggested, strict=True):
        expected = want.get(header or "")
        if target is not None and target == expected:
            result.right += 1
        elif target is not None:
            result.wrong.append(f"{header!r} → {target}" + (f" (expected {expected})" if expected else ""))
        elif expected is not None:
            result.missed.append(f"{header!r} ({expected})")
    return result


def preview_scores(
    suggest: Callable[[Path, dict[str, Any]], tuple[int, list[str | None], list[str | None]]],
) -> list[tuple[FileScore, int]]:
    """Each corpus file scored by `suggest(path, expected mapping) → (header_row, headers, targets)`;
    with the header row it found."""
    results = []
    for name, mapping in expectations().items():
        header_row, headers, targets = suggest(EXPORTS / name, mapping)
        results.append((score(name, headers, targets, mapping), header_row))
    return results


def table(results: Sequence[FileScore]) -> str:
    """The per-file table, right / wrong / missed, with the totals."""
    lines = [f"{'file':36} {'right':>5} {'wrong':>5} {'missed':>6}"]
    for r in results:
        lines.append(f"{r.name:36} {r.right:5} {len(r.wrong):5} {len(r.missed):6}")
        lines += [f"    wrong:  {w}" for w in r.wrong] + [f"    missed: {m}" for m in r.missed]
    right = sum(r.right for r in results)
    wrong = sum(len(r.wrong) for r in results)
    missed = sum(len(r.missed) for r in results)
    expected = right + missed + sum(1 for r in results for w in r.wrong if "expected" in w)
    lines.append(f"{'total (' + str(expected) + ' columns to map)':36} {right:5} {wrong:5} {missed:6}")
    return "\n".join(lines)

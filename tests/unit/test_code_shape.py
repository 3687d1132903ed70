"""The shape of the server code a newcomer reads (issue 17): no function in gateway/ or shared/ longer than 80
lines. A longer one is split into named steps (see gateway/openapi/document.py, assembled from the routes'
operations, or shared/spreadsheet/preview.py's build_preview)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 80


def long_functions(root: Path, *packages: str) -> list[str]:
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_LINES:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_gateway_or_shared_is_over_80_lines() -> None:
    assert long_functions(REPO, "gateway", "shared") == []


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text(f"def long() -> None:\n{body}\n")
    assert long_functions(tmp_path, "pkg") == [f"pkg/long.py:1 long ({MAX_LINES + 1} lines)"]

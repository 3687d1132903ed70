"""Formula cells with no saved value (a workbook written by a script): read as empty, and reported by both
streaming readers alike (the compiled one and the pure-Python one)."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from shared.spreadsheet import xlsx_fast
from shared.spreadsheet.detect import formula_warning
from shared.spreadsheet.xlsx_stream import XlsxStreamReader


def scripted(path: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["a", "b", "c"])
    sheet.append([1, "=A2*2", "x"])
    sheet.append([2, 3, '=A3&"!"'])
    book.save(path)
    return path


@pytest.mark.parametrize("fast", [True, False])
def test_uncached_formulas_read_as_empty_and_are_reported(tmp_path: Path, fast: bool) -> None:
    if fast and not xlsx_fast.AVAILABLE:
        pytest.skip("the compiled reader is not built")
    path = scripted(tmp_path / "s.xlsx")
    reader = xlsx_fast.XlsxFastReader(path) if fast else XlsxStreamReader(path)
    try:
        assert reader.uncached_formulas() == ([], 0)
        rows = list(reader.rows())
        assert rows == [(1, ["a", "b", "c"]), (2, [1, None, "x"]), (3, [2, 3, None])]
        assert reader.uncached_formulas() == ([(2, 1), (3, 2)], 2)
    finally:
        reader.close()


def test_a_workbook_saved_by_excel_has_values(tmp_path: Path) -> None:
    # openpyxl keeps the cached value it is given when the cell has one: a number cell is no formula.
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["a"])
    sheet.append([5])
    book.save(tmp_path / "plain.xlsx")
    reader = XlsxStreamReader(tmp_path / "plain.xlsx")
    try:
        list(reader.rows())
        assert reader.uncached_formulas() == ([], 0)
    finally:
        reader.close()


def test_the_warning_names_the_cells() -> None:
    assert "2 formula cell(s)" in formula_warning([(2, 1), (3, 2)], 2) and "(B2, C3)" in formula_warning(
        [(2, 1), (3, 2)], 2
    )
    many = formula_warning([(r, 0) for r in range(2, 102)], 250)
    assert "A11 and 240 more" in many

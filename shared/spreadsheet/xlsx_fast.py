"""The compiled streaming reader of a workbook's sheet: the XlsxStreamReader's rows, several times faster.

The sheet part is inflated in chunks by zipfile (zlib) and each chunk handed to a small C scanner
(shared/spreadsheet/_xlsx_fast.c, built by `pip install` with the machine's C compiler) that finds the `<row>`
and `<c>` elements and makes the Python values: str, int, float, bool, and datetime through the same
Python code as the stream reader (date styles, the 1900/1904 systems, `t="d"`), so both readers
give identical rows. The shared strings table is held compactly, one UTF-8 buffer and an offsets
array (about 1x its XML instead of ~5x as Python strings); a `str` is made only when a cell uses it.
It is read lazily, only as far as the sheet has referred to so far, so a header check reads a few
strings and a whole import never holds more than the table. Memory is bounded at any sheet size:
one inflated chunk plus the row being scanned (a row over 64 MB of XML is refused).

When the extension is not built (no compiler at install time), `AVAILABLE` is False and
shared.spreadsheet.readers uses the pure-Python XlsxStreamReader instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shared.spreadsheet.workbook import WorkbookError
from shared.spreadsheet.xlsx_stream import CHUNK, READ_ERRORS, XlsxStreamReader, _iso, _text, read_error

# The sheet is fed in pieces of this many inflated bytes: each call into the scanner holds the GIL
# for ~1 ms (the worker's event loop shares the interpreter), at no measurable cost in speed.
SHEET_CHUNK = 256 * 1024

try:
    from shared.spreadsheet import _xlsx_fast
except ImportError:  # pragma: no cover - the extension was not built
    _xlsx_fast = None  # type: ignore[assignment]

AVAILABLE = _xlsx_fast is not None
if _xlsx_fast is not None:
    _xlsx_fast.set_error_class(WorkbookError)


class XlsxFastReader(XlsxStreamReader):
    name = "xlsx-fast"

    def __init__(self, path: Path, *, sheet: str | None = None, lazy_strings: bool = True) -> None:
        if _xlsx_fast is None:
            raise RuntimeError("the compiled xlsx reader (shared.spreadsheet._xlsx_fast) is not built")
        self._strings_fh: IO[bytes] | None = None
        super().__init__(path, sheet=sheet, lazy_strings=lazy_strings)

    def _load_strings(self, part: str | None, lazy: bool) -> None:
        assert _xlsx_fast is not None
        self._table = _xlsx_fast.SharedStrings()
        self._strings_part = part
        if part is None:
            self._table.finish()
        elif not lazy:
            while self._load_more():
                pass

    def _load_more(self) -> bool:
        """Feed the next chunk of the shared strings XML to the table; False once it is all read."""
        if self._table.done:
            return False
        assert self._strings_part is not None
        if self._strings_fh is None:
            self._strings_fh = self._zf.open(self._strings_part)
        chunk = self._strings_fh.read(CHUNK)
        if chunk:
            self._table.feed(chunk)
            return True
        self._table.finish()
        self._strings_fh.close()
        self._strings_fh = None
        return False

    @property
    def strings_loaded(self) -> int:
        """How many shared strings have been read so far (they are read as the sheet needs them)."""
        return len(self._table)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        assert _xlsx_fast is not None
        dates = bytearray(max(self._dates, default=-1) + 1)
        for style in self._dates:
            dates[style] = 1
        parser = _xlsx_fast.SheetParser(self._table, self._load_more, bytes(dates), self._to_date, _text, _iso)
        self._parser = parser
        try:
            with self._zf.open(self._sheet_part) as fh:
                while chunk := fh.read(SHEET_CHUNK):
                    yield from parser.feed(chunk)
                yield from parser.finish()
        except READ_ERRORS as exc:
            raise read_error(exc) from exc

    def uncached_formulas(self) -> tuple[list[tuple[int, int]], int]:
        parser = getattr(self, "_parser", None)
        return ([], 0) if parser is None else (parser.uncached, parser.uncached_count)

    def close(self) -> None:
        if self._strings_fh is not None:
            self._strings_fh.close()
            self._strings_fh = None
        super().close()

"""A streaming reader of a workbook's first sheet: bounded memory, Transitional or Strict Open XML.

openpyxl's read-only mode streams too, but at ~7,000 rows/s, and it cannot read Strict Open XML at
all. This reader decompresses the sheet part in chunks and scans it with regular expressions (the
scanning runs in C), about five times faster. Only the shared strings table is held whole, as every
xlsx reader does. Cells come out typed as python-calamine gives them: str, int, float, bool or
datetime (for numbers whose style is a date format), so the two readers yield identical rows.
"""

from __future__ import annotations

import codecs
import datetime as dt
import html
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from shared.spreadsheet.workbook import SheetReader, WorkbookError, workbook_layout

CHUNK = 1 << 20
_ROW = re.compile(r"<(?:\w+:)?row\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?row>)", re.S)
_CELL = re.compile(r"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_ATTR = re.compile(r"""([\w:]+)=(?:"([^"]*)"|'([^']*)')""")
_VALUE = re.compile(r"<(?:\w+:)?v(?:\s[^>]*)?>(.*?)</(?:\w+:)?v>", re.S)
_TEXT = re.compile(r"<(?:\w+:)?t(?:\s[^>]*)?>(.*?)</(?:\w+:)?t>", re.S)
_PHONETIC = re.compile(r"<(?:\w+:)?rPh\b.*?</(?:\w+:)?rPh>", re.S)
# The common shape of a cell, attributes in the order Excel and most writers use: one findall per
# row instead of several searches per cell. A row with any other shape takes the general path.
_FAST_CELL = re.compile(
    r'<c r="([A-Z]{1,3})\d+"(?: s="(\d+)")?(?: t="(\w+)")?'
    r'(?:/>|>(?:<f>[^<]*</f>|<f/>)?(?:<v>([^<]*)</v>|<is><t(?: xml:space="preserve")?>([^<]*)</t></is>)?</c>)'
)
# Formula cells without a saved value: the first this many are named in the import's warning.
MAX_UNCACHED = 100
_SAVED_VALUE = re.compile(r"<(?:\w+:)?v>[^<]")
_ATTR_R = re.compile(r"""\br=["']([A-Z]+)\d*["']""")
_ROW_NUMBER = re.compile(r"""\br=["'](\d+)["']""")
_DIMENSION = re.compile(r'<(?:\w+:)?dimension\s+ref="[A-Z]+\d+:?[A-Z]*(\d*)"')
_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_CELL_REF = re.compile(r"([A-Z]+)(\d*)")
_DATE_CODE = re.compile(r"[dmyhs]", re.I)
_CODE_NOISE = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.|_.|\*.')
# Built-in number formats that are dates or times (ECMA-376 18.8.30).
_BUILTIN_DATE_FORMATS = frozenset({14, 15, 16, 17, 18, 19, 20, 21, 22, 45, 46, 47})
_EPOCH_1900 = dt.datetime(1899, 12, 30)
_EPOCH_1904 = dt.datetime(1904, 1, 1)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ooxml_unescape(raw: str) -> str:
    """OOXML's escapes of characters XML cannot carry: `_x000D_` is a carriage return."""
    if "_x" in raw:
        raw = _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw)
    return raw


def _text(raw: str) -> str:
    """A cell's text as it stands in the sheet's XML (inline strings, formula strings)."""
    if raw.startswith("<![CDATA["):
        raw = raw[9:-3] if raw.endswith("]]>") else raw[9:]
    elif "&" in raw:
        raw = html.unescape(raw)
    return _ooxml_unescape(raw)


def _iso(raw: str) -> Any:
    """A `t="d"` cell: an ISO 8601 date and time, else its text."""
    try:
        return dt.datetime.fromisoformat(raw.strip().rstrip("Z"))
    except ValueError:
        return _text(raw)


# What reading a damaged workbook raises, besides WorkbookError: a truncated or corrupt zip member,
# a number or string index that is not one, bytes that are not UTF-8, refused XML.
READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    ValueError,
    IndexError,
    OverflowError,
    SafeET.ParseError,
    DefusedXmlException,
)


def read_error(exc: Exception) -> WorkbookError:
    if isinstance(exc, WorkbookError):
        return exc
    if isinstance(exc, DefusedXmlException):
        return WorkbookError(f"the workbook's XML declares an entity, which is refused ({exc})")
    return WorkbookError(f"the workbook could not be read, it is damaged: {exc}")


def _column_index(letters: str) -> int:
    index = 0
    for char in letters:
        index = index * 26 + ord(char) - 64
    return index - 1


def _is_date_code(code: str) -> bool:
    return bool(_DATE_CODE.search(_CODE_NOISE.sub("", code)))


def _iter_shared_strings(zf: zipfile.ZipFile, part: str) -> Iterator[str]:
    try:
        yield from _parse_shared_strings(zf, part)
    except DefusedXmlException as exc:
        # Entity declarations (billion laughs, external entities) have no place in a workbook.
        raise WorkbookError(f"the shared strings hold XML the service does not read ({type(exc).__name__})") from exc
    except SafeET.ParseError as exc:
        raise WorkbookError(f"the shared strings are not well-formed XML: {exc}") from exc


def _parse_shared_strings(zf: zipfile.ZipFile, part: str) -> Iterator[str]:
    with zf.open(part) as fh:
        for _, element in SafeET.iterparse(fh, events=("end",)):
            if _local(element.tag) != "si":
                continue
            parts = []
            for child in element.iter():
                name = _local(child.tag)
                if name == "rPh":  # phonetic guide: not part of the value
                    for sub in child.iter():
                        sub.text = None
                elif name == "t" and child.text:
                    parts.append(child.text)
            yield _ooxml_unescape("".join(parts)) if parts else ""
            element.clear()


def _shared_strings(zf: zipfile.ZipFile, part: str | None) -> list[str]:
    return [] if part is None else list(_iter_shared_strings(zf, part))


class LazyStrings:
    """The shared strings table read only as far as the highest index asked for: the first rows
    of a sheet mostly use the first strings, so a header check reads a few, not millions."""

    def __init__(self, zf: zipfile.ZipFile, part: str | None) -> None:
        self._source: Iterator[str] = iter(()) if part is None else _iter_shared_strings(zf, part)
        self._loaded: list[str] = []

    def __getitem__(self, index: int) -> str:
        loaded = self._loaded
        while index >= len(loaded):
            try:
                loaded.append(next(self._source))
            except StopIteration:
                raise IndexError(index) from None
        return loaded[index]


def _date_styles(zf: zipfile.ZipFile, part: str | None) -> frozenset[int]:
    """Indexes of cell styles (the `s` attribute) whose number format shows a date."""
    if part is None or part not in zf.namelist():
        return frozenset()
    root = SafeET.fromstring(zf.read(part))
    custom: dict[int, str] = {}
    styles: list[int] = []
    for element in root:
        name = _local(element.tag)
        if name == "numFmts":
            for fmt in element:
                custom[int(fmt.get("numFmtId", "0"))] = fmt.get("formatCode", "")
        elif name == "cellXfs":
            styles = [int(xf.get("numFmtId", "0")) for xf in element if _local(xf.tag) == "xf"]
    dates = set()
    for index, fmt_id in enumerate(styles):
        if fmt_id in custom:
            if _is_date_code(custom[fmt_id]):
                dates.add(index)
        elif fmt_id in _BUILTIN_DATE_FORMATS:
            dates.add(index)
    return frozenset(dates)


class XlsxStreamReader(SheetReader):
    name = "xlsx-stream"

    def __init__(self, path: Path, *, sheet: str | None = None, lazy_strings: bool = False) -> None:
        try:
            self._zf = zipfile.ZipFile(path)
            layout = workbook_layout(self._zf, sheet)
            self.layout = layout
            self.sheet_name = layout.sheet_name
            rels = self._workbook_rels(layout.workbook_part)
            self._epoch = _EPOCH_1904 if layout.date1904 else _EPOCH_1900
            self._dates = _date_styles(self._zf, rels.get("styles"))
            self._load_strings(rels.get("sharedStrings"), lazy_strings)
        except WorkbookError:
            self._zf.close()
            raise
        except (zipfile.BadZipFile, KeyError, SafeET.ParseError, DefusedXmlException, zlib.error, EOFError) as exc:
            self._zf.close()
            raise WorkbookError(f"the workbook could not be read: {exc}") from exc
        self._sheet_part = layout.sheet_part
        self._columns: dict[str, int] = {}
        self.total_estimate = self._estimate(layout.sheet_size)

    def _load_strings(self, part: str | None, lazy: bool) -> None:
        self._strings: list[str] | LazyStrings = (
            LazyStrings(self._zf, part) if lazy else _shared_strings(self._zf, part)
        )

    def _to_date(self, number: int | float) -> Any:
        """A number in a date-formatted cell: Excel's serial date (1900 or 1904 system)."""
        try:
            serial = float(number)
            if self._epoch is _EPOCH_1900 and serial < 60:
                serial += 1  # Excel's phantom 1900-02-29
            return self._epoch + dt.timedelta(milliseconds=round(serial * 86_400_000))
        except (OverflowError, ValueError):
            return number

    def _workbook_rels(self, workbook_part: str) -> dict[str, str]:
        import posixpath

        folder, name = posixpath.split(workbook_part)
        rels_part = posixpath.join(folder, "_rels", name + ".rels")
        found: dict[str, str] = {}
        if rels_part not in self._zf.namelist():
            return found
        for rel in SafeET.fromstring(self._zf.read(rels_part)):
            kind = rel.get("Type", "").rsplit("/", 1)[-1]
            target = rel.get("Target", "")
            path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
            if kind in ("sharedStrings", "styles") and path in self._zf.namelist():
                found[kind] = path
        return found

    def _estimate(self, sheet_size: int) -> int | None:
        """Data rows from the sheet's `<dimension>`, less the header; None when there is none or it
        claims more rows than the sheet's XML could hold (some writers get it wrong)."""
        with self._zf.open(self._sheet_part) as fh:
            head = fh.read(4096).decode("utf-8", "replace")
        match = _DIMENSION.search(head)
        if not match or not match.group(1):
            return None
        rows = int(match.group(1))
        if rows * len('<row r="1"/>') > sheet_size:
            return None
        return max(rows - 1, 0)

    def _cell(self, attrs: str, inner: str | None) -> tuple[int | None, Any]:
        kind = "n"
        style = -1
        column: int | None = None
        for key, double_quoted, single_quoted in _ATTR.findall(attrs):
            value = double_quoted or single_quoted
            if key == "r":
                ref = _CELL_REF.match(value)
                if ref:
                    column = _column_index(ref.group(1))
            elif key == "t":
                kind = value
            elif key == "s":
                style = int(value)
        if not inner:
            return column, None
        if kind == "inlineStr":
            return column, _text("".join(_TEXT.findall(_PHONETIC.sub("", inner))))
        match = _VALUE.search(inner)
        if match is None:
            return column, None
        raw = match.group(1)
        if kind == "s":
            return column, self._strings[int(raw)]
        if kind == "str":
            return column, _text(raw)
        if kind == "b":
            return column, raw.strip() in ("1", "true")
        if kind == "e":
            return column, None
        if kind == "d":
            return column, _iso(raw)
        raw = raw.strip()
        if not raw:
            return column, None
        number: int | float = int(raw) if raw.lstrip("-").isdigit() else float(raw)
        if style in self._dates:
            return column, self._to_date(number)
        return column, number

    def _fast_row(self, inner: str) -> list[Any] | None:
        matches = _FAST_CELL.findall(inner)
        if not matches or len(matches) != inner.count("<c "):
            return None
        cells: list[Any] = []
        columns = self._columns
        strings = self._strings
        for letters, style, kind, raw, inline in matches:
            column = columns.get(letters)
            if column is None:
                column = columns[letters] = _column_index(letters)
            if kind == "s":
                value: Any = strings[int(raw)] if raw else None
            elif kind == "inlineStr":
                value = _text(inline) if ("&" in inline or "_x" in inline) else inline
            elif not raw:
                value = None
            elif kind == "" or kind == "n":
                if style and int(style) in self._dates:
                    return None  # dates: the general path converts them
                raw = raw.strip()
                value = int(raw) if raw.lstrip("-").isdigit() else float(raw)
            else:
                return None
            if column == len(cells):
                cells.append(value)
            elif column > len(cells):
                cells.extend([None] * (column - len(cells)))
                cells.append(value)
            else:
                cells[column] = value
        return cells

    def _row(self, inner: str | None) -> list[Any]:
        if not inner:
            return []
        fast = self._fast_row(inner)
        if fast is not None:
            return fast
        cells: list[Any] = []
        for match in _CELL.finditer(inner):
            column, value = self._cell(match.group(1), match.group(2))
            if column is None:
                column = len(cells)
            if column >= len(cells):
                cells.extend([None] * (column - len(cells)))
                cells.append(value)
            else:
                cells[column] = value
        return cells

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        try:
            yield from self._rows()
        except READ_ERRORS as exc:
            raise read_error(exc) from exc

    def uncached_formulas(self) -> tuple[list[tuple[int, int]], int]:
        return list(getattr(self, "_uncached", ())), getattr(self, "_uncached_count", 0)

    def _note_uncached(self, number: int, inner: str) -> None:
        """The formula cells of a row (its XML holds `<f`) that have no `<v>`."""
        for match in _CELL.finditer(inner):
            body = match.group(2) or ""
            if "<f" in body and "<is>" not in body and not _SAVED_VALUE.search(body):
                self._uncached_count += 1
                if len(self._uncached) < MAX_UNCACHED:
                    ref = _ATTR_R.search(match.group(1))
                    column = _column_index(ref.group(1)) if ref else 0
                    self._uncached.append((number, column))

    def _rows(self) -> Iterator[tuple[int, list[Any]]]:
        self._uncached: list[tuple[int, int]] = []
        self._uncached_count = 0
        decoder = codecs.getincrementaldecoder("utf-8")()
        buffer = ""
        number = 0
        with self._zf.open(self._sheet_part) as fh:
            while True:
                chunk = fh.read(CHUNK)
                buffer += decoder.decode(chunk, final=not chunk)
                end = 0
                for match in _ROW.finditer(buffer):
                    found = _ROW_NUMBER.search(match.group(1))
                    number = int(found.group(1)) if found else number + 1
                    end = match.end()
                    inner = match.group(2)
                    if inner and "<f" in inner:
                        self._note_uncached(number, inner)
                    yield number, self._row(inner)
                buffer = buffer[end:]
                if not chunk:
                    break

    def close(self) -> None:
        self._zf.close()

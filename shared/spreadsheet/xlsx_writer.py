"""A streaming writer of .xlsx workbooks whose cells are all text: constant memory, any number of rows.

The zip is written to a sink that never seeks (zipfile then writes each part's sizes and CRC in a data
descriptor after the part), and every call hands back the bytes produced so far, so a caller can send
them on while the rest is still to come. Rows are written as they are given, deflated on the way;
nothing but zlib's window and the current rows is held.

Cells are inline strings (`t="inlineStr"`), never numbers or formulas, in the exact shape the
service's readers take on their fast path (shared.spreadsheet.xlsx_stream; python-calamine reads them too). A
value is written as it is: no apostrophe is added, since a string cell is never run as a formula.
Cells are formatted as Text, and one starting with a formula trigger (= + - @) also carries
`quotePrefix`, the flag Excel itself sets when someone types '=...: Excel shows the value as it is
and keeps it text even when the cell is edited.

A sheet holds at most 1,048,576 rows (Excel's limit) and under 2 GiB of XML (so no part ever needs
Zip64, which some readers handle poorly in streamed zips); rows beyond either continue on further
sheets, each with the header again. (The import reads the first sheet only.)
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

from shared.spreadsheet.rules import column_letter

EXCEL_MAX_ROWS = 1_048_576
MAX_SHEET_BYTES = zipfile.ZIP64_LIMIT - 4096
# zlib level 3. Measured on 100k typical rows (8.6 MB at level 1): level 3 gives 7.2 MB for about the
# same time, level 6 6.9 MB for ~50% more time in the writer, level 9 6.7 MB for seven times as much.
COMPRESS_LEVEL = 3

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_CT_SHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"

# Cell styles (cellXfs indexes in styles.xml): text; text with quotePrefix; bold text for the header.
_TEXT, _QUOTED, _HEADER = 1, 2, 3
_STYLES = (
    _XML_DECL + f'<styleSheet xmlns="{_MAIN_NS}">'
    '<fonts count="2">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="4">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" quotePrefix="1"/>'
    '<xf numFmtId="49" fontId="1" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" applyFont="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_ROOT_RELS = (
    _XML_DECL + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)

# What the f-string paths cannot write as it is: XML markup characters, characters XML 1.0 cannot
# carry or would change (CR becomes LF when parsed), text that reads as an OOXML escape (_x0041_),
# white space at either end of a value (needs xml:space="preserve"). A row's values are joined with LF
# and checked at once (plain substring tests where they do, regexes that start with a literal); a
# false alarm only sends the row down the careful path.
_BAD_CHARS = re.compile(r"[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]")
_SPACE_AFTER_LF = re.compile(r"\n[ \t\n]")
_TRIGGER_AFTER_LF = re.compile(r"\n[=+\-@]")


def _needs_care(joined: str) -> bool:
    return bool(
        _BAD_CHARS.search(joined)
        or "_x" in joined
        or _SPACE_AFTER_LF.search(joined)
        or " \n" in joined
        or "\t\n" in joined
        or joined[:1] in (" ", "\t", "\n")
        or joined[-1:] in (" ", "\t", "\n")
    )


_UNSAFE_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)")
_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_SHEET_END = b"</sheetData></worksheet>"


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return "_x005F_" if char == "_" else f"_x{ord(char):04X}_"


def escape_text(value: str) -> str:
    """Text as an OOXML string element holds it: markup escaped, characters XML cannot carry (and a
    literal `_xHHHH_`) written as OOXML escapes, which the readers decode back."""
    if "&" in value or "<" in value or ">" in value:
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _UNSAFE_CHARS.sub(_escape_char, value)


class _Sink:
    """Where zipfile writes: collects the bytes until the writer drains them. Not seekable, and no
    tell(), so zipfile streams (data descriptors) and counts positions itself."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class XlsxStreamWriter:
    """Write a workbook of text cells incrementally: `start()` (the header row), `write(rows)` as often
    as needed, `finish()`; each returns the workbook's next bytes (possibly none yet: deflate holds
    back a little). Concatenated, they are the whole file.

    `columns` are the header; `widths` the column widths in characters (None: Excel's default);
    rows are sequences of str, int or None (None leaves the cell empty)."""

    def __init__(
        self,
        columns: Sequence[str],
        *,
        sheet_name: str = "Sheet1",
        widths: Sequence[float] | None = None,
        max_rows_per_sheet: int = EXCEL_MAX_ROWS,
        max_sheet_bytes: int = MAX_SHEET_BYTES,
        compress_level: int = COMPRESS_LEVEL,
    ) -> None:
        if max_rows_per_sheet < 2:
            raise ValueError("a sheet must hold the header and at least one row")
        if len(sheet_name) > 26 or any(c in sheet_name for c in "[]:*?/\\'"):
            raise ValueError(f"not a usable sheet name: {sheet_name!r}")
        self.columns = tuple(columns)
        self.sheet_name = sheet_name
        self.max_rows = max_rows_per_sheet
        self.max_sheet_bytes = max_sheet_bytes
        self._letters = tuple(column_letter(i) for i in range(len(self.columns)))
        self._cols = (
            "<cols>"
            + "".join(f'<col min="{i}" max="{i}" width="{w:g}" customWidth="1"/>' for i, w in enumerate(widths, 1))
            + "</cols>"
            if widths
            else ""
        )
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compress_level)
        self._part: Any = None  # the open worksheet part (a zipfile writer)
        self.sheets = 0
        self._row = 0  # the last row number written on the current sheet
        self._sheet_bytes = 0  # XML written to the current sheet so far
        self.rows_written = 0  # data rows, every sheet
        self._started = False
        self._finished = False

    # -- the public steps ------------------------------------------------------------------------
    def start(self) -> bytes:
        """The package parts that do not depend on the rows, and the first sheet's header."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        self._zip.writestr("_rels/.rels", _ROOT_RELS)
        self._zip.writestr("xl/styles.xml", _STYLES)
        self._open_sheet()
        return self._sink.drain()

    def write(self, rows: Iterable[Sequence[Any]]) -> bytes:
        if not self._started or self._finished:
            raise RuntimeError("write() belongs between start() and finish()")
        out: list[bytes] = []
        for row in rows:
            xml = self._row_xml(self._row + 1, row, _TEXT).encode()
            if self._row >= self.max_rows or self._sheet_bytes + len(xml) > self.max_sheet_bytes:
                self._flush(out)
                self._close_sheet()
                self._open_sheet()
                xml = self._row_xml(self._row + 1, row, _TEXT).encode()
            self._row += 1
            self._sheet_bytes += len(xml)
            out.append(xml)
            self.rows_written += 1
        self._flush(out)
        return self._sink.drain()

    def finish(self) -> bytes:
        """Close the last sheet, write the workbook, its relationships and content types, and the
        zip's central directory."""
        if not self._started:
            self.start()
        if self._finished:
            return b""
        self._finished = True
        self._close_sheet()
        sheets = range(1, self.sheets + 1)
        names = [self.sheet_name if n == 1 else f"{self.sheet_name} ({n})" for n in sheets]
        self._zip.writestr(
            "xl/workbook.xml",
            _XML_DECL + f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
            "<bookViews><workbookView/></bookViews><sheets>"
            + "".join(
                f'<sheet name="{escape_text(name)}" sheetId="{n}" r:id="rId{n}"/>'
                for n, name in zip(sheets, names, strict=True)
            )
            + "</sheets></workbook>",
        )
        self._zip.writestr(
            "xl/_rels/workbook.xml.rels",
            _XML_DECL
            + f'<Relationships xmlns="{_PKG_REL_NS}">'
            + "".join(
                f'<Relationship Id="rId{n}" Type="{_REL_NS}/worksheet" Target="worksheets/sheet{n}.xml"/>'
                for n in sheets
            )
            + f'<Relationship Id="rId{self.sheets + 1}" Type="{_REL_NS}/styles" Target="styles.xml"/>'
            "</Relationships>",
        )
        self._zip.writestr(
            "[Content_Types].xml",
            _XML_DECL + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            + "".join(f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{_CT_SHEET}"/>' for n in sheets)
            + "</Types>",
        )
        self._zip.close()
        return self._sink.drain()

    # -- the parts -------------------------------------------------------------------------------
    def _open_sheet(self) -> None:
        self.sheets += 1
        self._part = self._zip.open(f"xl/worksheets/sheet{self.sheets}.xml", "w")
        head = (
            _XML_DECL + f'<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
            '<sheetViews><sheetView workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
            "</sheetView></sheetViews>"
            '<sheetFormatPr defaultRowHeight="15"/>' + self._cols + "<sheetData>"
        )
        first = (head + self._row_xml(1, self.columns, _HEADER)).encode()
        self._row = 1
        self._sheet_bytes = len(first) + len(_SHEET_END)
        self._part.write(first)

    def _close_sheet(self) -> None:
        self._part.write(_SHEET_END)
        self._part.close()
        self._part = None

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self._part.write(b"".join(out))
            out.clear()

    def _row_xml(self, number: int, row: Sequence[Any], style: int) -> str:
        values = [v if v is None or type(v) is str else str(v) for v in row]
        letters = self._letters
        joined = "\n".join([v for v in values if v])
        if not _needs_care(joined):
            if style != _TEXT or not (joined[:1] in ("=", "+", "-", "@") or _TRIGGER_AFTER_LF.search(joined)):
                cells = "".join(
                    f'<c r="{letters[i]}{number}" s="{style}" t="inlineStr"><is><t>{v}</t></is></c>'
                    for i, v in enumerate(values)
                    if v
                )
            else:  # a phone like +44 ...: common enough for a path of its own
                cells = "".join(
                    f'<c r="{letters[i]}{number}" s="{_QUOTED if v[0] in "=+-@" else _TEXT}" t="inlineStr">'
                    f"<is><t>{v}</t></is></c>"
                    for i, v in enumerate(values)
                    if v
                )
            return f'<row r="{number}">{cells}</row>'
        parts = []
        for i, value in enumerate(values):
            if not value:
                continue
            s = _QUOTED if style == _TEXT and value.startswith(_TRIGGERS) else style
            space = ' xml:space="preserve"' if value[:1].isspace() or value[-1:].isspace() else ""
            parts.append(
                f'<c r="{letters[i]}{number}" s="{s}" t="inlineStr"><is><t{space}>{escape_text(value)}</t></is></c>'
            )
        return f'<row r="{number}">' + "".join(parts) + "</row>"

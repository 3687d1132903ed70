"""Spreadsheet containers: checking an upload before it is queued, and reading its rows.

Readers yield `(row_number, cells)` where `row_number` is the row as Excel (or a text editor, for
CSV records) shows it. Three readers:

* `csv`: the csv module, streaming.
* `calamine`: python-calamine loads the whole sheet (fast, reads Strict Open XML); used when the
  sheet's inflated size, known from the zip directory before parsing, fits the memory budget.
* `xlsx-stream` (shared.xlsx_stream): streams the sheet with bounded memory; used for larger sheets.
* `openpyxl`: read-only mode; kept as the reference the other readers are tested against.
"""

from __future__ import annotations

import codecs
import csv
import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defusedxml import ElementTree as SafeET

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
# Resident memory per inflated byte of XML, measured on 1M-row workbooks (tests/bench): calamine
# holds the whole sheet (1.6x the sheet plus shared strings, 2.0 with margin); the streaming reader
# holds only the shared strings table, as Python strings (4.9x its XML, 5.5 with margin).
CALAMINE_BYTES_PER_XML_BYTE = 2.0
STREAM_BYTES_PER_SHARED_STRINGS_BYTE = 5.5
_OFFICE_DOC_REL = "/officeDocument"


class UploadRejected(Exception):
    """The upload is not something we can import; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


class WorkbookError(Exception):
    """The workbook could not be read; the message is meant for the person who uploaded it."""


@dataclass(frozen=True)
class WorkbookLayout:
    workbook_part: str
    sheet_part: str
    sheet_name: str
    sheet_size: int
    shared_strings_size: int
    strict: bool


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _rels_path(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


def _resolve(base_part: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_part), target))


def _read_rels(zf: zipfile.ZipFile, rels_part: str) -> list[tuple[str, str, str]]:
    try:
        root = SafeET.fromstring(zf.read(rels_part))
    except KeyError:
        return []
    return [
        (el.get("Id", ""), el.get("Type", ""), el.get("Target", "")) for el in root if _local(el.tag) == "Relationship"
    ]


def workbook_layout(zf: zipfile.ZipFile) -> WorkbookLayout:
    """Find the first worksheet through the package relationships (Transitional or Strict)."""
    names = set(zf.namelist())
    if "[Content_Types].xml" not in names:
        raise WorkbookError("the file is a zip archive but not an Excel workbook ([Content_Types].xml missing)")
    workbook_part = next(
        (_resolve("", target) for _, kind, target in _read_rels(zf, "_rels/.rels") if kind.endswith(_OFFICE_DOC_REL)),
        "xl/workbook.xml",
    )
    if workbook_part not in names:
        raise WorkbookError("the file is a zip archive but holds no workbook part (xl/workbook.xml)")
    root = SafeET.fromstring(zf.read(workbook_part))
    strict = root.get("conformance") == "strict" or "purl.oclc.org" in root.tag
    sheets = [el for el in root.iter() if _local(el.tag) == "sheet"]
    if not sheets:
        raise WorkbookError("the workbook has no worksheets")
    first = sheets[0]
    rel_id = next((v for k, v in first.attrib.items() if _local(k) == "id"), None)
    rels = {rid: (kind, target) for rid, kind, target in _read_rels(zf, _rels_path(workbook_part))}
    if rel_id not in rels:
        raise WorkbookError(f"the workbook's first sheet {first.get('name')!r} has no worksheet part")
    sheet_part = _resolve(workbook_part, rels[rel_id][1])
    if sheet_part not in names:
        raise WorkbookError(
            f"the workbook lists sheet {first.get('name')!r} but its worksheet part ({sheet_part}) is missing"
        )
    shared = next((_resolve(workbook_part, t) for k, t in rels.values() if k.endswith("/sharedStrings")), None)
    return WorkbookLayout(
        workbook_part=workbook_part,
        sheet_part=sheet_part,
        sheet_name=first.get("name", ""),
        sheet_size=zf.getinfo(sheet_part).file_size,
        shared_strings_size=zf.getinfo(shared).file_size if shared and shared in names else 0,
        strict=strict,
    )


def inspect_upload(path: Path, filename: str, *, max_inflated_bytes: int, max_ratio: int) -> str:
    """Check a stored upload before anything is queued. Returns the kind, "xlsx" or "csv"."""
    size = path.stat().st_size
    if size == 0:
        raise UploadRejected(400, "Empty file", "The uploaded file is empty.")
    with path.open("rb") as fh:
        head = fh.read(65536)
    suffix = Path(filename).suffix.lower()
    if head.startswith(OLE_MAGIC):
        raise UploadRejected(
            415,
            "Unsupported workbook",
            f"{filename!r} is a password-protected workbook or a legacy .xls file. "
            "Remove the password and save it as .xlsx (Excel Workbook) or .csv.",
        )
    if head.startswith(ZIP_MAGIC) or suffix in (".xlsx", ".xlsm"):
        _check_zip(path, filename, max_inflated_bytes, max_ratio)
        return "xlsx"
    if suffix in (".csv", ".txt") or suffix == "":
        _check_text(head, filename, size)
        return "csv"
    raise UploadRejected(
        415,
        "Unsupported file type",
        f"{filename!r} is not a supported file: upload an Excel workbook (.xlsx) or a UTF-8 .csv file.",
    )


def _check_zip(path: Path, filename: str, max_inflated: int, max_ratio: int) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > max_inflated:
                raise UploadRejected(
                    413,
                    "Workbook too large",
                    f"{filename!r} would inflate to {total // (1024 * 1024)} MB, over the limit of "
                    f"{max_inflated // (1024 * 1024)} MB.",
                )
            for info in infos:
                # Small parts compress extremely well legitimately; a bomb is large and dense.
                if info.file_size > 1024 * 1024 and info.file_size > max_ratio * max(info.compress_size, 1):
                    raise UploadRejected(
                        422,
                        "Suspicious workbook",
                        f"{filename!r}: part {info.filename} has a compression ratio over {max_ratio}:1.",
                    )
            workbook_layout(zf)
    except zipfile.BadZipFile:
        raise UploadRejected(
            422, "Not a workbook", f"{filename!r} is not a valid .xlsx file (the zip container is damaged)."
        ) from None
    except WorkbookError as exc:
        raise UploadRejected(422, "Not a workbook", f"{filename!r}: {exc}.") from None
    except SafeET.ParseError as exc:
        raise UploadRejected(422, "Not a workbook", f"{filename!r}: the workbook XML is malformed ({exc}).") from None
    except Exception as exc:
        if isinstance(exc, UploadRejected):
            raise
        raise UploadRejected(422, "Not a workbook", f"{filename!r} could not be opened as a workbook: {exc}.") from None


def _check_text(head: bytes, filename: str, size: int) -> None:
    if b"\x00" in head:
        raise UploadRejected(
            415, "Unsupported file type", f"{filename!r} is binary, not a CSV text file or an .xlsx workbook."
        )
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        text = decoder.decode(head, final=len(head) == size)
    except UnicodeDecodeError as exc:
        raise UploadRejected(
            422,
            "Not UTF-8",
            f"{filename!r} is not UTF-8 text (bad byte at offset {exc.start}). Save it as 'CSV UTF-8'.",
        ) from None
    if not text.strip():
        raise UploadRejected(400, "Empty file", f"{filename!r} holds no rows.")


# -- reading rows --------------------------------------------------------------------------------


class SheetReader:
    """Iterates `(row_number, cells)`; `total_estimate` is a row count for progress, maybe None."""

    name = "base"
    total_estimate: int | None = None

    def rows(self) -> Iterator[tuple[int, list[Any]]]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvReader(SheetReader):
    name = "csv"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: io.TextIOWrapper | None = None
        # ~100 bytes a row is typical; progress only.
        self.total_estimate = max(path.stat().st_size // 100, 1)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        self._fh = self.path.open("r", encoding="utf-8-sig", newline="", errors="strict")
        fh = self._fh
        first = fh.readline()
        fh.seek(0)
        reader = csv.reader(fh, delimiter=_sniff_delimiter(first))
        number = 0
        try:
            for number, record in enumerate(reader, 1):
                yield number, record
        except UnicodeDecodeError as exc:
            raise WorkbookError(f"the CSV is not UTF-8 (bad byte after row {number}): save it as 'CSV UTF-8'") from exc
        except csv.Error as exc:
            raise WorkbookError(f"the CSV is malformed near row {number + 1}: {exc}") from exc

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


class CalamineReader(SheetReader):
    name = "calamine"

    def __init__(self, path: Path) -> None:
        import python_calamine

        try:
            self._wb = python_calamine.CalamineWorkbook.from_path(str(path))
            self._sheet = self._wb.get_sheet_by_index(0)
        except Exception as exc:
            raise WorkbookError(f"the workbook could not be read: {exc}") from exc
        self.total_estimate = self._sheet.height

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        start = self._sheet.start
        if start is None:
            return
        first_row = start[0] + 1
        for offset, cells in enumerate(self._sheet.iter_rows()):
            yield first_row + offset, cells

    def close(self) -> None:
        self._wb.close()


class OpenpyxlReader(SheetReader):
    name = "openpyxl"

    def __init__(self, path: Path) -> None:
        import openpyxl

        try:
            self._wb = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
        except Exception as exc:
            raise WorkbookError(f"the workbook could not be read: {exc}") from exc
        if not self._wb.worksheets:
            self._wb.close()
            raise WorkbookError("no worksheet could be read from the workbook")
        self._ws = self._wb.worksheets[0]
        declared = self._ws.max_row
        self.total_estimate = declared if isinstance(declared, int) else None
        # The <dimension> tag may be wrong; iterating must not stop at it.
        self._ws.reset_dimensions()

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        for number, cells in enumerate(self._ws.iter_rows(values_only=True), 1):
            # openpyxl leaves OOXML escapes such as _x000D_ in strings; calamine decodes them.
            yield number, [_unescape(c) if isinstance(c, str) and "_x" in c else c for c in cells]

    def close(self) -> None:
        self._wb.close()


_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape(text: str) -> str:
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def open_reader(path: Path, kind: str, memory_budget_bytes: int) -> SheetReader:
    """Pick the reader: CSV streams; a workbook whose sheet fits the budget is loaded whole by
    python-calamine (fastest); a larger one is streamed by XlsxStreamReader in bounded memory."""
    if kind == "csv":
        return CsvReader(path)
    try:
        with zipfile.ZipFile(path) as zf:
            layout = workbook_layout(zf)
    except zipfile.BadZipFile as exc:
        raise WorkbookError("the file is not a valid .xlsx workbook") from exc
    estimate = CALAMINE_BYTES_PER_XML_BYTE * (layout.sheet_size + layout.shared_strings_size)
    if estimate <= memory_budget_bytes:
        return CalamineReader(path)
    if STREAM_BYTES_PER_SHARED_STRINGS_BYTE * layout.shared_strings_size > memory_budget_bytes:
        raise WorkbookError(
            f"the workbook's shared strings table ({layout.shared_strings_size // (1024 * 1024)} MB of XML) "
            "does not fit the worker's memory budget (READER_MEMORY_BUDGET_MB); save it as CSV, or raise the budget"
        )
    from shared.xlsx_stream import XlsxStreamReader

    return XlsxStreamReader(path)

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

from shared.spreadsheet import HeaderError, map_header, row_is_empty

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
# Resident memory per inflated byte of XML, measured on 1M-row workbooks (tests/bench): calamine
# holds the whole sheet (1.6x the sheet plus shared strings, 2.0 with margin); the streaming reader
# holds only the shared strings table, as Python strings (4.9x its XML, 5.5 with margin).
CALAMINE_BYTES_PER_XML_BYTE = 2.0
STREAM_BYTES_PER_SHARED_STRINGS_BYTE = 5.5
_OFFICE_DOC_REL = "/officeDocument"


class UploadRejected(Exception):
    """The upload is not something we can import; `status` is the HTTP status to answer with and
    `extra` more members of the problem document (the missing columns, say)."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


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


# Signatures of files people upload by mistake: named in the answer rather than parsed as text.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"{\\rtf", "an RTF document"),
)
SUPPORTED = "upload an Excel workbook (.xlsx) or a .csv file"


def inspect_upload(path: Path, filename: str, *, max_inflated_bytes: int, max_ratio: int) -> str:
    """Check a stored upload before anything is queued. Returns the kind, "xlsx" or "csv", recognised
    by the content (a CSV saved under an .xlsx name is a CSV, and the other way round)."""
    size = path.stat().st_size
    if size == 0:
        raise UploadRejected(400, "Empty file", "The uploaded file is empty.")
    with path.open("rb") as fh:
        head = fh.read(65536)
    if head.startswith(OLE_MAGIC):
        raise UploadRejected(
            415,
            "Unsupported workbook",
            f"{filename!r} is a password-protected workbook or a legacy .xls file. "
            "Remove the password and save it as .xlsx (Excel Workbook) or .csv.",
        )
    if head.startswith(ZIP_MAGIC) or head.startswith(b"PK\x05\x06"):
        _check_zip(path, filename, max_inflated_bytes, max_ratio)
        return "xlsx"
    for magic, what in _BINARY_SIGNATURES:
        if head.startswith(magic):
            raise UploadRejected(
                415, "Unsupported file type", f"{filename!r} is {what}, not a supported file: {SUPPORTED}."
            )
    _check_text(head, filename, size)
    return "csv"


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
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UploadRejected(
            415,
            "Unsupported file type",
            f"{filename!r} is binary, not a CSV text file or an .xlsx workbook: {SUPPORTED}.",
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


HEAD_ROWS = 100


def read_head(path: Path, kind: str, rows: int = HEAD_ROWS) -> list[tuple[int, list[Any]]]:
    """The first `rows` rows of the sheet, reading no more of the file than they need: a CSV as
    far as those records go, a workbook's sheet streamed, with only the shared strings those rows
    use (never the whole sheet, never the whole strings table, however large the file)."""
    if kind == "csv":
        reader: SheetReader = CsvReader(path)
    else:
        from shared.xlsx_stream import XlsxStreamReader

        reader = XlsxStreamReader(path, lazy_strings=True)
    head: list[tuple[int, list[Any]]] = []
    try:
        for item in reader.rows():
            head.append(item)
            if len(head) >= rows:
                break
    finally:
        reader.close()
    return head


def check_header(path: Path, filename: str, kind: str) -> list[str]:
    """Find the header row in the first rows and check it names every required column; returns the
    warnings it gives. Raises UploadRejected (422) naming the missing columns and quoting the
    header found: the problem document carries both."""
    try:
        head = read_head(path, kind)
    except WorkbookError as exc:
        raise UploadRejected(422, "Unreadable file", f"{filename!r}: {exc}.") from None
    header = next((cells for _, cells in head if not row_is_empty(cells)), None)
    if header is None:
        if not head:
            what = "sheet is empty" if kind == "xlsx" else "file holds no rows"
            raise UploadRejected(422, "No header row", f"{filename!r}: the {what}: there is no header row and no data.")
        return []  # blank rows only, so far: the worker looks further
    try:
        return map_header(header).warnings
    except HeaderError as exc:
        raise UploadRejected(
            422, "Missing columns", f"{filename!r}: {exc}.", missing_columns=exc.missing, header=exc.found
        ) from None


# -- reading rows --------------------------------------------------------------------------------


class SheetReader:
    """Iterates `(row_number, cells)`; `total_estimate` is the number of data rows (the header not
    counted) for progress, or None when it cannot be told honestly."""

    name = "base"
    total_estimate: int | None = None
    # Whether a row with more or fewer values than the header is broken (CSV) or normal (a sheet).
    strict_width = False

    def rows(self) -> Iterator[tuple[int, list[Any]]]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvReader(SheetReader):
    """CSV records as rows (row N is the Nth record, as a spreadsheet program shows the file).

    `strict_width`: a record whose number of values differs from the header's is a broken row (a
    value with an unquoted separator, a lost one), reported as such rather than as a missing email.
    An opening quote never closed would swallow the rest of the file into one value: that is an
    error naming the row where the quote starts.
    """

    name = "csv"
    strict_width = True
    SAMPLE = 256 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: io.TextIOWrapper | None = None
        self.total_estimate = self._estimate()

    def _open(self) -> io.TextIOWrapper:
        return self.path.open("r", encoding="utf-8-sig", newline="", errors="strict")

    def _estimate(self) -> int | None:
        """Data records, counted in the first 256 KB and scaled to the file's size: exact for a small
        file, within a few percent for a large one whose rows are alike."""
        size = self.path.stat().st_size
        try:
            with self.path.open("rb") as fh:
                sample = fh.read(self.SAMPLE)
            if len(sample) < size:
                sample = sample[: sample.rfind(b"\n") + 1]
            text = sample.decode("utf-8-sig", errors="replace")
            records = sum(1 for record in csv.reader(io.StringIO(text, newline="")) if any(v.strip() for v in record))
        except csv.Error:
            return None
        if not sample or not records:
            return None
        if len(sample) >= size:
            return max(records - 1, 0)
        return max(round(records * size / len(sample)) - 1, 0)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        self._fh = fh = self._open()
        first = fh.readline()
        fh.seek(0)
        delimiter = _sniff_delimiter(first)
        reader = csv.reader(fh, delimiter=delimiter)
        number = 0
        lines = 0  # physical lines read before the current record
        record_start = 1
        pending: list[str] | None = None  # one record behind: the last is checked before it is given
        try:
            for number, record in enumerate(reader, 1):
                if pending is not None:
                    yield number - 1, pending
                pending = record
                record_start, lines = lines + 1, reader.line_num
        except UnicodeDecodeError as exc:
            raise WorkbookError(f"the CSV is not UTF-8 (bad byte after row {number}): save it as 'CSV UTF-8'") from exc
        except csv.Error as exc:
            raise WorkbookError(f"the CSV is malformed near row {number + 1}: {exc}") from exc
        if pending is None:
            return
        if lines > record_start and self._unclosed_quote(record_start, delimiter):
            raise WorkbookError(
                f"unclosed quote starting at row {number} (line {record_start}): the rest of the file, "
                f"{lines - record_start + 1} lines, would be one value. Close the quote or remove it"
            )
        yield number, pending

    def _unclosed_quote(self, start_line: int, delimiter: str) -> bool:
        """Whether the last record, which spans several lines, ends inside a quoted value: the csv
        module takes the end of the file as the end of the quote and says nothing."""
        with self._open() as fh:
            for _ in range(start_line - 1):
                fh.readline()
            try:
                for _ in csv.reader(fh, delimiter=delimiter, strict=True):
                    pass
            except csv.Error:
                return True
        return False

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
        # Rows from the first used one to the last, less the header: blank rows are counted too.
        self.total_estimate = max(self._sheet.height - 1, 0)

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

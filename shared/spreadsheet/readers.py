"""Spreadsheet containers: checking an upload before it is queued, and reading its rows.

Readers yield `(row_number, cells)` where `row_number` is the row as Excel (or a text editor, for
CSV records) shows it. The readers:

* `csv`: the csv module, streaming.
* `xlsx-fast` (shared.spreadsheet.xlsx_fast): a compiled scanner streams the sheet with bounded memory and a
  compact shared strings table; 2-3x python-calamine's speed at a fraction of its memory, so it reads
  every workbook when the extension is built (the normal case: `pip install` builds it).
* `calamine`: python-calamine loads the whole sheet (reads Strict Open XML); without the extension,
  used when the sheet's inflated size, known from the zip directory before parsing, fits the budget.
* `xlsx-stream` (shared.spreadsheet.xlsx_stream): the pure-Python streaming reader; without the extension, used
  for larger sheets and for the head of a sheet (read_head).
* `openpyxl`: read-only mode; kept as the reference the other readers are tested against.
"""

from __future__ import annotations

import codecs
import csv
import enum
import io
import itertools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from defusedxml import ElementTree as SafeET

from shared.spreadsheet import detect, xlsx_fast
from shared.spreadsheet.workbook import SheetEntry as SheetEntry
from shared.spreadsheet.workbook import SheetNotFound as SheetNotFound
from shared.spreadsheet.workbook import SheetReader as SheetReader
from shared.spreadsheet.workbook import WorkbookError as WorkbookError
from shared.spreadsheet.workbook import WorkbookLayout as WorkbookLayout
from shared.spreadsheet.workbook import pick_sheet as pick_sheet
from shared.spreadsheet.workbook import workbook_layout as workbook_layout
from shared.spreadsheet.xlsx_stream import XlsxStreamReader

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
# Resident memory per inflated byte of XML, measured on 1M-row workbooks (tests/bench): calamine
# holds the whole sheet (1.6x the sheet plus shared strings, 2.0 with margin); the Python stream
# reader holds only the shared strings table, as Python strings (4.9x its XML, 5.5 with margin); the
# compiled one holds it as one UTF-8 buffer and offsets (FAST_BYTES_PER_SHARED_STRINGS_BYTE).
CALAMINE_BYTES_PER_XML_BYTE = 2.0
STREAM_BYTES_PER_SHARED_STRINGS_BYTE = 5.5
FAST_BYTES_PER_SHARED_STRINGS_BYTE = 1.0


class Rejection(enum.Enum):
    """Why an upload is refused (the gateway answers each with its HTTP status)."""

    EMPTY = "empty"  # nothing to read
    TOO_LARGE = "too large"  # over a size or row limit
    UNSUPPORTED = "unsupported"  # not a kind of file we read
    UNPROCESSABLE = "unprocessable"  # the right kind, but its content does not fit


class UploadRejected(Exception):
    """The upload is not something we can import: why (`reason`), a title and detail for the
    answer, and `extra` more members of the problem document (the missing columns, say)."""

    def __init__(self, reason: Rejection, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.reason = reason
        self.title = title
        self.detail = detail
        self.extra = extra


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
        raise UploadRejected(Rejection.EMPTY, "Empty file", "The uploaded file is empty.")
    with path.open("rb") as fh:
        head = fh.read(65536)
    if head.startswith(OLE_MAGIC):
        raise UploadRejected(
            Rejection.UNSUPPORTED,
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
                Rejection.UNSUPPORTED,
                "Unsupported file type",
                f"{filename!r} is {what}, not a supported file: {SUPPORTED}.",
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
                    Rejection.TOO_LARGE,
                    "Workbook too large",
                    f"{filename!r} would inflate to {total // (1024 * 1024)} MB, over the limit of "
                    f"{max_inflated // (1024 * 1024)} MB.",
                )
            for info in infos:
                # Small parts compress extremely well legitimately; a bomb is large and dense.
                if info.file_size > 1024 * 1024 and info.file_size > max_ratio * max(info.compress_size, 1):
                    raise UploadRejected(
                        Rejection.UNPROCESSABLE,
                        "Suspicious workbook",
                        f"{filename!r}: part {info.filename} has a compression ratio over {max_ratio}:1.",
                    )
            workbook_layout(zf)
    except zipfile.BadZipFile:
        raise UploadRejected(
            Rejection.UNPROCESSABLE,
            "Not a workbook",
            f"{filename!r} is not a valid .xlsx file (the zip container is damaged).",
        ) from None
    except WorkbookError as exc:
        raise UploadRejected(Rejection.UNPROCESSABLE, "Not a workbook", f"{filename!r}: {exc}.") from None
    except SafeET.ParseError as exc:
        raise UploadRejected(
            Rejection.UNPROCESSABLE, "Not a workbook", f"{filename!r}: the workbook XML is malformed ({exc})."
        ) from None
    except Exception as exc:
        if isinstance(exc, UploadRejected):
            raise
        raise UploadRejected(
            Rejection.UNPROCESSABLE, "Not a workbook", f"{filename!r} could not be opened as a workbook: {exc}."
        ) from None


def _check_text(head: bytes, filename: str, size: int) -> None:
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UploadRejected(
            Rejection.UNSUPPORTED,
            "Unsupported file type",
            f"{filename!r} is binary, not a CSV text file or an .xlsx workbook: {SUPPORTED}.",
        )
    if not head.strip().strip(codecs.BOM_UTF8):
        raise UploadRejected(Rejection.EMPTY, "Empty file", f"{filename!r} holds no rows.")


# Languages whose text is not in the Latin script: for these the detector's encoding is taken. For
# anything else Excel's "CSV" on Western Windows, cp1252, is preferred whenever it decodes the bytes:
# on short Western samples detectors often name a near cousin (cp775, cp1250) that turns € into Ć.
_NON_LATIN = frozenset(
    {
        "Russian",
        "Ukrainian",
        "Bulgarian",
        "Belarusian",
        "Serbian",
        "Macedonian",
        "Kazakh",
        "Greek",
        "Arabic",
        "Farsi",
        "Hebrew",
        "Hindi",
        "Thai",
        "Japanese",
        "Chinese",
        "Korean",
    }
)


def detect_encoding(head: bytes) -> str:
    """The encoding of a CSV from its first bytes: a BOM (UTF-8, UTF-16), else UTF-8 when the bytes
    are valid UTF-8, else what charset-normalizer finds (cp1252 for Western text)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    if best is not None and best.language in _NON_LATIN:
        return str(best.encoding)
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return str(best.encoding) if best is not None else "latin-1"


HEAD_ROWS = 100


def read_head(
    path: Path, kind: str, rows: int = HEAD_ROWS, *, sheet: str | None = None, encoding: str | None = None
) -> tuple[SheetReader, list[tuple[int, list[Any]]]]:
    """The first `rows` rows of the sheet, reading no more of the file than they need: a CSV as
    far as those records go, a workbook's sheet streamed, with only the shared strings those rows
    use (never the whole sheet, never the whole strings table, however large the file). Returns the
    (closed) reader too: it knows the sheets, the encoding and the estimate."""
    if kind == "xlsx" and sheet is None:
        sheet = best_sheet(path)
    if kind == "csv":
        reader: SheetReader = CsvReader(path, encoding)
    elif xlsx_fast.AVAILABLE:
        reader = xlsx_fast.XlsxFastReader(path, sheet=sheet, lazy_strings=True)
    else:
        reader = XlsxStreamReader(path, sheet=sheet, lazy_strings=True)
    head: list[tuple[int, list[Any]]] = []
    try:
        for item in reader.rows():
            head.append(item)
            if len(head) >= rows:
                break
    finally:
        reader.close()
    return reader, head


# A workbook's sheets looked at when no sheet is given, and the rows of each (a header below a title
# block and the first rows of data).
SHEETS_SCANNED = 20
SHEET_ROWS = 40


def best_sheet(path: Path) -> str | None:
    """The visible sheet whose first rows fit a customer table best (shared.spreadsheet.detect.sheet_fit):
    a workbook whose first sheet is a "Read me" imports from its "Customers" sheet. None when the workbook
    has one visible sheet, or none fits (the first visible sheet is read, as pick_sheet says). The preview
    and the worker both come here, so both read the same sheet."""
    try:
        with zipfile.ZipFile(path) as zf:
            visible = [entry for entry in workbook_layout(zf).sheets if not entry.hidden]
    except (zipfile.BadZipFile, WorkbookError):
        return None  # the reader says what is wrong with it
    if len(visible) <= 1:
        return None
    best, best_fit = None, 0.0
    for entry in visible[:SHEETS_SCANNED]:
        reader: SheetReader
        if xlsx_fast.AVAILABLE:
            reader = xlsx_fast.XlsxFastReader(path, sheet=entry.name, lazy_strings=True)
        else:
            reader = XlsxStreamReader(path, sheet=entry.name, lazy_strings=True)
        try:
            head = list(itertools.islice(reader.rows(), SHEET_ROWS))
        except WorkbookError:
            continue
        finally:
            reader.close()
        fit = detect.sheet_fit(head)
        if fit > best_fit:
            best, best_fit = entry.name, fit
    return best


# -- reading rows --------------------------------------------------------------------------------


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


# Excel's limit (column XFD): a record wider than this is no customer list, and costs the preview
# and the worker time in proportion to its width.
MAX_COLUMNS = 16_384


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

    def __init__(self, path: Path, encoding: str | None = None) -> None:
        self.path = path
        self._fh: io.TextIOWrapper | None = None
        if encoding is None:
            with path.open("rb") as fh:
                encoding = detect_encoding(fh.read(self.SAMPLE))
        self.encoding = encoding
        # A BOM is no value, whoever said UTF-8.
        self._codec: str = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
        self.total_estimate = self._estimate()

    def _open(self) -> io.TextIOWrapper:
        return self.path.open("r", encoding=self._codec, newline="", errors="strict")

    def _estimate(self) -> int | None:
        """Data records, counted in the first 256 KB and scaled to the file's size: exact for a small
        file, within a few percent for a large one whose rows are alike."""
        size = self.path.stat().st_size
        try:
            with self.path.open("rb") as fh:
                sample = fh.read(self.SAMPLE)
            if len(sample) < size:
                sample = sample[: sample.rfind(b"\n") + 1]
            text = sample.decode(self._codec, errors="replace")
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
        try:
            first = fh.readline()
        except UnicodeDecodeError as exc:
            raise self._undecodable(self._bad_line()) from exc
        fh.seek(0)
        delimiter = _sniff_delimiter(first)
        reader = csv.reader(fh, delimiter=delimiter)
        number = 0
        lines = 0  # physical lines read before the current record
        record_start = 1
        pending: list[str] | None = None  # one record behind: the last is checked before it is given
        try:
            for number, record in enumerate(reader, 1):
                if len(record) > MAX_COLUMNS:
                    raise WorkbookError(
                        f"row {number} has {len(record):,} values, more than the {MAX_COLUMNS:,} columns a "
                        "spreadsheet holds: is this a CSV of customers?"
                    )
                if pending is not None:
                    yield number - 1, pending
                pending = record
                record_start, lines = lines + 1, reader.line_num
        except UnicodeDecodeError as exc:
            raise self._undecodable(number + 1 + max(self._bad_line() - lines - 1, 0)) from exc
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

    def _bad_line(self) -> int:
        """The first line that does not decode (the text layer reads ahead, so the csv reader is
        some rows short of it when the error surfaces)."""
        decoder = codecs.getincrementaldecoder(self._codec)()
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError:
                    return number
        return 0

    def _undecodable(self, row: int) -> WorkbookError:
        return WorkbookError(
            f"row {row} holds bytes that are not valid {self.encoding} text: give the file's encoding"
            " (encoding=cp1252, latin-1, utf-16, ...) or save it as 'CSV UTF-8'"
        )

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

    def __init__(self, path: Path, sheet_name: str | None = None) -> None:
        import python_calamine

        try:
            self._wb = python_calamine.CalamineWorkbook.from_path(str(path))
            if sheet_name is None:
                self._sheet = self._wb.get_sheet_by_index(0)
            else:
                self._sheet = self._wb.get_sheet_by_name(sheet_name)
        except Exception as exc:
            raise WorkbookError(f"the workbook could not be read: {exc}") from exc
        self.sheet_name = self._sheet.name
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


def open_reader(
    path: Path, kind: str, memory_budget_bytes: int, *, sheet: str | None = None, encoding: str | None = None
) -> SheetReader:
    """Pick the reader: CSV streams; a workbook is streamed by the compiled XlsxFastReader (bounded
    memory: its shared strings table, compact, plus a chunk). Without the extension, a sheet that fits
    the budget is loaded whole by python-calamine, a larger one streamed by XlsxStreamReader."""
    if kind == "csv":
        return CsvReader(path, encoding)
    if sheet is None:
        sheet = best_sheet(path)
    try:
        with zipfile.ZipFile(path) as zf:
            layout = workbook_layout(zf, sheet)
    except zipfile.BadZipFile as exc:
        raise WorkbookError("the file is not a valid .xlsx workbook") from exc
    if xlsx_fast.AVAILABLE:
        if FAST_BYTES_PER_SHARED_STRINGS_BYTE * layout.shared_strings_size > memory_budget_bytes:
            raise _strings_over_budget(layout)
        return xlsx_fast.XlsxFastReader(path, sheet=sheet)
    estimate = CALAMINE_BYTES_PER_XML_BYTE * (layout.sheet_size + layout.shared_strings_size)
    if estimate <= memory_budget_bytes:
        return CalamineReader(path, layout.sheet_name)
    if STREAM_BYTES_PER_SHARED_STRINGS_BYTE * layout.shared_strings_size > memory_budget_bytes:
        raise _strings_over_budget(layout)
    return XlsxStreamReader(path, sheet=sheet)


def _strings_over_budget(layout: WorkbookLayout) -> WorkbookError:
    return WorkbookError(
        f"the workbook's shared strings table ({layout.shared_strings_size // (1024 * 1024)} MB of XML) "
        "does not fit the worker's memory budget (READER_MEMORY_BUDGET_MB); save it as CSV, or raise the budget"
    )

"""Container checks and readers on real files: the shared sample data and odd workbooks."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import pytest

from shared.spreadsheet import xlsx_fast
from shared.spreadsheet.readers import (
    CalamineReader,
    OpenpyxlReader,
    Rejection,
    UploadRejected,
    WorkbookError,
    inspect_upload,
    open_reader,
)
from shared.spreadsheet.rules import normalize_cell, row_is_empty
from shared.spreadsheet.xlsx_fast import XlsxFastReader
from shared.spreadsheet.xlsx_stream import XlsxStreamReader
from tests.conftest import DATA
from tests.support.workbooks import csv_bytes, customers, write_xlsx

ODD = DATA / "odd-xlsx"
LIMITS = {"max_inflated_bytes": 512 * 1024 * 1024, "max_ratio": 200}


def normalized(reader: object) -> list[tuple[int, list[str | None]]]:
    rows = []
    for number, cells in reader.rows():  # type: ignore[attr-defined]
        if row_is_empty(cells):
            continue
        values = [normalize_cell(c) for c in cells]
        while values and values[-1] is None:
            values.pop()
        rows.append((number, values))
    reader.close()  # type: ignore[attr-defined]
    return rows


@pytest.mark.parametrize(
    ("name", "reason", "fragment"),
    [
        ("calamine__pass_protected.xlsx", Rejection.UNSUPPORTED, "password-protected"),
        ("tealeg__badfile_noWorksheets.xlsx", Rejection.UNPROCESSABLE, "worksheet part"),
    ],
)
def test_bad_odd_files_are_rejected_before_queueing(name: str, reason: Rejection, fragment: str) -> None:
    with pytest.raises(UploadRejected) as info:
        inspect_upload(ODD / name, name, **LIMITS)
    assert info.value.reason == reason
    assert fragment in info.value.detail


@pytest.mark.parametrize(
    "name",
    [
        "calamine__strict_iso_paths.xlsx",
        "calamine__inlineStr_cdata.xlsx",
        "calamine__has_x000D_.xlsx",
        "calamine__empty_shared_string_value.xlsx",
        "calamine__empty_sheet.xlsx",
    ],
)
def test_readable_odd_files_pass_the_container_check(name: str) -> None:
    assert inspect_upload(ODD / name, name, **LIMITS) == "xlsx"


def test_sample_and_csv_pass(tmp_path: Path) -> None:
    assert inspect_upload(DATA / "Sample_Employee_data_xlsx.xlsx", "s.xlsx", **LIMITS) == "xlsx"
    assert inspect_upload(DATA / "uk-500.csv", "uk-500.csv", **LIMITS) == "csv"


def test_empty_binary_and_non_utf8(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(UploadRejected) as info:
        inspect_upload(empty, "empty.csv", **LIMITS)
    assert info.value.reason == Rejection.EMPTY
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(UploadRejected) as info:
        inspect_upload(binary, "x.csv", **LIMITS)
    assert info.value.reason == Rejection.UNSUPPORTED
    latin = tmp_path / "l.csv"
    latin.write_bytes("name\nJosé\n".encode("latin-1"))
    assert inspect_upload(latin, "l.csv", **LIMITS) == "csv"  # text in another encoding is still text
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(b"%PDF-1.4 hello")
    with pytest.raises(UploadRejected) as info:
        inspect_upload(pdf, "doc.pdf", **LIMITS)
    assert info.value.reason == Rejection.UNSUPPORTED


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "a.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(UploadRejected) as info:
        inspect_upload(path, "a.xlsx", **LIMITS)
    assert info.value.reason == Rejection.UNPROCESSABLE and "not an Excel workbook" in info.value.detail
    broken = tmp_path / "b.xlsx"
    broken.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(UploadRejected) as info:
        inspect_upload(broken, "b.xlsx", **LIMITS)
    assert info.value.reason == Rejection.UNPROCESSABLE


def test_zip_bomb_is_refused_by_its_directory(tmp_path: Path) -> None:
    source = DATA / "Sample_Employee_data_xlsx.xlsx"
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        dst.writestr("xl/media/padding.bin", b"\0" * (50 * 1024 * 1024))
    with pytest.raises(UploadRejected) as info:
        inspect_upload(bomb, "bomb.xlsx", **LIMITS)
    assert info.value.reason == Rejection.UNPROCESSABLE and "compression ratio" in info.value.detail
    with pytest.raises(UploadRejected) as info:
        inspect_upload(bomb, "bomb.xlsx", max_inflated_bytes=10 * 1024 * 1024, max_ratio=10**6)
    assert info.value.reason == Rejection.TOO_LARGE


def test_the_compiled_reader_is_built() -> None:
    # `pip install -e .` (deploy/test.sh) builds shared/spreadsheet/_xlsx_fast.c; a silent build failure would
    # leave the service on the slow fallback, so the suite insists.
    assert xlsx_fast.AVAILABLE, "shared.spreadsheet._xlsx_fast was not built: see the pip log in .venv/pip-install.log"


@pytest.mark.parametrize("budget_mb", [512, 1])
def test_strict_sample_reads_all_rows_with_the_compiled_reader(budget_mb: int) -> None:
    # Whatever the budget (the sample's 143 KB of shared strings fit 1 MB), the compiled reader
    # streams: faster than calamine's whole-sheet load, in a fraction of the memory.
    reader = open_reader(DATA / "Sample_Employee_data_xlsx.xlsx", "xlsx", budget_mb * 1024 * 1024)
    assert reader.name == "xlsx-fast"
    rows = normalized(reader)
    assert len(rows) == 2001 and rows[-1][0] == 2001
    assert rows[0] == (
        1,
        ["first_name", "last_name", "company_name", "address", "city", "county", "postal", "phone", "email", "web"],
    )
    assert rows[1][1][7] == "01944-369967"


def test_without_the_extension_calamine_or_the_python_stream_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fallback when shared.spreadsheet._xlsx_fast could not be built (test_xlsx_fast.py also runs a
    # process where the import fails): a sheet that fits the budget is loaded whole by calamine, a
    # larger one streamed by the Python reader.
    monkeypatch.setattr(xlsx_fast, "AVAILABLE", False)
    sample = DATA / "Sample_Employee_data_xlsx.xlsx"
    reader = open_reader(sample, "xlsx", 512 * 1024 * 1024)
    assert reader.name == "calamine"
    assert len(normalized(reader)) == 2001
    reader = open_reader(sample, "xlsx", 1024 * 1024)
    assert reader.name == "xlsx-stream"
    rows = normalized(reader)
    assert len(rows) == 2001 and rows[-1][0] == 2001
    path = write_xlsx(tmp_path / "c.xlsx", customers(50))
    reader = open_reader(path, "xlsx", 20 * 1024)
    assert reader.name == "xlsx-stream"
    assert len(normalized(reader)) == 51
    from shared.spreadsheet.readers import read_head

    head_reader, head = read_head(path, "xlsx", rows=3)
    assert head_reader.name == "xlsx-stream" and [n for n, _ in head] == [1, 2, 3]


def test_openpyxl_finds_no_sheet_in_strict_workbook_and_says_so() -> None:
    # The trap from the design: openpyxl opens Strict OOXML with zero sheets. Never "0 rows".
    with pytest.raises(WorkbookError, match="no worksheet"):
        OpenpyxlReader(DATA / "Sample_Employee_data_xlsx.xlsx")


def _both_readable() -> list[Path]:
    return [
        p
        for p in sorted(ODD.glob("*.xlsx"))
        if "pass_protected" not in p.name and "noWorksheets" not in p.name and "strict" not in p.name
    ]


@pytest.mark.parametrize("path", _both_readable(), ids=lambda p: p.name)
def test_openpyxl_agrees_with_calamine_on_shared_files(path: Path) -> None:
    assert normalized(CalamineReader(path)) == normalized(OpenpyxlReader(path))


def _every_readable() -> list[Path]:
    found = [DATA / "Sample_Employee_data_xlsx.xlsx", *sorted(ODD.glob("*.xlsx"))]
    return [p for p in found if "pass_protected" not in p.name and "noWorksheets" not in p.name]


def raw_rows(reader: XlsxStreamReader) -> list[tuple[int, list[object]]]:
    try:
        return list(reader.rows())
    finally:
        reader.close()


def typed(rows: list[tuple[int, list[object]]]) -> list[tuple[int, list[tuple[str, object]]]]:
    """Rows with each value's type beside it: 1 == 1.0 == True in Python, not in a cell."""
    return [(n, [(type(c).__name__, c) for c in cells]) for n, cells in rows]


def assert_fast_is_stream(path: Path) -> None:
    """The compiled reader gives exactly the Python stream reader's rows, types included."""
    assert typed(raw_rows(XlsxFastReader(path))) == typed(raw_rows(XlsxStreamReader(path)))


@pytest.mark.parametrize("path", _every_readable(), ids=lambda p: p.name)
def test_whole_sheet_and_streaming_readers_give_identical_rows(path: Path) -> None:
    """The service's xlsx readers, on every shared file they can read (Strict ones included)."""
    calamine = normalized(CalamineReader(path))
    assert calamine == normalized(XlsxStreamReader(path))
    assert calamine == normalized(XlsxFastReader(path))
    assert_fast_is_stream(path)


@pytest.mark.parametrize("reader_class", [XlsxStreamReader, XlsxFastReader], ids=["python", "compiled"])
def test_streaming_reader_handles_what_writers_vary(tmp_path: Path, reader_class: type[XlsxStreamReader]) -> None:
    # Attribute order, namespace prefixes, entities, CDATA, rich text, booleans, gaps between cells.
    sheet = (
        '<?xml version="1.0" encoding="UTF-8"?><x:worksheet xmlns:x="http://schemas.openxmlformats.org/'
        'spreadsheetml/2006/main"><x:sheetData>'
        '<x:row r="2"><x:c t="inlineStr" r="A2"><x:is><x:t>A &amp; B</x:t></x:is></x:c>'
        '<x:c r="C2" t="inlineStr"><x:is><x:r><x:t>rich </x:t></x:r><x:r><x:t>text</x:t></x:r></x:is></x:c></x:row>'
        '<x:row r="4"><x:c r="B4" t="b"><x:v>1</x:v></x:c><x:c r="D4"><x:v>12.50</x:v></x:c>'
        '<x:c r="E4" t="inlineStr"><x:is><x:t><![CDATA[<cdata>]]></x:t></x:is></x:c></x:row>'
        "</x:sheetData></x:worksheet>"
    )
    path = tmp_path / "hand.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
            'Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        zf.writestr(
            "xl/workbook.xml",
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://'
            'schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" '
            'r:id="rId1"/></sheets></workbook>',
        )
        zf.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
            'Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>',
        )
        zf.writestr("xl/worksheets/sheet1.xml", sheet)
    rows = list(reader_class(path).rows())
    assert rows == [(2, ["A & B", None, "rich text"]), (4, [None, True, None, 12.5, "<cdata>"])]


def test_all_readers_agree_on_a_generated_workbook_with_types(tmp_path: Path) -> None:
    rows = customers(30)
    rows[3][7] = 1944369967  # a phone typed as a number
    rows[4][6] = 12345.0
    rows[5][3] = dt.datetime(2023, 5, 17)
    rows[6][4] = "  padded  "
    rows[7] = [None] * 10  # an empty row in the middle
    path = write_xlsx(tmp_path / "typed.xlsx", rows)
    calamine_rows = normalized(CalamineReader(path))
    assert calamine_rows == normalized(OpenpyxlReader(path))
    assert calamine_rows == normalized(XlsxStreamReader(path))
    assert calamine_rows == normalized(XlsxFastReader(path))
    assert_fast_is_stream(path)
    by_number = dict(calamine_rows)
    assert by_number[5][7] == "1944369967"
    assert by_number[6][6] == "12345"
    assert by_number[7][3] == "2023-05-17"
    assert by_number[8][4] == "padded"
    assert 9 not in by_number  # the empty row is skipped, later rows keep their Excel numbers
    assert by_number[10][0] == "First8"


def test_shared_strings_over_the_budget_fail_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sample's shared strings are 143 KB of XML: about as much in the compiled reader's table,
    # over a 100 KB budget; ~0.8 MB as the Python reader's strings, over a 200 KB budget.
    sample = DATA / "Sample_Employee_data_xlsx.xlsx"
    with pytest.raises(WorkbookError, match="READER_MEMORY_BUDGET_MB"):
        open_reader(sample, "xlsx", 100 * 1024)
    assert open_reader(sample, "xlsx", 200 * 1024).name == "xlsx-fast"
    monkeypatch.setattr(xlsx_fast, "AVAILABLE", False)
    with pytest.raises(WorkbookError, match="READER_MEMORY_BUDGET_MB"):
        open_reader(sample, "xlsx", 200 * 1024)


def test_the_type_is_recognised_by_content_both_ways(tmp_path: Path) -> None:
    csv_named_xlsx = tmp_path / "customers.xlsx"
    csv_named_xlsx.write_bytes(csv_bytes(customers(3)))
    assert inspect_upload(csv_named_xlsx, "customers.xlsx", **LIMITS) == "csv"
    xlsx_named_csv = write_xlsx(tmp_path / "book.csv", customers(3))
    assert inspect_upload(xlsx_named_csv, "book.csv", **LIMITS) == "xlsx"
    # 68 bytes of text under an .xls name: text, so read as CSV (whose header is then refused).
    assert inspect_upload(ODD / "calamine__too_small.xls", "x.xls", **LIMITS) == "csv"
    png = tmp_path / "photo.xlsx"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(UploadRejected) as info:
        inspect_upload(png, "photo.xlsx", **LIMITS)
    assert info.value.reason == Rejection.UNSUPPORTED and "PNG image" in info.value.detail


def test_header_check_names_missing_columns_and_quotes_the_header(tmp_path: Path) -> None:
    from shared.spreadsheet.mapping import ImportOptions
    from shared.spreadsheet.preview import build_preview
    from shared.spreadsheet.rules import HeaderError

    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"hello\n")
    found = build_preview(notes, "notes.txt", inspect_upload(notes, "notes.txt", **LIMITS), ImportOptions())
    assert isinstance(found.problem, HeaderError)
    assert found.problem.found == ["hello"]
    assert found.problem.missing == ["email"]  # the only column a file must have
    good = write_xlsx(tmp_path / "good.xlsx", customers(5))
    assert build_preview(good, "good.xlsx", "xlsx", ImportOptions()).problem is None


def test_read_head_reads_only_the_shared_strings_it_needs(tmp_path: Path) -> None:
    from shared.spreadsheet.readers import read_head
    from shared.spreadsheet.xlsx_stream import LazyStrings

    path = write_xlsx(tmp_path / "big.xlsx", customers(3000))
    head_reader, head = read_head(path, "xlsx", rows=3)
    assert head_reader.name == "xlsx-fast"
    assert [n for n, _ in head] == [1, 2, 3]
    assert head[0][1][:2] == ["first_name", "last_name"]
    reader = XlsxStreamReader(path, lazy_strings=True)
    try:
        strings = reader._strings
        assert isinstance(strings, LazyStrings)
        next(iter(reader.rows()))
        assert len(strings._loaded) <= 10  # the header's strings, not the 30,000 of the sheet
    finally:
        reader.close()


def test_row_estimates_are_honest(tmp_path: Path) -> None:
    from shared.spreadsheet.readers import CsvReader

    two = tmp_path / "two.csv"
    two.write_bytes(csv_bytes(customers(2)))
    assert CsvReader(two).total_estimate == 2
    many = tmp_path / "many.csv"
    many.write_bytes(csv_bytes(customers(50_000)))
    estimate = CsvReader(many).total_estimate
    assert estimate is not None and abs(estimate - 50_000) < 2_500
    book = write_xlsx(tmp_path / "b.xlsx", customers(7))
    assert CalamineReader(book).total_estimate == 7
    assert XlsxStreamReader(book).total_estimate == 7
    assert XlsxFastReader(book).total_estimate == 7
    # A <dimension> that claims far more rows than the sheet holds is no estimate at all.
    lying = tmp_path / "lying.xlsx"
    with zipfile.ZipFile(book) as src, zipfile.ZipFile(lying, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'<dimension ref="A1:J8"\s*/>', b'<dimension ref="A1:J1000000"/>', data)
                assert b"J1000000" in data
            dst.writestr(info, data)
    assert XlsxStreamReader(lying).total_estimate is None
    assert XlsxFastReader(lying).total_estimate is None

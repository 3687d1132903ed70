"""The compiled xlsx reader (shared/spreadsheet/_xlsx_fast.c via xlsx_fast.py): the same rows as the Python
stream reader and python-calamine on odd XML, damaged input as WorkbookError (never a crash), memory
bounded by a chunk whatever the sheet's size, and the fallback when the extension is missing."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from shared.spreadsheet import xlsx_fast
from shared.spreadsheet.readers import CalamineReader, WorkbookError, open_reader, read_head
from shared.spreadsheet.xlsx_fast import XlsxFastReader
from shared.spreadsheet.xlsx_stream import XlsxStreamReader
from tests.bench import datagen
from tests.support.hostile import BILLION_LAUGHS, EXTERNAL_ENTITY, MAIN, Raw, workbook, workbook_parts, zip_bytes
from tests.support.workbooks import workbook_with_formulas_merges_and_1904_dates
from tests.unit.spreadsheet.test_readers import normalized, raw_rows, typed

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(not xlsx_fast.AVAILABLE, reason="shared.spreadsheet._xlsx_fast is not built")


def both(path: Path) -> list[tuple[int, list[Any]]]:
    """The rows of the compiled reader, after checking they equal the Python reader's, types included."""
    fast = raw_rows(XlsxFastReader(path))
    assert typed(fast) == typed(raw_rows(XlsxStreamReader(path)))
    return fast


def hand_sheet(tmp_path: Path, sheet_data: str, *, strings: str | None = None, styles: str | None = None) -> Path:
    """A workbook whose sheet XML (and shared strings, styles) are written by hand."""
    parts = workbook_parts([["x"]], shared_strings=strings is not None)
    parts["xl/worksheets/sheet1.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>{sheet_data}'
        "</sheetData></worksheet>"
    ).encode()
    if strings is not None:
        parts["xl/sharedStrings.xml"] = f'<?xml version="1.0"?><sst xmlns="{MAIN}">{strings}</sst>'.encode()
    if styles is not None:
        parts["xl/styles.xml"] = styles.encode()
        rels = parts["xl/_rels/workbook.xml.rels"].decode()
        rel = (
            '<Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'styles" Target="styles.xml"/>'
        )
        parts["xl/_rels/workbook.xml.rels"] = rels.replace("</Relationships>", rel + "</Relationships>").encode()
    path = tmp_path / "hand.xlsx"
    path.write_bytes(zip_bytes(parts))
    return path


def test_typed_cells_from_openpyxl_and_1904_dates(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["text", "int", "float", "bool", "date", "datetime", "negative", "big", "formula"])
    sheet.append(["a", 1, 2.5, True, dt.date(2024, 2, 29), dt.datetime(1999, 12, 31, 23, 59, 59), -7, 2**70, "=1+1"])
    sheet.append([" spaced ", 0, 1e-9, False, dt.date(1900, 1, 1), dt.datetime(2038, 1, 19, 3, 14, 7), -0.5, 10**17])
    sheet.append([None, None, "é€😀", None, None, None, None, None, None])
    sheet["K7"] = "far"
    path = tmp_path / "typed.xlsx"
    book.save(path)
    rows = both(path)
    assert rows[1][1][:4] == ["a", 1, 2.5, True]
    assert rows[1][1][4] == dt.datetime(2024, 2, 29)
    assert rows[2][1][5] == dt.datetime(2038, 1, 19, 3, 14, 7)
    assert rows[3][1][2] == "é€😀"
    assert rows[-1] == (7, [None] * 10 + ["far"])
    assert normalized(XlsxFastReader(path)) == normalized(CalamineReader(path))
    mac = workbook_with_formulas_merges_and_1904_dates(tmp_path / "mac.xlsx")
    by_number = dict(both(mac))
    assert by_number[3][2] == "Acme Ltd" and by_number[3][10] == dt.datetime(1905, 1, 1)
    assert normalized(XlsxFastReader(mac)) == normalized(CalamineReader(mac))


@pytest.mark.parametrize("kind", ["shared", "inline"])
def test_generated_customer_workbooks_match_calamine(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"customers-{kind}.xlsx"
    datagen.write_xlsx(path, 3000, shared=kind == "shared")
    fast = raw_rows(XlsxFastReader(path))
    assert len(fast) == 3001
    assert fast == raw_rows(CalamineReader(path))
    assert typed(fast) == typed(raw_rows(XlsxStreamReader(path)))


def test_what_writers_vary_in_the_xml(tmp_path: Path) -> None:
    # Prefixes, attribute order and quotes, entities and character references, CDATA, rich text,
    # phonetic runs, OOXML escapes, empty and self-closing cells and rows, rows without numbers,
    # cells without references, other elements in a row, comments, errors, t="str", t="d", t="n".
    strings = (
        "<si><t>plain</t></si>"
        '<si><r><rPr><b/></rPr><t xml:space="preserve">rich </t></r><r><t>text</t></r>'
        "<rPh sb='0' eb='1'><t>PHONETIC</t></rPh><phoneticPr fontId='1'/></si>"
        "<si><t>A &amp; B &lt;c&gt; &#233;&#x20AC; &quot;q&apos;</t></si>"
        "<si><t>line_x000D_break _x005F_x0041_ _xZZZZ_</t></si>"
        "<si><t/></si>"
        "<si/>"
        "<si><t><![CDATA[<raw> & ]]></t></si>"
        "<si><t>crlf\r\nand cr\rend</t></si>"
    )
    sheet = (
        "<!-- a comment with <row> inside -->"
        '<row r="1" spans="1:9"><c r="A1" t="s"><v>0</v></c><c t="s" r="B1"><v>1</v></c>'
        '<c r=\'C1\' t=\'s\'><v> 2 </v></c><c r="D1" t="s"><v>3</v></c><c r="E1" t="s"><v>4</v></c>'
        '<c r="F1" t="s"><v>5</v></c><c r="G1" t="s"><v>6</v></c><c r="H1" t="s"><v>7</v></c></row>'
        '<row r="3"/>'
        "<row><c><v>1</v></c><c><v>2</v></c><c r='E4'><v>-3</v></c><c><v>4.25</v></c></row>"
        '<row r="6"><c r="A6" t="inlineStr"><is><t>x &amp; y &nbsp;z &copy</t></is></c>'
        '<c r="B6" t="str"><f>A6</f><v>f &amp; g_x0009_</v></c><c r="C6" t="e"><v>#DIV/0!</v></c>'
        '<c r="D6" t="b"><v>0</v></c><c r="E6" t="b"><v>true</v></c><c r="F6" t="d"><v>2024-03-01T10:00:00Z</v></c>'
        '<c r="G6" t="d"><v>not a date</v></c><c r="H6" t="n"><v>  12  </v></c><c r="I6"></c><c r="J6"/>'
        '<c r="K6"><f>1+1</f></c><c r="L6" t="inlineStr"><is><r><t>a</t></r><rPh><t>P</t></rPh><r><t>b</t></r></is></c>'
        '<c r="M6"><v>1E+20</v></c><c r="N6"><v>123456789012345678901234</v></c><c r="O6"><v>-0</v></c>'
        '<extLst><ext uri="x"/></extLst></row>'
        '<x:row r="8" xmlns:x="urn:x"><x:c r="B8" t="s"><x:v>0</x:v></x:c><x:c r="A8"><x:v>9</x:v></x:c></x:row>'
        '<row r="9"><c r="A9" s="1"><v>45000.5</v></c><c r="B9" s="1"><v>59</v></c><c r="C9" s="2"><v>45000</v></c>'
        '<c r="D9" s="1"><v>1e400</v></c><c r="E9" s="1" t="s"><v>0</v></c></row>'
    )
    styles = (
        f'<styleSheet xmlns="{MAIN}"><numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm"/>'
        '</numFmts><cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="4"/></cellXfs></styleSheet>'
    )
    path = hand_sheet(tmp_path, sheet, strings=strings, styles=styles)
    rows = dict(both(path))
    assert rows[1] == [
        "plain",
        "rich text",
        "A & B <c> é€ \"q'",
        "line\rbreak _x0041_ _xZZZZ_",
        "",
        "",
        "<raw> & ",
        "crlf\nand cr\nend",
    ]
    assert rows[3] == []
    assert rows[4] == [1, 2, None, None, -3, 4.25]
    assert rows[6][:8] == ["x & y \xa0z ©", "f & g\t", None, False, True, dt.datetime(2024, 3, 1, 10), "not a date", 12]
    assert rows[6][8:] == [None, None, None, "ab", 1e20, 123456789012345678901234, 0]
    assert rows[8] == [9, "plain"]
    assert rows[9] == [dt.datetime(2023, 3, 15, 12), dt.datetime(1900, 2, 28), 45000, 1e400, "plain"]


def test_the_shared_strings_are_read_only_as_far_as_the_sheet_needs(tmp_path: Path) -> None:
    path = tmp_path / "many.xlsx"
    datagen.write_xlsx(path, 40_000, shared=True)  # ~120,000 strings, ~3.5 MB of XML
    reader, head = read_head(path, "xlsx", rows=3)
    assert reader.name == "xlsx-fast" and [n for n, _ in head] == [1, 2, 3]
    fast = XlsxFastReader(path, lazy_strings=True)
    try:
        next(iter(fast.rows()))
        assert 0 < fast.strings_loaded < 60_000  # one chunk of the table's XML, not all of it
    finally:
        fast.close()
    whole = XlsxFastReader(path, lazy_strings=False)
    try:
        assert whole.strings_loaded > 120_000
    finally:
        whole.close()


def test_memory_is_bounded_by_a_chunk_not_the_sheet() -> None:
    # ~80 MB of sheet XML fed in 1 MB chunks: the parser's own allocations (PyMem, traced) stay at a
    # couple of chunks, and the rows it returns are dropped as they come.
    from shared.spreadsheet import _xlsx_fast

    parser = _xlsx_fast.SheetParser(None, None, b"", None, None, None)
    text = "a long value " * 20
    cells = "".join(f'<c r="{c}%(n)d" t="inlineStr"><is><t>{text}{c}%(n)d</t></is></c>' for c in "ABCDEFGHIJ")
    template = f'<row r="%(n)d">{cells}</row>'
    tracemalloc.start()
    try:
        rows = 0
        for start in range(1, 30_001, 400):  # ~1 MB of XML per chunk
            chunk = "".join(template % {"n": n} for n in range(start, start + 400)).encode()
            rows += len(parser.feed(chunk))
        rows += len(parser.finish())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == 30_000
    assert peak < 12 * 1024 * 1024, peak


def test_a_row_over_64_mb_is_refused() -> None:
    from shared.spreadsheet import _xlsx_fast

    parser = _xlsx_fast.SheetParser(None, None, b"", None, None, None)
    parser.feed(b'<sheetData><row r="1"><c t="inlineStr"><is><t>')
    with pytest.raises(WorkbookError, match="64 MB"):
        for _ in range(70):
            parser.feed(b"x" * (1 << 20))


@pytest.mark.parametrize("prolog", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion laughs", "external entity"])
@pytest.mark.parametrize("where", ["sheet", "strings"])
def test_entity_declarations_are_refused(tmp_path: Path, prolog: str, where: str) -> None:
    entity = "&lol9;" if prolog == BILLION_LAUGHS else "&xxe;"
    rows = [["first_name"], [Raw(entity)]]
    if where == "sheet":
        data = workbook(rows, sheet_prolog=prolog)
    else:
        data = workbook(rows, shared_strings=True, strings_prolog=prolog)
    path = tmp_path / "entities.xlsx"
    path.write_bytes(data)
    with pytest.raises(WorkbookError, match="entity"):
        list(XlsxFastReader(path).rows())
    with pytest.raises(WorkbookError, match="entity"):
        read_head(path, "xlsx")


def test_a_missing_shared_string_and_bad_numbers_are_workbook_errors(tmp_path: Path) -> None:
    cases = [
        ('<row r="1"><c r="A1" t="s"><v>5</v></c></row>', "<si><t>only</t></si>"),
        ('<row r="1"><c r="A1" t="s"><v>x</v></c></row>', "<si><t>only</t></si>"),
        ('<row r="1"><c r="A1"><v>12abc</v></c></row>', None),
        ('<row r="1"><c r="A1"><v>-</v></c></row>', None),
        ('<row r="1"><c r="ZZZZ1"><v>1</v></c></row>', None),
        ('<row r="1"><c r="A1" t="inlineStr"><is><t>\xff</t></is></c></row>', None),
    ]
    for sheet, strings in cases:
        path = hand_sheet(tmp_path, sheet, strings=strings)
        if "\xff" in sheet:  # bytes that are not UTF-8
            with zipfile.ZipFile(path) as zf:
                parts = {i.filename: zf.read(i.filename) for i in zf.infolist()}
            parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace("\xff".encode(), b"\xff")
            path.write_bytes(zip_bytes(parts))
        with pytest.raises(WorkbookError):
            list(XlsxFastReader(path).rows())


FUZZ = textwrap.dedent(
    """
    import random, sys, zipfile
    from pathlib import Path
    from shared.spreadsheet.readers import WorkbookError
    from shared.spreadsheet.xlsx_fast import XlsxFastReader
    from shared.spreadsheet.xlsx_stream import XlsxStreamReader

    source, out, cases = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    with zipfile.ZipFile(source) as zf:
        parts = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    rng = random.Random(13)
    tokens = [b"<", b">", b"/>", b'"', b"'", b"&", b"&#", b"<row", b"</row>", b"<c", b"</c>", b"<v>", b"</v>",
              b"<![CDATA[", b"]]>", b"<!--", b"_x00", b"<si>", b"</si>", b"<t>", b"\\xff", b"\\x00", b"99999999999"]
    outcomes = {"rows": 0, "error": 0}
    for case in range(cases):
        name = rng.choice(["xl/worksheets/sheet1.xml", "xl/sharedStrings.xml"])
        data = bytearray(parts[name])
        how = rng.randrange(4)
        if how == 0:
            data = data[: rng.randrange(len(data))]
        elif how == 1:
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 2:
            for _ in range(rng.randrange(1, 10)):
                at = rng.randrange(len(data))
                data[at:at] = rng.choice(tokens)
        else:
            a, b = sorted(rng.randrange(len(data)) for _ in range(2))
            del data[a:b]
        damaged = dict(parts, **{name: bytes(data)})
        with zipfile.ZipFile(out, "w") as zf:
            for part, content in damaged.items():
                zf.writestr(part, content)
        for reader_class in (XlsxFastReader, XlsxStreamReader):
            try:
                reader = reader_class(out)
                try:
                    for _ in reader.rows():
                        pass
                finally:
                    reader.close()
                outcomes["rows"] += 1
            except WorkbookError:
                outcomes["error"] += 1
            except Exception as exc:
                print(f"case {case} ({reader_class.name}, {name}, how {how}): {type(exc).__name__}: {exc}")
                sys.exit(1)
    print(outcomes)
    """
)


def test_damaged_xml_is_a_workbook_error_never_a_crash(tmp_path: Path) -> None:
    # In a child process, so that a crash of the extension fails this test instead of the suite.
    source = tmp_path / "source.xlsx"
    rows = [["first_name", "email"], *([f"Name{i} & co", f"n{i}@example.com"] for i in range(40))]
    parts = workbook_parts(rows, shared_strings=True)
    source.write_bytes(zip_bytes(parts))
    done = subprocess.run(
        [sys.executable, "-c", FUZZ, str(source), str(tmp_path / "damaged.xlsx"), "1500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'error': 0" not in done.stdout and "'rows': 0" not in done.stdout, done.stdout


def test_a_truncated_zip_member_is_a_workbook_error(tmp_path: Path) -> None:
    path = tmp_path / "big.xlsx"
    datagen.write_xlsx(path, 5000, shared=False)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("xl/worksheets/sheet1.xml")
    # Damage the compressed bytes in the middle of the sheet member.
    middle = info.header_offset + 100 + info.compress_size // 2
    damaged = tmp_path / "damaged.xlsx"
    damaged.write_bytes(data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :])
    with pytest.raises(WorkbookError):
        list(XlsxFastReader(damaged).rows())


def test_without_the_extension_the_python_reader_serves(tmp_path: Path) -> None:
    # A process where shared.spreadsheet._xlsx_fast cannot be imported, as on a machine without a C compiler.
    path = tmp_path / "c.xlsx"
    datagen.write_xlsx(path, 50, shared=False)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["shared.spreadsheet._xlsx_fast"] = None  # the import fails as if it was never built
        from pathlib import Path
        from shared.spreadsheet import xlsx_fast
        from shared.spreadsheet.readers import open_reader, read_head
        assert not xlsx_fast.AVAILABLE
        big = open_reader(Path({str(path)!r}), "xlsx", 1024 * 1024)
        small = open_reader(Path({str(path)!r}), "xlsx", 20 * 1024)
        head, rows = read_head(Path({str(path)!r}), "xlsx", rows=2)
        print(big.name, small.name, head.name, len(list(big.rows())), len(list(small.rows())), len(rows))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["calamine", "xlsx-stream", "xlsx-stream", "51", "51", "2"]


def test_the_reader_is_chosen_for_sheets_of_any_size(tmp_path: Path) -> None:
    path = tmp_path / "c.xlsx"
    datagen.write_xlsx(path, 20, shared=True)
    assert open_reader(path, "xlsx", 512 * 1024 * 1024).name == "xlsx-fast"
    assert open_reader(path, "xlsx", 64 * 1024).name == "xlsx-fast"

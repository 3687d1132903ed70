"""Generate customer workbooks for the benchmarks, once, into a cache folder outside the repo.

    .venv/bin/python -m tests.bench.datagen [--rows 100000,1000000] [--kinds inline,shared,csv] [--force]

Files land in $BENCH_CACHE (default ~/.cache/customer-import-bench) as
`customers-{rows}-{kind}.{xlsx|csv}` and are reused while GEN_VERSION stays the same.

The sheet XML is written by hand into a streamed zip member (openpyxl's write-only mode would
take minutes for a million rows): kind `inline` uses inline strings (`t="inlineStr"`, what many
exporters write), kind `shared` a shared-strings table (`t="s"`, what Excel itself writes), and
`csv` is UTF-8 with a header. Ten columns, first_name..web, realistic short text, unique emails,
deterministic (row i is always the same customer). `--verify` (also run before any generation)
writes a small workbook of each kind and checks that openpyxl and python-calamine read it back.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

GEN_VERSION = 1
COLUMNS = ("first_name", "last_name", "company_name", "address", "city", "county", "postal", "phone", "email", "web")
KINDS = ("inline", "shared", "csv")

FIRST = (
    "Aleshia Evan France Ulysses Tyisha Eric Marg Laquita Lura Yuette Fernanda Charlesetta Corrinne Niesha Rueben "
    "Michell Edgar Dewitt Charisse Mee Peter Oliver Amelia Harry Isla Jack Emily George Ava Noah Mia Leo Ella "
    "Oscar Grace Charlie Sophia Jacob Lily Thomas Freya Alfie Evie Arthur Ruby Henry Chloe Archie Sienna Joshua"
).split()
LAST = (
    "Tomkiewicz Zigomalas Andrade Mcwalters Veness Rampy Grasmick Hisaw Manzella Klapec Writer Erm Jaret Pinilla "
    "Bertman Kulzer Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans Walker "
    "White Roberts Green Hall Wood Jackson Clarke Patel Khan Lewis James Phillips Mason Mitchell Rose Davis"
).split()
COMPANY_A = "Alan Cap Elliott Mcmahan Champagne Thompson Wheeler Jjs Armon Rousseaux Lindsey Northern Blue Red".split()
COMPANY_B = "Rosenburg Gemini Mitchell Roberts Room Dave Walls Air Communications Michael Paper Trust Oak Lion".split()
COMPANY_C = ("Cpa Pc", "America", "Ltd", "Esq", "Inc", "& Sons", "Group", "Partners", "Services", "Holdings")
STREETS = (
    "Taylor St",
    "Binney St",
    "Moor Place",
    "Exeter Rd",
    "Forth Street",
    "Hanover St",
    "High St",
    "Station Rd",
    "Church Lane",
    "Victoria Rd",
    "Green Lane",
    "Manor Rd",
    "Park Avenue",
    "Queens Rd",
    "Mill Lane",
    "Kings Rd",
)
CITIES = (
    "St. Stephens Ward",
    "Abbey Ward",
    "East Southbourne and Tuckton W",
    "Hawerby cum Beesby",
    "Greets Green",
    "Leith",
    "Bournemouth",
    "Kingston upon Thames",
    "Cardiff",
    "Leeds",
    "Bristol",
    "Norwich",
    "York",
    "Bath",
    "Chester",
    "Durham",
    "Exeter",
    "Lincoln",
    "Oxford",
    "Cambridge",
    "Brighton",
    "Derby",
    "Perth",
    "Stirling",
)
COUNTIES = (
    "Kent",
    "Buckinghamshire",
    "Bournemouth",
    "Lincolnshire",
    "West Midlands",
    "Edinburgh",
    "Greater London",
    "South Glamorgan",
    "West Yorkshire",
    "Bristol",
    "Norfolk",
    "North Yorkshire",
    "Somerset",
    "Cheshire",
    "Devon",
)
POST_AREAS = ("CT", "HP", "BH", "DN", "B", "EH", "KT", "CF", "LS", "BS", "NR", "YO", "BA", "CH", "DH", "EX")
DOMAINS = ("hotmail.com", "gmail.com", "yahoo.co.uk", "outlook.com", "btinternet.com", "example.co.uk")


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "customer-import-bench").expanduser()


def path_for(rows: int, kind: str, folder: Path | None = None) -> Path:
    ext = "csv" if kind == "csv" else "xlsx"
    return (folder or cache_dir()) / f"customers-v{GEN_VERSION}-{rows}-{kind}.{ext}"


def customer_rows(n: int) -> Iterator[tuple[str, ...]]:
    """n deterministic customers; email is unique per row (the index is part of it)."""
    nf, nl, nca, ncb, ncc = len(FIRST), len(LAST), len(COMPANY_A), len(COMPANY_B), len(COMPANY_C)
    ns, nci, nco, npa, nd = len(STREETS), len(CITIES), len(COUNTIES), len(POST_AREAS), len(DOMAINS)
    for i in range(n):
        h = (i * 2654435761) & 0xFFFFFFFF  # Knuth's multiplicative hash: cheap, well spread
        first = FIRST[h % nf]
        last = LAST[(h >> 7) % nl]
        ca, cb = COMPANY_A[(h >> 3) % nca], COMPANY_B[(h >> 11) % ncb]
        company = f"{ca} {cb} {COMPANY_C[(h >> 17) % ncc]}"
        yield (
            first,
            last,
            company,
            f"{1 + (h >> 5) % 998} {STREETS[(h >> 13) % ns]}",
            CITIES[(h >> 9) % nci],
            COUNTIES[(h >> 15) % nco],
            f"{POST_AREAS[(h >> 19) % npa]}{1 + (h >> 4) % 29} "
            f"{(h >> 8) % 10}{chr(65 + (h >> 12) % 26)}{chr(65 + (h >> 16) % 26)}",
            f"0{1200 + (h >> 6) % 8700}-{(h >> 10) % 1000000:06d}",
            f"{first}.{last}.{i}@{DOMAINS[(h >> 21) % nd]}".lower(),
            f"http://www.{ca}{cb}.co.uk".lower(),
        )


# -- xlsx --------------------------------------------------------------------------------------------

_OOXML = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_CONTENT_TYPES = (
    _XML_DECL + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\n'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>\n'
    '<Default Extension="xml" ContentType="application/xml"/>\n'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_OOXML}.sheet.main+xml"/>\n'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_OOXML}.worksheet+xml"/>\n'
    f'<Override PartName="/xl/styles.xml" ContentType="{_OOXML}.styles+xml"/>\n'
    "{sst_override}</Types>"
)
_SST_OVERRIDE = f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_OOXML}.sharedStrings+xml"/>\n'
_ROOT_RELS = (
    _XML_DECL + f'<Relationships xmlns="{_PKG_REL}">\n'
    f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>\n'
    "</Relationships>"
)
_WORKBOOK = (
    _XML_DECL + '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    f'xmlns:r="{_REL}">\n'
    '<sheets><sheet name="customers" sheetId="1" r:id="rId1"/></sheets>\n'
    "</workbook>"
)
_WORKBOOK_RELS = (
    _XML_DECL + f'<Relationships xmlns="{_PKG_REL}">\n'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>\n'
    f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/>\n'
    "{sst_rel}</Relationships>"
)
_SST_REL = f'<Relationship Id="rId3" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>\n'
_STYLES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="1"><fill><patternFill patternType="none"/></fill></fills>
<borders count="1"><border/></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<dimension ref="A1:J{last}"/><sheetData>'
)
_SHEET_TAIL = "</sheetData></worksheet>"
_LETTERS = "ABCDEFGHIJ"


def _esc(text: str) -> str:
    return escape(text) if ("&" in text or "<" in text or ">" in text) else text


def write_xlsx(path: Path, n: int, shared: bool) -> None:
    """Stream the sheet XML row by row into the zip; build the shared-strings table on the way."""
    tmp = path.with_suffix(".tmp")
    sst: dict[str, int] = {}
    sst_refs = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES.format(sst_override=_SST_OVERRIDE if shared else ""))
        zf.writestr("_rels/.rels", _ROOT_RELS)
        zf.writestr("xl/workbook.xml", _WORKBOOK)
        zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS.format(sst_rel=_SST_REL if shared else ""))
        zf.writestr("xl/styles.xml", _STYLES)
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as raw:
            out: list[str] = [_SHEET_HEAD.format(last=n + 1)]

            def emit_row(r: int, values: tuple[str, ...]) -> None:
                nonlocal sst_refs
                cells = []
                if shared:
                    for col, value in zip(_LETTERS, values, strict=True):
                        index = sst.get(value)
                        if index is None:
                            index = sst[value] = len(sst)
                        cells.append(f'<c r="{col}{r}" t="s"><v>{index}</v></c>')
                    sst_refs += len(values)
                else:
                    for col, value in zip(_LETTERS, values, strict=True):
                        cells.append(f'<c r="{col}{r}" t="inlineStr"><is><t>{_esc(value)}</t></is></c>')
                out.append(f'<row r="{r}">{"".join(cells)}</row>')

            emit_row(1, COLUMNS)
            for r, values in enumerate(customer_rows(n), 2):
                emit_row(r, values)
                if len(out) >= 2000:
                    raw.write("".join(out).encode())
                    out.clear()
            out.append(_SHEET_TAIL)
            raw.write("".join(out).encode())
        if shared:
            with zf.open("xl/sharedStrings.xml", "w", force_zip64=True) as raw:
                raw.write(
                    (
                        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                        f'count="{sst_refs}" uniqueCount="{len(sst)}">'
                    ).encode()
                )
                chunk: list[str] = []
                for value in sst:  # dicts keep insertion order = index order
                    chunk.append(f"<si><t>{_esc(value)}</t></si>")
                    if len(chunk) >= 5000:
                        raw.write("".join(chunk).encode())
                        chunk.clear()
                chunk.append("</sst>")
                raw.write("".join(chunk).encode())
    tmp.replace(path)


def write_csv(path: Path, n: int) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(customer_rows(n))
    tmp.replace(path)


def generate(rows: int, kind: str, folder: Path | None = None, force: bool = False) -> Path:
    path = path_for(rows, kind, folder)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if kind == "csv":
        write_csv(path, rows)
    else:
        write_xlsx(path, rows, shared=kind == "shared")
    print(
        f"datagen: wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return path


def verify(n: int = 200) -> None:
    """A small workbook of each kind must read back identically in openpyxl and python-calamine."""
    import openpyxl
    import python_calamine

    expected = [list(COLUMNS), *[list(r) for r in customer_rows(n)]]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            path = generate(n, kind, Path(tmp), force=True)
            if kind == "csv":
                with path.open(encoding="utf-8", newline="") as fh:
                    got = [row for row in csv.reader(fh)]
                assert got == expected, "csv does not read back"
                continue
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                got = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
            finally:
                wb.close()
            assert got == expected, f"openpyxl reads {kind} differently: {got[:2]} vs {expected[:2]}"
            cwb = python_calamine.CalamineWorkbook.from_path(str(path))
            got = [[str(c) for c in r] for r in cwb.get_sheet_by_index(0).to_python()]
            cwb.close()
            assert got == expected, f"calamine reads {kind} differently: {got[:2]} vs {expected[:2]}"
            with zipfile.ZipFile(path) as zf:
                assert zf.testzip() is None
    emails = [r[8] for r in customer_rows(50_000)]
    assert len(set(emails)) == len(emails), "emails are not unique"
    print(f"datagen: verified {n}-row inline/shared xlsx (openpyxl, python-calamine) and csv", file=sys.stderr)


def ensure(sizes: list[int], kinds: tuple[str, ...] = KINDS, force: bool = False) -> dict[tuple[int, str], Path]:
    missing = force or any(not path_for(n, k).exists() for n in sizes for k in kinds)
    if missing:
        verify()
    return {(n, k): generate(n, k, force=force) for n in sizes for k in kinds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    parser.add_argument("--verify", action="store_true", help="only check small files read back")
    args = parser.parse_args(argv)
    if args.verify:
        verify()
        return 0
    sizes = [int(x.replace("_", "")) for x in args.rows.split(",") if x]
    kinds = tuple(k for k in args.kinds.split(",") if k)
    for (_n, _k), path in ensure(sizes, kinds, args.force).items():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

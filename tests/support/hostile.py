"""Hostile and odd upload files, built small from code at test time (tests/api/imports/test_hostile_files.py).

`workbook()` writes a minimal .xlsx by hand (not through a library that would refuse to write
something odd): inline or shared strings, an optional <dimension>, a prolog (a DOCTYPE with entities)
before the sheet's or the shared strings' root, parts left out. Values are XML-escaped unless given
as `Raw` (an entity reference, say).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from xml.sax.saxutils import escape

from shared.spreadsheet.rules import column_letter

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
# The first bytes of an OLE2 compound file: a legacy .xls, and also what Excel makes of an
# .xlsx with a password (the package encrypted inside an OLE container).
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504

BILLION_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)
EXTERNAL_ENTITY = '<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


class Raw(str):
    """A value written into the XML as it is (not escaped)."""


def _text(value: str) -> str:
    return value if isinstance(value, Raw) else escape(value)


def sheet_xml(
    rows: Sequence[Sequence[str]],
    *,
    shared: dict[str, int] | None = None,
    dimension: str | None = None,
    prolog: str = "",
) -> bytes:
    out = [f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<worksheet xmlns="{MAIN}">']
    if dimension:
        out.append(f'<dimension ref="{dimension}"/>')
    out.append("<sheetData>")
    for r, row in enumerate(rows, 1):
        out.append(f'<row r="{r}">')
        for c, value in enumerate(row):
            ref = f"{column_letter(c)}{r}"
            if shared is not None:
                out.append(f'<c r="{ref}" t="s"><v>{shared[value]}</v></c>')
            else:
                out.append(f'<c r="{ref}" t="inlineStr"><is><t>{_text(value)}</t></is></c>')
        out.append("</row>")
    out.append("</sheetData></worksheet>")
    return "".join(out).encode()


def workbook(
    rows: Sequence[Sequence[str]],
    *,
    shared_strings: bool = False,
    dimension: str | None = None,
    sheet_prolog: str = "",
    strings_prolog: str = "",
    leave_out: Sequence[str] = (),
) -> bytes:
    """A one-sheet .xlsx of `rows` (text cells)."""
    parts = workbook_parts(
        rows,
        shared_strings=shared_strings,
        dimension=dimension,
        sheet_prolog=sheet_prolog,
        strings_prolog=strings_prolog,
    )
    return zip_bytes({name: data for name, data in parts.items() if name not in leave_out})


def workbook_parts(
    rows: Sequence[Sequence[str]],
    *,
    shared_strings: bool = False,
    dimension: str | None = None,
    sheet_prolog: str = "",
    strings_prolog: str = "",
) -> dict[str, bytes]:
    shared: dict[str, int] | None = None
    parts: dict[str, bytes] = {}
    if shared_strings:
        shared = {}
        for row in rows:
            for value in row:
                shared.setdefault(value, len(shared))
        items = "".join(f"<si><t>{_text(value)}</t></si>" for value in shared)
        parts["xl/sharedStrings.xml"] = (
            f'<?xml version="1.0" encoding="UTF-8"?>{strings_prolog}'
            f'<sst xmlns="{MAIN}" count="{len(shared)}" uniqueCount="{len(shared)}">{items}</sst>'
        ).encode()
    parts["xl/worksheets/sheet1.xml"] = sheet_xml(rows, shared=shared, dimension=dimension, prolog=sheet_prolog)
    overrides = "".join(
        f'<Override PartName="/{name}" ContentType="application/xml"/>' for name in parts if name.endswith(".xml")
    )
    parts["[Content_Types].xml"] = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        f'spreadsheetml.sheet.main+xml"/>{overrides}</Types>'
    ).encode()
    parts["_rels/.rels"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{RELS}"><Relationship Id="rId1" '
        f'Type="{DOC_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ).encode()
    parts["xl/workbook.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{DOC_RELS}"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ).encode()
    strings_rel = (
        f'<Relationship Id="rId2" Type="{DOC_RELS}/sharedStrings" Target="sharedStrings.xml"/>' if shared else ""
    )
    parts["xl/_rels/workbook.xml.rels"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{RELS}"><Relationship Id="rId1" '
        f'Type="{DOC_RELS}/worksheet" Target="worksheets/sheet1.xml"/>{strings_rel}</Relationships>'
    ).encode()
    return parts


def zip_bytes(parts: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return out.getvalue()


def zip_bomb(inflated_mb: int) -> bytes:
    """A workbook whose sheet part inflates to `inflated_mb` MB (white space inside <sheetData>) from
    about 1 KB per MB, declared honestly in the zip directory (a bomb that lies about its size is cut
    off by the zip reader at the size it declares)."""
    parts = workbook_parts([["first_name"]])
    del parts["xl/worksheets/sheet1.xml"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
        with zf.open("xl/worksheets/sheet1.xml", "w") as fh:
            fh.write(f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>'.encode())
            chunk = b" " * (1024 * 1024)
            for _ in range(inflated_mb):
                fh.write(chunk)
            fh.write(b"</sheetData></worksheet>")
    return out.getvalue()

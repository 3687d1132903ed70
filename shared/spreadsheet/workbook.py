"""What every spreadsheet reader shares: the error it raises, the reader interface, and where a
workbook keeps its sheets (Transitional or Strict Open XML). Both shared.spreadsheet.readers and the xlsx stream
readers import this module; it imports neither.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from defusedxml import ElementTree as SafeET

_OFFICE_DOC_REL = "/officeDocument"


class WorkbookError(Exception):
    """The workbook could not be read; the message is meant for the person who uploaded it."""


@dataclass(frozen=True)
class SheetEntry:
    index: int  # 1-based, in the workbook's order
    name: str
    hidden: bool
    part: str | None  # the worksheet part, None when the workbook's relationships lack it


@dataclass(frozen=True)
class WorkbookLayout:
    workbook_part: str
    sheet_part: str
    sheet_name: str
    sheet_size: int
    shared_strings_size: int
    strict: bool
    sheets: tuple[SheetEntry, ...] = ()
    date1904: bool = False


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


def workbook_layout(zf: zipfile.ZipFile, sheet: str | None = None) -> WorkbookLayout:
    """Find the worksheets through the package relationships (Transitional or Strict) and pick one:
    `sheet` by name or 1-based number, else the first."""
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
    date1904 = any(_local(el.tag) == "workbookPr" and el.get("date1904") in ("1", "true") for el in root.iter())
    rels = {rid: (kind, target) for rid, kind, target in _read_rels(zf, _rels_path(workbook_part))}
    sheets: list[SheetEntry] = []
    for index, element in enumerate((el for el in root.iter() if _local(el.tag) == "sheet"), 1):
        rel_id = next((v for k, v in element.attrib.items() if _local(k) == "id"), None)
        part = _resolve(workbook_part, rels[rel_id][1]) if rel_id in rels else None
        hidden = element.get("state") in ("hidden", "veryHidden")
        sheets.append(SheetEntry(index, element.get("name", f"Sheet{index}"), hidden, part))
    if not sheets:
        raise WorkbookError("the workbook has no worksheets")
    chosen = pick_sheet(sheets, sheet)
    if chosen.part is None:
        raise WorkbookError(f"the workbook's sheet {chosen.name!r} has no worksheet part")
    if chosen.part not in names:
        raise WorkbookError(
            f"the workbook lists sheet {chosen.name!r} but its worksheet part ({chosen.part}) is missing"
        )
    shared = next((_resolve(workbook_part, t) for k, t in rels.values() if k.endswith("/sharedStrings")), None)
    return WorkbookLayout(
        workbook_part=workbook_part,
        sheet_part=chosen.part,
        sheet_name=chosen.name,
        sheet_size=zf.getinfo(chosen.part).file_size,
        shared_strings_size=zf.getinfo(shared).file_size if shared and shared in names else 0,
        strict=strict,
        sheets=tuple(sheets),
        date1904=date1904,
    )


class SheetNotFound(WorkbookError):
    """The `sheet` asked for is not in the workbook."""


def pick_sheet(sheets: list[SheetEntry], sheet: str | None) -> SheetEntry:
    if sheet is None:
        # The first sheet a person sees: a hidden one is no one's data, unless all are hidden.
        return next((entry for entry in sheets if not entry.hidden), sheets[0])
    for entry in sheets:
        if entry.name == sheet:
            return entry
    for entry in sheets:
        if entry.name.strip().lower() == sheet.strip().lower():
            return entry
    if sheet.strip().isdigit() and 1 <= int(sheet) <= len(sheets):
        return sheets[int(sheet) - 1]
    listed = ", ".join(repr(e.name) for e in sheets)
    raise SheetNotFound(f"the workbook has no sheet {sheet!r} (its sheets: {listed}; or give a number from 1)")


class SheetReader:
    """Iterates `(row_number, cells)`; `total_estimate` is the number of data rows (the header not
    counted) for progress, or None when it cannot be told honestly."""

    name = "base"
    total_estimate: int | None = None
    sheet_name: str | None = None  # the worksheet read (workbooks)
    encoding: str | None = None  # the text encoding read (CSV)
    # Whether a row with more or fewer values than the header is broken (CSV) or normal (a sheet).
    strict_width = False

    def rows(self) -> Iterator[tuple[int, list[Any]]]:  # pragma: no cover - interface
        raise NotImplementedError

    def uncached_formulas(self) -> tuple[list[tuple[int, int]], int]:
        """Formula cells read so far that hold no saved value (a file written by a program that does not
        calculate: they read as empty): (row, 0-based column) of the first ones, and how many there were."""
        return [], 0

    def close(self) -> None:
        pass

"""Column suggestions on the export-layout corpus, measured per matching strategy (issue 18: measure the
libraries against hand-written rules before choosing).

    .venv/bin/python -m tests.bench.header_corpus

Each strategy previews every file of tests/data/exports and is scored against expected.json
(right / wrong / missed columns), and timed (suggestions for all 14 files, median of 20 runs):

* seed: the rules before issue 18 (fold case and spaces, the field names and their aliases, difflib
  closest match >= 0.75; value rules for email, web, postcode, phone);
* hand fold: shared.spreadsheet.headers with accents stripped by NFKD instead of unidecode, no fuzzy match;
* + unidecode: transliteration by unidecode (ß → ss), no fuzzy match;
* + rapidfuzz: NFKD folding and rapidfuzz for headers no rule names;
* service: unidecode and rapidfuzz (what the service runs).
"""

from __future__ import annotations

import difflib
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared.customers.fields import ALIASES, CUSTOMER_FIELDS
from shared.spreadsheet.headers import _nfkd, suggest_columns
from shared.spreadsheet.readers import read_head
from shared.spreadsheet.rules import fold_header, normalize_cell, row_is_empty
from tests.support.header_corpus import EXPORTS, FileScore, expectations, score, table

Suggest = Callable[[Sequence[str | None], list[list[str]]], list[str | None]]

_SEED_NAMES = {**{name: name for name in CUSTOMER_FIELDS}, **ALIASES}
_SEED_VALUES = (
    ("email", re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")),
    ("web", re.compile(r"^(https?://|www\.)\S+$|^[\w-]+(\.[\w-]+)+/?\S*$", re.I)),
    ("postal", re.compile(r"^([A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|\d{5}(-\d{4})?|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{4})$", re.I)),
    ("phone", re.compile(r"^\+?[\d\s\-().]{7,20}$")),
)


def _seed(headers: Sequence[str | None], values: list[list[str]]) -> list[str | None]:
    picked: list[tuple[str | None, float]] = []
    for text, column in zip(headers, values, strict=True):
        folded = fold_header(text)
        target, confidence = None, 0.0
        if folded in CUSTOMER_FIELDS:
            target, confidence = folded, 1.0
        elif folded in ALIASES:
            target, confidence = ALIASES[folded], 0.95
        elif folded and (close := difflib.get_close_matches(folded, list(_SEED_NAMES), n=1, cutoff=0.75)):
            target = _SEED_NAMES[close[0]]
            confidence = 0.9 * difflib.SequenceMatcher(None, folded, close[0]).ratio()
        elif column:
            for field, pattern in _SEED_VALUES:
                share = sum(1 for v in column if pattern.match(v)) / len(column)
                if share >= 0.8:
                    target, confidence = field, 0.8 * share
                    break
        picked.append((target, confidence))
    best: dict[str, tuple[float, int]] = {}
    for index, (target, confidence) in enumerate(picked):
        if target is not None and (target not in best or confidence > best[target][0]):
            best[target] = (confidence, index)
    winners = {index for _, index in best.values()}
    return [target if index in winners else None for index, (target, _) in enumerate(picked)]


def _engine(fuzzy: bool, transliterate: Callable[[str], str] | None) -> Suggest:
    def suggest(headers: Sequence[str | None], values: list[list[str]]) -> list[str | None]:
        kwargs: dict[str, Any] = {"fuzzy": fuzzy}
        if transliterate is not None:
            kwargs["transliterate"] = transliterate
        return [s.target for s in suggest_columns(headers, values, **kwargs)]

    return suggest


STRATEGIES: dict[str, Suggest] = {
    "seed (aliases + difflib)": _seed,
    "hand fold (NFKD), no fuzzy": _engine(False, _nfkd),
    "+ unidecode, no fuzzy": _engine(False, None),
    "hand fold (NFKD) + rapidfuzz": _engine(True, _nfkd),
    "service: unidecode + rapidfuzz": _engine(True, None),
}


def _load() -> list[tuple[str, dict[str, Any], list[str | None], list[list[str]]]]:
    """Each file's header (at the expected row) and sample values, read once."""
    files = []
    for name, mapping in expectations().items():
        path: Path = EXPORTS / name
        _, head = read_head(path, "xlsx" if path.suffix == ".xlsx" else "csv")
        row = mapping.get("header_row", 1)
        header = next(cells for number, cells in head if number == row)
        data = [cells for number, cells in head if number > row and not row_is_empty(cells)]
        width = len(header)
        headers = [normalize_cell(cell) for cell in header]
        values = [[v for r in data if i < len(r) and (v := normalize_cell(r[i])) is not None] for i in range(width)]
        files.append((name, mapping, headers, values))
    return files


# Headers as people mistype them (not in the corpus): what fuzzy matching is for; and headers that must
# stay unmapped, to see it does not guess wildly.
TYPOS = {
    "Frist Name": "first_name",
    "Last Nmae": "last_name",
    "Emial": "email",
    "E-Mial Address": "email",
    "Adress": "address",
    "Stret Address": "address",
    "Postocde": "postal",
    "Telephon": "phone",
    "Webiste": "web",
    "Compnay": "company_name",
    "Contry": "country",
    "Provence": "county",
}
NOT_FIELDS = [
    "Card Last4",
    "Total Spend",
    "Lead Source",
    "Email Opt Out",
    "Phone Type",
    "Account ID",
    "IP Address",
    "Created (UTC)",
    "Organization 1 - Type",
    "Name Suffix",
    "Record ID",
    "Company Domain Name",
]


def _typos(suggest: Suggest) -> tuple[int, int]:
    headers: list[str | None] = [*TYPOS, *NOT_FIELDS]
    found = [suggest([header], [[]])[0] for header in headers]
    right = sum(1 for header, target in zip(TYPOS, found, strict=False) if TYPOS[header] == target)
    wrong = sum(
        1 for header, target in zip(headers, found, strict=True) if target and TYPOS.get(header or "") != target
    )
    return right, wrong


def main() -> None:
    files = _load()
    rows = []
    for label, suggest in STRATEGIES.items():
        results: list[FileScore] = [score(n, h, suggest(h, v), m) for n, m, h, v in files]
        times = []
        for _ in range(20):
            start = time.perf_counter()
            for _, _, headers, values in files:
                suggest(headers, values)
            times.append(time.perf_counter() - start)
        right = sum(r.right for r in results)
        wrong = sum(len(r.wrong) for r in results)
        missed = sum(len(r.missed) for r in results)
        rows.append((label, right, wrong, missed, statistics.median(times) * 1000, *_typos(suggest)))
        if label.startswith("service"):
            print(table(results))
    expected = rows[-1][1] + rows[-1][3]
    print(f"\n{expected} columns to map in {len(files)} files")
    print(
        f"| strategy | right | wrong | missed | ms for all files | {len(TYPOS)} typos right "
        f"| wrong of typos + {len(NOT_FIELDS)} non-fields |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, right, wrong, missed, ms, typo_right, typo_wrong in rows:
        print(f"| {label} | {right} | {wrong} | {missed} | {ms:.1f} | {typo_right} | {typo_wrong} |")


if __name__ == "__main__":
    main()

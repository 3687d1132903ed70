"""`full_name`: one cell holding a whole name, split into first_name and last_name.

A small rule set rather than nameparser: on the 46 names of tests/unit/spreadsheet/test_names.py (12 of them
held out while the rules were written) both split 44 as expected, missing the same two, and these rules take
about 3 µs a name where nameparser takes about 600 µs (a million-row import would spend ten minutes in it);
`python -m tests.bench.name_split_bench` measures both. The rules:

- "Last, First" (a comma, and what follows it is not a suffix like "Jr.") is reversed;
- titles in front ("Dr.", "Mr", "Prof.", "Frau", ...) are dropped;
- suffixes at the end ("Jr.", "III", "PhD", ...) stay with the last name;
- the last name starts at the first particle after the first word ("van der Berg", "de la Cruz",
  "von der Leyen"), else it is the last word; the words before it are the first name;
- a single word is a first name.
"""

from __future__ import annotations

import re

_TITLES = frozenset(
    "mr mrs ms miss mx dr prof sir dame herr frau fr hr m mme mlle sr sra srta sig dott ing mag rev med".split()
)
_SUFFIXES = frozenset("jr sr ii iii iv v phd md msc bsc mba esq dds".split())
_PARTICLES = frozenset(
    "van von der den de del della dei degli di da das dos du la le lo ten ter te zu bin binti ibn al el y".split()
)
_SPACES = re.compile(r"\s+")


def _bare(word: str) -> str:
    return word.strip(".,").lower()


def split_full_name(text: str | None) -> tuple[str | None, str | None]:
    """(first_name, last_name) of a whole name; (None, None) for no name."""
    if text is None:
        return None, None
    text = _SPACES.sub(" ", text).strip()
    if not text:
        return None, None
    if "," in text:
        before, _, after = text.partition(",")
        after_words = after.split()
        if after_words and not all(_bare(word) in _SUFFIXES for word in after_words):
            # "Lovelace, Ada": the family name first.
            first, last = split_full_name(after)
            given = " ".join(part for part in (first, last) if part)
            return given or None, before.strip() or None
        text = f"{before} {after}".strip()
    words = text.split(" ")
    while len(words) > 1 and _bare(words[0]) in _TITLES:
        words = words[1:]
    suffixes: list[str] = []
    while len(words) > 2 and _bare(words[-1]) in _SUFFIXES:
        suffixes.insert(0, words.pop())
    if len(words) == 1:
        return words[0], " ".join(suffixes) or None
    start = len(words) - 1
    for index in range(1, len(words) - 1):
        if _bare(words[index]) in _PARTICLES:
            start = index
            break
    return " ".join(words[:start]), " ".join(words[start:] + suffixes)

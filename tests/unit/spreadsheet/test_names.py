"""full_name split into first and last name (shared/spreadsheet/names.py), on 46 names: 34 written with the rules
and 12 held out (added after the rules were written; docs/importing.md gives the measurement against nameparser,
tests/bench/name_split_bench.py runs it)."""

from __future__ import annotations

import pytest

from shared.spreadsheet.names import split_full_name

# (the whole name as a file holds it, the first_name expected, the last_name expected)
NAMES: list[tuple[str, str | None, str | None]] = [
    ("Ada Lovelace", "Ada", "Lovelace"),
    ("Lovelace, Ada", "Ada", "Lovelace"),
    ("Ada", "Ada", None),
    ("ada lovelace", "ada", "lovelace"),
    ("Ludwig van Beethoven", "Ludwig", "van Beethoven"),
    ("Vincent van Gogh", "Vincent", "van Gogh"),
    ("Jan van der Berg", "Jan", "van der Berg"),
    ("Ursula von der Leyen", "Ursula", "von der Leyen"),
    ("Leonardo da Vinci", "Leonardo", "da Vinci"),
    ("Charles de Gaulle", "Charles", "de Gaulle"),
    ("Jean-Claude Van Damme", "Jean-Claude", "Van Damme"),
    ("Anna Maria Schmidt", "Anna Maria", "Schmidt"),
    ("John Ronald Reuel Tolkien", "John Ronald Reuel", "Tolkien"),
    ("Dr. Ada Lovelace", "Ada", "Lovelace"),
    ("Mr John Smith", "John", "Smith"),
    ("Prof. Dr. Hans Müller", "Hans", "Müller"),
    ("Martin Luther King Jr.", "Martin Luther", "King Jr."),
    ("King Jr., Martin Luther", "Martin Luther", "King Jr."),
    ("Smith, John", "John", "Smith"),
    ("van Gogh, Vincent", "Vincent", "van Gogh"),
    ("José García", "José", "García"),
    ("Søren Kierkegaard", "Søren", "Kierkegaard"),
    ("Mary-Jane O'Neil", "Mary-Jane", "O'Neil"),
    ("Ronald McDonald", "Ronald", "McDonald"),
    ("Cher", "Cher", None),
    ("  Grace   Hopper  ", "Grace", "Hopper"),
    ("Henry Ford III", "Henry", "Ford III"),
    ("Juan de la Cruz", "Juan", "de la Cruz"),
    ("Abdul bin Hamid", "Abdul", "bin Hamid"),
    ("Pieter ter Horst", "Pieter", "ter Horst"),
    ("John Smith PhD", "John", "Smith PhD"),
    ("Frau Anna Weber", "Anna", "Weber"),
    ("Yoko Ono", "Yoko", "Ono"),
    ("Lee", "Lee", None),
]
HELD_OUT: list[tuple[str, str | None, str | None]] = [
    ("Dr. med. Hans Meier", "Hans", "Meier"),
    ("E. E. Cummings", "E. E.", "Cummings"),
    ("Jean de La Fontaine", "Jean", "de La Fontaine"),
    ("Maria de los Angeles Ruiz", "Maria", "de los Angeles Ruiz"),
    ("Sean O'Casey", "Sean", "O'Casey"),
    ("Bjorn Borg", "Bjorn", "Borg"),
    ("Mrs. Jane Doe-Smith", "Jane", "Doe-Smith"),
    ("Doe-Smith, Jane", "Jane", "Doe-Smith"),
    ("Gabriel García Márquez", "Gabriel", "García Márquez"),
    ("Ada Lovelace (Finance)", "Ada", "Lovelace (Finance)"),
    ("DE LA CRUZ, JUAN", "JUAN", "DE LA CRUZ"),
    ("Mohammed al-Khwarizmi", "Mohammed", "al-Khwarizmi"),
]
# Held-out names the rules still split otherwise (nameparser misses both too): a Spanish double surname reads
# as a middle name, a parenthesised note as the last name.
KNOWN_MISSES = {"Gabriel García Márquez", "Ada Lovelace (Finance)"}


@pytest.mark.parametrize(("text", "first", "last"), NAMES + HELD_OUT, ids=lambda v: str(v))
def test_split(text: str, first: str | None, last: str | None) -> None:
    if text in KNOWN_MISSES:
        assert split_full_name(text) != (first, last)
    else:
        assert split_full_name(text) == (first, last)


def test_no_name() -> None:
    assert split_full_name(None) == (None, None)
    assert split_full_name("   ") == (None, None)

"""Cells as tools write them, cleaned (shared.spreadsheet.rules.normalize_cell)."""

from __future__ import annotations

import pytest

from shared.spreadsheet.rules import excel_safe, from_excel_safe, normalize_cell


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        # Excel's text prefix, as Shopify writes postcodes and phones
        ("'05401", "05401"),
        ("'+44 20 7946 0018", "+44 20 7946 0018"),
        ("'M5C 1N7", "M5C 1N7"),
        ("'7023345467628", "7023345467628"),
        ("'(512) 757-6000", "(512) 757-6000"),
        ("  '02108 ", "02108"),
        # an apostrophe that belongs to the value stays
        ("'s-Hertogenbosch", "'s-Hertogenbosch"),
        ("'t Hooft", "'t Hooft"),
        ("O'Brien", "O'Brien"),
        ("'", "'"),
        # several values in one cell (Google Contacts): the first
        ("+44 20 7946 0018 ::: +44 7700 900123", "+44 20 7946 0018"),
        ("alan@example.org ::: alan.t@example.net", "alan@example.org"),
        ("* myContacts ::: Navy", "* myContacts"),
        ("a:::b", "a:::b"),  # only the separator Google writes, with its spaces
        # a phone with an extension is one value
        ("(202) 555-0111 ext. 42", "(202) 555-0111 ext. 42"),
    ],
)
def test_cells_are_cleaned(raw: str, clean: str) -> None:
    assert normalize_cell(raw) == clean


@pytest.mark.parametrize("value", ["=1+1", "+44 20", "-5", "@home", "05401", "plain"])
def test_excel_safe_values_round_trip(value: str) -> None:
    assert from_excel_safe(excel_safe(value)) == value

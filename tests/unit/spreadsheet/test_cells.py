"""Cells as tools write them, cleaned (shared.spreadsheet.rules.normalize_cell)."""

from __future__ import annotations

import pytest

from shared.spreadsheet.evidence import normalize_phone
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


@pytest.mark.parametrize(
    ("raw", "region", "written"),
    [
        ("020 7946 0018", "GB", "+44 20 7946 0018"),
        ("0711 5550123", "DE", "+49 711 5550123"),
        ("+1 (425) 555-0100", "GB", "+1 425-555-0100"),  # a country code wins over the region
        ("(202) 555-0111 ext. 42", "US", "+1 202-555-0111 ext. 42"),
        ("not a phone", "GB", "not a phone"),
        ("12", "GB", "12"),  # not a possible number: as written
    ],
)
def test_phones_in_international_format(raw: str, region: str, written: str) -> None:
    assert normalize_phone(raw, region, 50) == written


def test_a_normalised_phone_that_would_not_fit_stays_as_written() -> None:
    assert normalize_phone("020 7946 0018", "GB", 12) == "020 7946 0018"

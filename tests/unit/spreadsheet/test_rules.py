"""Header and cell rules (pure functions)."""

import datetime as dt

import pytest

from shared.spreadsheet.rules import HeaderError, extract_row, map_header, normalize_cell, row_is_empty
from tests.support.workbooks import HEADER


def test_header_matches_case_spaces_dashes_and_order() -> None:
    cells = [
        "EMAIL",
        " First Name ",
        "last-name",
        "Company Name",
        "address",
        "City",
        "county",
        "postal",
        "PHONE",
        "web",
    ]
    header = map_header(cells)
    assert header.positions["email"] == 0
    assert header.positions["first_name"] == 1
    assert header.positions["last_name"] == 2
    assert header.warnings == []


def test_aliases_and_unknown_columns() -> None:
    cells = [
        "first_name",
        "last_name",
        "company",
        "address",
        "city",
        "county",
        "postcode",
        "phone1",
        "phone2",
        "email",
        "web",
        "notes",
    ]
    header = map_header(cells)
    assert header.positions["company_name"] == 2
    assert header.positions["postal"] == 6
    assert header.positions["phone"] == 7
    assert header.warnings == ["ignored unknown column(s): phone2, notes"]


def test_exact_name_wins_over_alias() -> None:
    cells = [*HEADER[:7], "phone1", "phone", "email", "web"]
    header = map_header(cells)
    assert header.positions["phone"] == 8
    assert "phone1" in header.warnings[0]


def test_only_the_email_column_is_required() -> None:
    # Defect 2 of issue 18: a file of first_name, last_name, email maps.
    assert map_header(["first_name", "last_name", "email"]).positions == {"first_name": 0, "last_name": 1, "email": 2}
    with pytest.raises(HeaderError) as info:
        map_header(["first_name", "last_name", "phone"])
    message = str(info.value)
    assert "email" in message and "company_name" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("  Leeds  ", "Leeds"),
        ("   ", None),
        (1944369967.0, "1944369967"),
        (12345, "12345"),
        (1.5, "1.5"),
        (dt.datetime(2024, 3, 1), "2024-03-01"),
        (dt.datetime(2024, 3, 1, 12, 30), "2024-03-01T12:30:00"),
        (dt.date(2024, 3, 1), "2024-03-01"),
        (True, "TRUE"),
    ],
)
def test_normalize_cell(value: object, expected: str | None) -> None:
    assert normalize_cell(value) == expected


def test_empty_rows_and_short_rows() -> None:
    assert row_is_empty([None, "", "  "])
    assert not row_is_empty([None, 0])
    header = map_header(HEADER)
    row = extract_row(["Ann"], header)
    assert row["first_name"] == "Ann"
    assert row["email"] is None

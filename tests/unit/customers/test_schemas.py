"""The row validator must agree with RowSchema.load on every row: same data, same messages."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from marshmallow import ValidationError

from shared.customers.schemas import CustomerSchema, RowSchema, RowValidator, flatten_errors
from tests.support.workbooks import HEADER, customer_row


def outcome(fn: Any, row: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", fn(row)
    except ValidationError as exc:
        return "error", exc.messages


def random_value(rng: random.Random, name: str) -> str | None:
    choice = rng.random()
    if choice < 0.1:
        return None
    if choice < 0.15:
        return "   "
    if choice < 0.2:
        return " " + "x" * rng.choice([19, 20, 21, 99, 100, 101, 255, 256]) + " "
    if name == "email":
        local = "".join(rng.choices(string.ascii_letters + "._+-", k=rng.randint(0, 12)))
        domain = rng.choice(["example.com", "EXAMPLE.co.uk", "localhost", "", "a..b", "münchen.de", "x.y"])
        return rng.choice([f"{local}@{domain}", local, f"{local}@@{domain}", f" {local.upper()}@{domain} "])
    return "".join(rng.choices(string.printable, k=rng.randint(0, 30)))


def test_row_validator_agrees_with_schema_load() -> None:
    rng = random.Random(20261124)
    schema = RowSchema()
    fast = RowValidator(schema)
    rows = [dict(zip(HEADER, customer_row(i), strict=True)) for i in range(200)]
    for _ in range(3000):
        row = dict(zip(HEADER, customer_row(rng.randint(0, 10**6)), strict=True))
        for name in rng.sample(HEADER, rng.randint(0, 4)):
            row[name] = random_value(rng, name)
        rows.append(row)
    seen = {"ok": 0, "error": 0}
    for row in rows:
        expected = outcome(schema.load, dict(row))
        assert outcome(fast, dict(row)) == expected, row
        seen[expected[0]] += 1
    assert seen["ok"] > 500 and seen["error"] > 500  # both paths really exercised


def test_messages_name_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        RowValidator()({"email": "x", "first_name": None, "last_name": None, "web": "w" * 256})
    # Every problem at once.
    assert {f for f, _ in flatten_errors(info.value.messages)} == {"email", "web"}


def test_only_the_email_is_required() -> None:
    """DESIGN "Spreadsheet rules": an email-only contact (common in HubSpot) is a customer."""
    assert RowValidator()({"email": "A@B.co", "first_name": "  ", "last_name": None})["email"] == "a@b.co"
    assert CustomerSchema().load({"email": "a@b.co"})["email"] == "a@b.co"
    with pytest.raises(ValidationError) as info:
        RowValidator()({"first_name": "Ada"})
    assert flatten_errors(info.value.messages) == [("email", "Email is required.")]


def test_customer_schema_lowercases_email_and_rejects_unknown_fields() -> None:
    loaded = CustomerSchema().load({"email": " Ada@Example.COM ", "first_name": "Ada"})
    assert loaded["email"] == "ada@example.com"
    with pytest.raises(ValidationError) as info:
        CustomerSchema().load({"email": "a@b.co", "first_name": "A", "age": 3})
    assert "age" in info.value.messages

"""Marshmallow schemas: one customer schema serves the import, POST, PUT and PATCH."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

FIELD_LENGTHS: dict[str, int] = {
    "first_name": 100,
    "last_name": 100,
    "company_name": 100,
    "address": 255,
    "city": 100,
    "county": 100,
    "postal": 20,
    "phone": 20,
    "email": 100,
    "web": 100,
}


def _text(name: str) -> fields.String:
    return fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=FIELD_LENGTHS[name], error="Longer than {max} characters."),
    )


class CustomerSchema(Schema):
    """A whole customer as a client or a spreadsheet row gives it."""

    class Meta:
        unknown = RAISE

    first_name = _text("first_name")
    last_name = _text("last_name")
    company_name = _text("company_name")
    address = _text("address")
    city = _text("city")
    county = _text("county")
    postal = _text("postal")
    phone = _text("phone")
    email = fields.Email(
        required=True,
        validate=validate.Length(max=FIELD_LENGTHS["email"], error="Longer than {max} characters."),
        error_messages={"required": "Email is required.", "null": "Email is required."},
    )
    web = _text("web")

    @pre_load
    def _clean(self, data: Any, **_: Any) -> Any:
        # Blank strings mean "no value"; emails are stored lower-case (the natural key).
        if not isinstance(data, dict):
            return data
        cleaned = {}
        for key, value in data.items():
            if isinstance(value, str):
                value = value.strip() or None
                if key == "email" and value is not None:
                    value = value.lower()
            cleaned[key] = value
        return cleaned

    @validates_schema
    def _needs_a_name(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        if partial:
            return
        if not data.get("first_name") and not data.get("last_name"):
            raise ValidationError("first_name or last_name is required.", "first_name")


class RowSchema(CustomerSchema):
    """A spreadsheet row: cells are already text, and unknown columns were dropped by the header map."""

    class Meta:
        unknown = EXCLUDE


customer_schema = CustomerSchema()
row_schema = RowSchema()


def flatten_errors(messages: Any) -> list[tuple[str | None, str]]:
    """marshmallow's {field: [msg, ...]} as (field, message) pairs; `_schema` becomes None."""
    pairs: list[tuple[str | None, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            column = None if key == "_schema" else str(key)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict | list):
                    for _, msg in flatten_errors(item):
                        pairs.append((column, msg))
                else:
                    pairs.append((column, str(item)))
    elif isinstance(messages, list):
        pairs.extend((None, str(m)) for m in messages)
    else:
        pairs.append((None, str(messages)))
    return pairs

"""Marshmallow schemas: one customer schema serves the import, POST, PUT and PATCH."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from shared.customers.fields import (
    ATTRIBUTES_DESCRIPTION,
    FIELD_LENGTHS,
    FIELDS,
    MAX_ATTRIBUTE_NAME,
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
)
from shared.spreadsheet.rules import normalize_cell

__all__ = ["FIELD_LENGTHS", "CustomerSchema", "RowSchema", "RowValidator"]


class Text(fields.String):
    """A text value. A number is taken as its text, the way an import reads a numeric cell (whole
    numbers without `.0`), so a client may send a phone or a postcode as a number."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = normalize_cell(value)
        return super()._deserialize(value, attr, data, **kwargs)


def _field(name: str) -> fields.Field:
    """A customer field as shared.customers.fields declares it: optional text, or the required email."""
    declared = next(field for field in FIELDS if field.name == name)
    length = validate.Length(max=declared.max_length, error="Longer than {max} characters.")
    metadata = {"description": declared.description}
    if name == "email":
        return fields.Email(
            required=True,
            validate=length,
            error_messages={"required": "Email is required.", "null": "Email is required."},
            metadata=metadata,
        )
    if declared.required:  # pragma: no cover - only the email is required today
        return Text(required=True, validate=length, metadata=metadata)
    return Text(allow_none=True, load_default=None, validate=length, metadata=metadata)


# The fields, in shared.customers.fields' order, as the base every customer schema declares them from.
_CustomerFields = Schema.from_dict({field.name: _field(field.name) for field in FIELDS}, name="CustomerFields")


class CustomerSchema(_CustomerFields):  # type: ignore[valid-type,misc]
    """A whole customer as a client or a spreadsheet row gives it."""

    class Meta:
        unknown = RAISE

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


# Fields the API returns that a client may send back unchanged (GET, edit, PUT).
READ_ONLY_FIELDS = ("id", "version", "created_at", "updated_at")


def attributes_field() -> fields.Dict:
    """`attributes` as a client sends it: an object of name -> text (null removes a name in a PATCH)."""
    return fields.Dict(
        keys=fields.String(
            validate=validate.Length(min=1, max=MAX_ATTRIBUTE_NAME, error="A name of 1 to {max} characters.")
        ),
        values=Text(
            allow_none=True,
            validate=validate.Length(max=MAX_ATTRIBUTE_VALUE, error="Longer than {max} characters."),
        ),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=MAX_ATTRIBUTES, error="At most {max} attributes."),
        metadata={"description": ATTRIBUTES_DESCRIPTION},
    )


_SENT_BACK = {"readOnly": True}


class CustomerInSchema(CustomerSchema):
    """A customer as a client sends it over HTTP: the fields and its attributes, plus the read-only
    ones it may send back as GET returned them (`id` and `version` are checked against the resource,
    the timestamps ignored)."""

    attributes = attributes_field()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _raw_lengths(self, data: Any, original: Any, **_: Any) -> None:
        """A value longer than its field as sent is refused, even when trimming its spaces would make it
        fit: the OpenAPI document's maxLength is about the JSON a client sends."""
        if isinstance(original, dict):
            too_long = {
                name: [f"Longer than {FIELD_LENGTHS[name]} characters."]
                for name, value in original.items()
                if isinstance(value, str) and name in FIELD_LENGTHS and len(value) > FIELD_LENGTHS[name]
            }
            if too_long:
                raise ValidationError(too_long)

    # readOnly in the OpenAPI document: what GET returned, which a client may send back but never sets.
    id = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1), metadata=_SENT_BACK
    )
    version = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1), metadata=_SENT_BACK
    )
    created_at = fields.String(allow_none=True, load_default=None, metadata=_SENT_BACK)
    updated_at = fields.String(allow_none=True, load_default=None, metadata=_SENT_BACK)


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


class RowValidator:
    """Validates spreadsheet rows by RowSchema's own rules at a fraction of `Schema.load`'s cost.

    `Schema.load` costs ~25 µs a row, more than parsing the row. This runs the same pre-load cleaning,
    the fields' own validators directly; any row that one of them rejects
    goes through `RowSchema.load`, so accepted data and error messages are always the schema's.
    """

    def __init__(self, schema: RowSchema | None = None) -> None:
        self.schema = schema or RowSchema()
        self.names = tuple(self.schema.fields)
        plan = []
        for name, field in self.schema.fields.items():
            max_length: int | None = None
            others = []
            for validator in field.validators:
                if isinstance(validator, validate.Length) and validator.min is None and validator.equal is None:
                    max_length = validator.max
                else:
                    others.append(validator)
            plan.append((name, field.required, bool(field.allow_none), max_length, tuple(others)))
        self._plan = tuple(plan)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        """The loaded row, or ValidationError exactly as RowSchema.load raises it."""
        cleaned = self.schema._clean(data)
        for name, required, allow_none, max_length, others in self._plan:
            value = cleaned.get(name)
            if value is None:
                if required or not allow_none:
                    return self._load(data)
                continue
            if type(value) is not str or (max_length is not None and len(value) > max_length):
                return self._load(data)
            try:
                for validator in others:
                    validator(value)
            except ValidationError:
                return self._load(data)
        return {name: cleaned.get(name) for name in self.names}

    def _load(self, data: dict[str, Any]) -> dict[str, Any]:
        loaded: dict[str, Any] = self.schema.load(data)
        return loaded

"""The import options: what a client may say about a file (mapping, header row, sheet, encoding) and how to
import it (mode, blank cells, match on), declared once.

Each option is one field of `ImportOptions`, declared with `option(...)`: its marshmallow field loads it
(from a JSON body, or from the text of a form field or query parameter), checks it and documents it
(description, choices, `x-choices` for the web page). The schemas the gateway loads requests with and the
API document shows are made from those fields (UploadOptionsSchema, StartOptionsSchema,
PreviewOptionsSchema), so adding an option is one declaration here. The web page and the CLI read the
choices from the API document.

`mapping` maps a customer field to a source column: the header text when the file has a header row, a
column letter (`A`, `B`, ...) or 1-based number, or a list of columns joined in order (", " for the
address, a space otherwise). Two more targets: `full_name` (one column split into first_name and
last_name) and `attributes.<name>` (a column kept on the customer under that name). A field mapped to
null is left out. (shared.spreadsheet.mapping finds the columns.)
"""

# ruff: noqa: RUF009 (ImportOptions' defaults are option(): a dataclasses.field carrying the marshmallow field)
from __future__ import annotations

import codecs
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from shared.customers.fields import (
    ATTRIBUTE_PREFIX,
    CUSTOMER_FIELDS,
    FULL_NAME,
    MAX_ATTRIBUTE_NAME,
    MAX_ATTRIBUTES,
    REQUIRED_FIELDS,
)

MAX_HEADER_ROW = 1_000_000
MAX_JOINED = 10
MAX_COLUMN = 16384  # the widest sheet (XFD)
SHEET_DESCRIPTION = (
    "A worksheet's name or 1-based number. Absent: the visible sheet that fits a customer table best "
    "(the preview lists them all, hidden ones marked)."
)

# A mapping's value: a column (header text, letter or 1-based number, as text), several joined, or None
# (the field is left out).
ColumnRef = str | list[str] | None
Mapping_ = dict[str, ColumnRef]
Errors = list[tuple[str, str]]


class OptionError(ValueError):
    """An option is malformed or does not fit the file: (field, message) pairs; a 422."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


def mapping_targets() -> str:
    return ", ".join([*CUSTOMER_FIELDS, FULL_NAME, ATTRIBUTE_PREFIX + "<name>"])


# The import modes (DESIGN "Jobs"): each option's title and choices (the default first), each with a
# short label and what it does.
MODE_OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "mode": {
        "upsert": ("Add new, update existing", "add new customers and update the ones already stored"),
        "insert": ("Only add new customers", "the customers already stored are skipped, never changed"),
        "update": ("Only update existing customers", "new customers are skipped, never added"),
    },
    "blank_cells": {
        "keep": ("Keep stored values", "an empty cell leaves the stored value as it is"),
        "clear": ("Erase stored values", "an empty cell erases the stored value"),
    },
    "match_on": {
        "email": ("By email", "a row updates the customer holding its email"),
        "id": (
            "By the id column",
            "the file's id column (as an export writes it) names the customer, whose email may change; an id"
            " that does not exist is a row error",
        ),
    },
}
MODE_TITLES: dict[str, str] = {
    "mode": "Customers to add or update",
    "blank_cells": "Empty cells",
    "match_on": "Find each row's customer by",
}


def mode_default(name: str) -> str:
    return next(iter(MODE_OPTIONS[name]))


def mode_description(name: str) -> str:
    """The option's choices as one sentence, the default marked (the API document's description)."""
    choices = [
        f"{value}{' (default)' if i == 0 else ''}: {text}"
        for i, (value, (_label, text)) in enumerate(MODE_OPTIONS[name].items())
    ]
    extra = " Skipped rows count in rows_skipped." if name == "mode" else ""
    return "; ".join(choices) + "." + extra


# -- how each option is read (the messages name the option; a mapping's, the field) ----------------------


def _parse_mapping(value: Any, errors: Errors) -> Mapping_ | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            errors.append(("mapping", 'A JSON object of customer field to column, like {"phone": "Phone 1"}.'))
            return None
    if not isinstance(value, dict):
        errors.append(("mapping", 'A JSON object of customer field to column, like {"phone": "Phone 1"}.'))
        return None
    mapping: Mapping_ = {}
    attributes = 0
    for field, column in value.items():
        where = f"mapping.{field}"
        if field.startswith(ATTRIBUTE_PREFIX):
            name = field[len(ATTRIBUTE_PREFIX) :]
            attributes += 1
            if not name.strip() or len(name) > MAX_ATTRIBUTE_NAME or name != name.strip():
                errors.append((where, f"An attribute's name: 1 to {MAX_ATTRIBUTE_NAME} characters, no outer spaces."))
                continue
            if attributes > MAX_ATTRIBUTES:
                errors.append((where, f"At most {MAX_ATTRIBUTES} attributes."))
                continue
        elif field not in CUSTOMER_FIELDS and field != FULL_NAME:
            errors.append((where, f"Not a customer field (one of: {mapping_targets()})."))
            continue
        if column is None:
            mapping[field] = None
        elif isinstance(column, list):
            if field in REQUIRED_FIELDS or field == FULL_NAME or field.startswith(ATTRIBUTE_PREFIX):
                errors.append((where, "One column, not a list."))
                continue
            refs = [_column_value(item) for item in column]
            if not 1 <= len(refs) <= MAX_JOINED or any(ref is None for ref in refs):
                errors.append((where, f"A list of 1 to {MAX_JOINED} columns (header texts, letters or numbers)."))
                continue
            mapping[field] = [ref for ref in refs if ref is not None]
        elif (ref := _column_value(column)) is not None:
            mapping[field] = ref
        else:
            errors.append((where, "A header text, a column letter, a 1-based column number, a list of them, or null."))
    return mapping


def _column_value(column: Any) -> str | None:
    if isinstance(column, int) and not isinstance(column, bool) and 1 <= column <= MAX_COLUMN:
        return str(column)
    if isinstance(column, str) and column.strip() and len(column) <= 255:
        return column.strip()
    return None


def _parse_header_row(value: Any, errors: Errors) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not 0 <= value <= MAX_HEADER_ROW:
        errors.append(("header_row", f"A row number from 1 to {MAX_HEADER_ROW}, or 0 when the file has no header."))
        return None
    return value


def _parse_sheet(value: Any, errors: Errors) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        errors.append(("sheet", "A sheet name or its 1-based number."))
        return None
    return value


def _parse_encoding(value: Any, errors: Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 40:
        errors.append(("encoding", "A text encoding, like utf-8, cp1252 or utf-16."))
        return None
    try:
        info = codecs.lookup(value.strip())
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        errors.append(("encoding", f"Unknown encoding {value!r}: try utf-8, cp1252, latin-1 or utf-16."))
        return None
    if not getattr(info, "_is_text_encoding", True):
        errors.append(("encoding", f"{value!r} is not a text encoding."))
        return None
    return info.name


def _parse_choice(name: str, value: Any, errors: Errors) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() in MODE_OPTIONS[name]:
        return value.strip().lower()
    errors.append((name, f"One of: {', '.join(MODE_OPTIONS[name])}."))
    return None


class _Read:
    """A field whose value one of the parsers above reads (a JSON value or a form's text alike); its
    errors keep their names (`mapping.phone` under `mapping`)."""

    def parse(self, value: Any, errors: Errors) -> Any:
        raise NotImplementedError

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        errors: Errors = []
        read = self.parse(value, errors)
        if errors:
            nested: dict[str, Any] = {}
            for name, message in errors:
                _, dot, rest = name.partition(".")
                nested.setdefault(rest if dot else "_schema", []).append(message)
            raise ValidationError(nested.pop("_schema") if list(nested) == ["_schema"] else nested)
        return read


class MappingOption(_Read, fields.Dict):
    """target -> column(s); a JSON object, or its text in a form. (Keys' pattern: `propertyNames`.)"""

    def parse(self, value: Any, errors: Errors) -> Any:
        return _parse_mapping(value, errors)


class MappingText(_Read, fields.String):
    """A mapping in a form field or query parameter: the JSON object written out."""

    def parse(self, value: Any, errors: Errors) -> Any:
        return _parse_mapping(value, errors)


class HeaderRowOption(_Read, fields.Integer):
    def parse(self, value: Any, errors: Errors) -> Any:
        return _parse_header_row(value, errors)


class SheetOption(_Read, fields.Raw):
    def parse(self, value: Any, errors: Errors) -> Any:
        return _parse_sheet(value, errors)


class EncodingOption(_Read, fields.String):
    def parse(self, value: Any, errors: Errors) -> Any:
        return _parse_encoding(value, errors)


class ChoiceOption(_Read, fields.String):
    """One of MODE_OPTIONS[name]: title, choices and default documented from there; `x-choices`
    (choice -> {label, description}) is what the web page offers."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.option_name = name
        super().__init__(
            metadata={
                "enum": list(MODE_OPTIONS[name]),
                "title": MODE_TITLES[name],
                "default": mode_default(name),
                "description": mode_description(name),
                "x-choices": {
                    value: {"label": label, "description": text} for value, (label, text) in MODE_OPTIONS[name].items()
                },
            },
            **kwargs,
        )

    def parse(self, value: Any, errors: Errors) -> Any:
        return _parse_choice(self.option_name, value, errors)


MAPPING_TARGET = (
    "^("
    + "|".join([*CUSTOMER_FIELDS, FULL_NAME])
    + ")$|^"
    + ATTRIBUTE_PREFIX.replace(".", "\\.")
    + f"\\S(.{{0,{MAX_ATTRIBUTE_NAME - 2}}}\\S)?$"
)


def mapping_value(*, integers: bool = False) -> fields.Raw:
    kinds = ["string", "integer"] if integers else ["string"]
    return fields.Raw(
        allow_none=True,
        metadata={
            "oneOf": [
                {"type": kinds},
                {"type": "array", "items": {"type": kinds}, "minItems": 1, "maxItems": MAX_JOINED},
                {"type": "null"},
            ],
            "description": "A column, a list of columns joined in order (`, ` for address, a space otherwise), "
            "or null (the field is left out).",
        },
    )


def mapping_field(description: str, **kwargs: Any) -> MappingOption:
    """A mapping as the API shows and takes it: target -> column(s)."""
    return MappingOption(
        keys=fields.String(validate=validate.Regexp(MAPPING_TARGET)),
        values=mapping_value(integers=kwargs.pop("integers", False)),
        metadata={"description": description},
        **kwargs,
    )


def option(field: fields.Field) -> Any:
    """A field of ImportOptions (a dataclasses.field): None when not given; `field` loads, checks and
    documents it."""
    return dataclasses.field(default=None, metadata={"option": field})


@dataclass(frozen=True)
class ImportOptions:
    mapping: Mapping_ | None = option(
        mapping_field("Customer field -> header text, column letter or 1-based column number.", integers=True)
    )
    header_row: int | None = option(  # None: found automatically; 0: the file has no header row
        HeaderRowOption(
            metadata={
                "minimum": 0,
                "maximum": MAX_HEADER_ROW,
                "description": "The header's row number; 0: the file has no header row. Absent: found (a title "
                "block above it skipped; a first row holding an email is data, so the file has none).",
            }
        )
    )
    sheet: str | None = option(  # a name or a 1-based number
        SheetOption(metadata={"type": ["string", "integer"], "description": SHEET_DESCRIPTION})
    )
    encoding: str | None = option(  # CSV only; None: detected
        EncodingOption(metadata={"description": "The text encoding (CSV); detected when absent."})
    )
    mode: str | None = option(ChoiceOption("mode"))  # None: upsert
    blank_cells: str | None = option(ChoiceOption("blank_cells"))  # None: keep
    match_on: str | None = option(ChoiceOption("match_on"))  # None: email

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, raw: str | None) -> ImportOptions:
        return cls(**json.loads(raw)) if raw else cls()

    def merged(self, other: ImportOptions) -> ImportOptions:
        """These options with every option `other` gives replacing them."""
        values = asdict(self)
        values.update({k: v for k, v in asdict(other).items() if v is not None})
        return ImportOptions(**values)


# Every option, by name: its field (what loads and documents it).
OPTION_FIELDS: dict[str, fields.Field] = {f.name: f.metadata["option"] for f in dataclasses.fields(ImportOptions)}
# How the stored file is read (a preview read again takes only these).
READING_OPTIONS = ("mapping", "header_row", "sheet", "encoding")


_TRUE = frozenset({"1", "true", "yes", "on", ""})
_FALSE = frozenset({"0", "false", "no", "off"})


class JsonFlag(fields.Boolean):
    """true or false in a JSON body (not a string)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Not a boolean.")
        return value


class FormFlag(fields.Boolean):
    """A true/false form field or query parameter: true, false, 1, 0, yes, no, on, off; given bare, true."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        text = value.strip().lower() if isinstance(value, str) else value
        if text in _TRUE or text is True:
            return True
        if text in _FALSE or text is False:
            return False
        raise ValidationError("Must be true or false.")


def callback_url_field() -> fields.String:
    """Text here: the gateway checks it, resolving its host (shared.imports.webhooks.check_callback_url)."""
    return fields.String(
        metadata={
            "format": "uri",
            "description": "An http(s) URL the job's document is POSTed to when it ends (signed: see the `jobEnded` "
            "webhook); private and loopback addresses are refused unless WEBHOOK_ALLOW_PRIVATE; metadata and "
            "link-local addresses always.",
        },
    )


class _OptionsSchema(Schema):
    class Meta:
        unknown = RAISE


def _schema(
    name: str, extra: dict[str, fields.Field], *, form: bool = False, only: tuple[str, ...] = ()
) -> type[Schema]:
    options = {k: v for k, v in OPTION_FIELDS.items() if not only or k in only}
    if form:  # a form field or query parameter is text: the mapping a JSON object written out
        options = {
            **options,
            "mapping": MappingText(
                metadata={
                    "description": "A JSON object: customer field -> header text, column letter or 1-based "
                    'number, e.g. {"phone": "D"}.',
                }
            ),
            "sheet": SheetOption(metadata={"type": "string", "description": SHEET_DESCRIPTION}),
        }
    return _OptionsSchema.from_dict({**options, **extra}, name=name)


# POST /upload: form fields or query parameters.
UploadOptionsSchema = _schema(
    "UploadOptionsSchema",
    {
        "dry_run": FormFlag(metadata={"default": False, "description": "true: validate the file, write nothing."}),
        "preview": FormFlag(
            metadata={"default": False, "description": "true: store the file and answer its preview; import nothing."}
        ),
        "callback_url": callback_url_field(),
    },
    form=True,
)
# POST /jobs/{id}/start: a JSON body of options replacing those of the upload (each optional).
StartOptionsSchema = _schema("StartOptionsSchema", {"dry_run": JsonFlag(), "callback_url": callback_url_field()})
# POST /jobs/{id}/preview: how to read the stored file again (each optional). The header row and the
# mapping are found anew unless given; the sheet and encoding stay those of the last preview.
PreviewOptionsSchema = _schema("PreviewOptionsSchema", {}, only=READING_OPTIONS)


def load_options(schema: Schema, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The options a request gives, loaded by `schema`: {"options": ImportOptions, and each other value
    given (dry_run, preview, callback_url)}. Raises OptionError naming every option that is wrong."""
    given = {k: v for k, v in raw.items() if v is not None}
    try:
        loaded: dict[str, Any] = schema.load(given)
    except ValidationError as exc:
        raise OptionError(_pairs(exc.messages)) from None
    options = ImportOptions(**{k: loaded.pop(k) for k in list(loaded) if k in OPTION_FIELDS})
    return {"options": options, **loaded}


def _pairs(messages: Any, prefix: str = "") -> Errors:
    """marshmallow's messages as (option, message) pairs: `mapping.phone`, `header_row`, ..."""
    pairs: Errors = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}{key}" if key != "_schema" else prefix.rstrip(".") or "body"
            if isinstance(value, dict):
                pairs.extend(_pairs(value, f"{name}."))
            else:
                for item in value if isinstance(value, list) else [value]:
                    pairs.append((name, str(item)))
    else:
        pairs.extend((prefix.rstrip(".") or "body", str(item)) for item in messages)
    return pairs

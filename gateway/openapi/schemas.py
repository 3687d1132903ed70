"""Marshmallow schemas of what the API answers (and of its query strings), for the OpenAPI document.

Request bodies are described by the services' own input schemas (shared.customers.schemas, the import
options of shared.imports.options). The job document is dumped by its own schema (shared.imports.document),
the one shown here; the other documents here describe what the repositories build, and the tests check
every response they see against the document made from these (see tests/support/openapi_check.py), so a
field added, renamed or made nullable shows up as a failing test.

Response schemas reject unknown members (marshmallow's default `unknown = RAISE` becomes
`additionalProperties: false`), so an undocumented field is a mismatch too. Problem documents are the
exception: RFC 9457 lets a problem carry more members (`missing_columns`, `header`, ...).
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate

from shared.customers.customer_repo import SORT_KEYS
from shared.customers.fields import (
    ATTRIBUTES,
    ATTRIBUTES_DESCRIPTION,
    BY_NAME,
)
from shared.customers.schemas import FIELD_LENGTHS, CustomerSchema
from shared.imports.document import FILE_KINDS, JobSchema, RowErrorSchema
from shared.imports.job_repo import STATUSES
from shared.imports.options import (
    MAPPING_TARGET,
    UploadOptionsSchema,
    mapping_field,
)
from shared.spreadsheet.preview import REASONS
from shared.spreadsheet.rules import CUSTOMER_FIELDS

JOB_STATUSES = STATUSES  # every status a job can have, from its one home
CACHE_STATES = ("hit", "miss", "bypass")


def _described(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **extra}


def _count(description: str) -> fields.Integer:
    return fields.Integer(required=True, validate=validate.Range(min=0), metadata=_described(description))


def _timestamp(description: str, *, nullable: bool = False) -> fields.DateTime:
    return fields.DateTime(required=True, allow_none=nullable, metadata=_described(description))


def _next_cursor() -> fields.String:
    return fields.String(
        required=True,
        allow_none=True,
        metadata=_described("Pass it back as `cursor` for the next page; null on the last page."),
    )


# -- customers ---------------------------------------------------------------------------------


def customer_fields() -> dict[str, fields.Field]:
    """A customer as the API returns it: `id` and `version` first, the fields CustomerSchema loads
    (text or null; `email` always set) with its own length validators, then the timestamps."""
    loaded = CustomerSchema().fields
    assert tuple(loaded) == CUSTOMER_FIELDS, "CustomerSchema's fields are not the customer columns"
    out: dict[str, fields.Field] = {
        "id": fields.Integer(required=True, validate=validate.Range(min=1)),
        "version": fields.Integer(
            required=True, validate=validate.Range(min=1), metadata=_described("Increments on every change.")
        ),
    }
    for name in CUSTOMER_FIELDS:
        length = validate.Length(max=FIELD_LENGTHS[name])
        described = _described(BY_NAME[name].description)
        if name == "email":
            out[name] = fields.Email(required=True, validate=length, metadata=described)
        else:
            out[name] = fields.String(required=True, allow_none=True, validate=length, metadata=described)
    out[ATTRIBUTES] = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata=_described(ATTRIBUTES_DESCRIPTION),
    )
    out["created_at"] = _timestamp("When the customer was created (UTC).")
    out["updated_at"] = _timestamp("When the customer last changed (UTC).")
    return out


CustomerOutSchema = Schema.from_dict(customer_fields(), name="CustomerOutSchema")


class CustomerFieldSchema(Schema):
    """One customer field as shared/customers/fields.py declares it (dumped from a CustomerField)."""

    name = fields.String(required=True, validate=validate.OneOf(CUSTOMER_FIELDS))
    label = fields.String(required=True, attribute="title", metadata=_described("How the web page names it."))
    description = fields.String(required=True)
    max_length = fields.Integer(required=True, validate=validate.Range(min=1), metadata=_described("In characters."))
    required = fields.Boolean(
        required=True, metadata=_described("true: every customer has a value, so a file needs a column for it.")
    )
    aliases = fields.List(
        fields.String(),
        required=True,
        metadata=_described("Other header texts an import takes for it (lower-case, `_` for spaces and dashes)."),
    )


class MappingTargetSchema(Schema):
    name = fields.String(required=True)
    label = fields.String(required=True)


class CustomerFieldsSchema(Schema):
    """GET /fields: the customer fields in their order, and a mapping's targets that are no field."""

    items = fields.List(fields.Nested(CustomerFieldSchema), required=True)
    full_name = fields.Nested(
        MappingTargetSchema,
        required=True,
        metadata=_described("A mapping target: one column holding the whole name, split into first and last name."),
    )
    attribute_prefix = fields.String(
        required=True,
        metadata=_described("A mapping target `<prefix><name>` keeps a column on the customer under that name."),
    )


CachedCustomerSchema = Schema.from_dict(
    {
        **customer_fields(),
        "ttl_s": fields.Integer(
            required=True, metadata=_described("Seconds before Redis drops the document (-1: no expiry).")
        ),
    },
    name="CachedCustomerSchema",
)


class CustomerPageSchema(Schema):
    items = fields.List(fields.Nested(CustomerOutSchema), required=True)
    next_cursor = _next_cursor()
    total = fields.Integer(
        validate=validate.Range(min=0),
        metadata=_described("With count=true: how many customers match q (all of them without it)."),
    )


class CachedCustomerPageSchema(Schema):
    items = fields.List(fields.Nested(CachedCustomerSchema), required=True)
    next_cursor = _next_cursor()


# -- imports -----------------------------------------------------------------------------------


# A mapping's keys: a field, `full_name`, or `attributes.<name>` (shared.spreadsheet.mapping).
def _mapping(*, description: str, **kwargs: Any) -> fields.Dict:
    """target -> column(s), as the import options take it (shared.imports.options)."""
    return mapping_field(description, **kwargs)


class JobPageSchema(Schema):
    items = fields.List(fields.Nested(JobSchema), required=True)
    next_cursor = _next_cursor()


class JobErrorsPageSchema(Schema):
    items = fields.List(fields.Nested(RowErrorSchema), required=True)
    next_cursor = _next_cursor()
    rows_invalid = _count("Invalid rows in the job (exact).")
    errors_stored = _count("Row errors stored; fewer than rows_invalid when the cap was reached.")


class SheetSchema(Schema):
    index = fields.Integer(required=True, validate=validate.Range(min=1))
    name = fields.String(required=True)
    hidden = fields.Boolean(required=True)
    selected = fields.Boolean(required=True, metadata=_described("The sheet read."))


class RememberedFromSchema(Schema):
    id = fields.Integer(required=True, validate=validate.Range(min=1))
    filename = fields.String(required=True, metadata=_described("The file whose import it was remembered from."))
    last_used = fields.DateTime(required=True, metadata=_described("When an import last started with it (UTC)."))


class RememberedMappingSchema(Schema):
    """GET /mappings: a mapping remembered under a file's header."""

    id = fields.Integer(required=True, validate=validate.Range(min=1))
    header = fields.List(
        fields.String(),
        required=True,
        metadata=_described("The header's cells, normalised (case, spaces and dashes folded), in order."),
    )
    mapping = _mapping(required=True, description="The mapping the import was started with.")
    filename = fields.String(required=True, metadata=_described("The file it was remembered from."))
    last_used = fields.DateTime(required=True, metadata=_described("When an import last started with it (UTC)."))


class RememberedMappingPageSchema(Schema):
    items = fields.List(fields.Nested(RememberedMappingSchema), required=True)
    next_cursor = _next_cursor()


class PreviewColumnSchema(Schema):
    index = fields.Integer(required=True, validate=validate.Range(min=1), metadata=_described("1-based."))
    letter = fields.String(required=True, metadata=_described("As Excel names the column: A, B, ..."))
    header = fields.String(required=True, allow_none=True)
    samples = fields.List(fields.String(), required=True, metadata=_described("The first values (as text)."))
    suggested_field = fields.String(
        required=True,
        allow_none=True,
        validate=validate.Regexp(MAPPING_TARGET),
        metadata=_described(
            "What the preview's mapping takes this column for: a field, `full_name` or `attributes.<name>`; "
            "null: nothing (the column is ignored unless a mapping names it)."
        ),
    )
    confidence = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    reason = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(REASONS),
        metadata=_described(
            "Why: its `header` text, its `values`, a mapping `remembered` from an earlier file with the same "
            "header (see `remembered`), or the `mapping` given. null: no suggestion."
        ),
    )


class PreviewRowSchema(Schema):
    row = fields.Integer(required=True, metadata=_described("Row number as the spreadsheet shows it."))
    values = fields.List(fields.String(allow_none=True), required=True, metadata=_described("One per column."))


class PreviewSchema(Schema):
    """What the service read from the first rows of a file, to build a mapping from."""

    kind = fields.String(required=True, validate=validate.OneOf(FILE_KINDS))
    sheets = fields.List(fields.Nested(SheetSchema), required=True, metadata=_described("Empty for a CSV."))
    sheet = fields.String(required=True, allow_none=True)
    encoding = fields.String(required=True, allow_none=True)
    header_row = fields.Integer(required=True, validate=validate.Range(min=0), metadata=_described("0: none."))
    columns = fields.List(fields.Nested(PreviewColumnSchema), required=True)
    mapping = _mapping(
        required=True,
        description="The mapping an import started now uses: the confident suggestions, over them a remembered "
        "mapping, over both the mapping given (its fields win; null: left out).",
    )
    unmapped_required = fields.List(
        fields.String(validate=validate.OneOf(CUSTOMER_FIELDS)),
        required=True,
        metadata=_described("Required fields still unmapped (only `email` is required)."),
    )
    remembered = fields.Nested(
        RememberedFromSchema,
        required=True,
        allow_none=True,
        metadata=_described("The remembered mapping applied (GET /mappings); null: none."),
    )
    warnings = fields.List(
        fields.String(), required=True, metadata=_described("What the import will warn about (ignored columns).")
    )
    rows = fields.List(fields.Nested(PreviewRowSchema), required=True, metadata=_described("The first data rows."))
    rows_total_estimate = fields.Integer(required=True, allow_none=True)


class UploadedPreviewSchema(JobSchema):
    """POST /upload?preview=true: the job (status `uploaded`), its preview and where to start it."""

    preview = fields.Nested(PreviewSchema, required=True)
    status_url = fields.String(required=True)
    start_url = fields.String(required=True, metadata=_described("POST here (with options) to import."))


class UploadAcceptedSchema(Schema):
    job_id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(JOB_STATUSES))
    status_url = fields.String(required=True, metadata=_described("Where to follow the job (also in Location)."))
    filename = fields.String(required=True)
    dry_run = fields.Boolean(required=True)


# The import options: loaded and documented by the schemas of shared.imports.options.
UploadFormSchema = Schema.from_dict(
    {
        "file": fields.Raw(
            required=True,
            metadata={"type": "string", "format": "binary", "description": "An .xlsx workbook or a .csv file."},
        ),
        **UploadOptionsSchema._declared_fields,
    },
    name="UploadFormSchema",
)


# -- operations --------------------------------------------------------------------------------


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ChecksSchema(Schema):
    mysql = fields.String(required=True, validate=validate.OneOf(["up", "down"]))
    redis = fields.String(required=True, validate=validate.OneOf(["up", "down"]))


class ReadinessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "unavailable"]))
    checks = fields.Nested(ChecksSchema, required=True)


# -- problems ----------------------------------------------------------------------------------


class FieldErrorSchema(Schema):
    field = fields.String(
        required=True, allow_none=True, metadata=_described("The field, query parameter or header; null: the body.")
    )
    message = fields.String(required=True)


class ProblemSchema(Schema):
    """An RFC 9457 problem document (application/problem+json)."""

    class Meta:
        unknown = INCLUDE  # a problem may carry more members, e.g. `missing_columns`

    type = fields.String(required=True, metadata=_described('"about:blank": the status says it all.'))
    title = fields.String(required=True)
    status = fields.Integer(required=True, validate=validate.Range(min=400, max=599))
    detail = fields.String(metadata=_described("What went wrong and what to do about it, for a person."))
    instance = fields.String(required=True, metadata=_described("The path of the request."))
    errors = fields.List(fields.Nested(FieldErrorSchema), metadata=_described("One entry per bad input."))


class ColumnsProblemSchema(ProblemSchema):
    """A problem about a file whose columns do not fit (POST /upload, POST /jobs/{id}/start): what is
    missing, the header found, and the file's preview to build a mapping from."""

    missing_columns = fields.List(fields.String(), metadata=_described("Required columns the header lacks."))
    header = fields.List(fields.String(allow_none=True), metadata=_described("The header row found."))
    preview = fields.Nested(PreviewSchema, metadata=_described("The file's preview, to build a mapping from."))


# -- query strings -----------------------------------------------------------------------------


def _limit(default: int, maximum: int) -> fields.Integer:
    return fields.Integer(
        validate=validate.Range(min=1, max=maximum),
        metadata={"default": default, "description": f"Page size (default {default}, at most {maximum})."},
    )


def _cursor() -> fields.String:
    return fields.String(metadata=_described("next_cursor of the previous page; absent or empty: the first page."))


def page_query(default: int, maximum: int, **more: fields.Field) -> type[Schema]:
    """The query string of a paginated endpoint: `limit`, `cursor` and any more parameters."""
    return Schema.from_dict({"limit": _limit(default, maximum), "cursor": _cursor(), **more})


SEARCH = fields.String(
    validate=validate.Length(max=100), metadata=_described("Searches first and last name, email and company.")
)
CUSTOMER_SORT = fields.String(
    validate=validate.OneOf([*SORT_KEYS, *(f"-{key}" for key in SORT_KEYS)]),
    metadata={
        "default": "id",
        "description": "The order: a field, `id`, `created_at` or `updated_at`; a leading `-` sorts descending. "
        "Keyset-paginated on (the field, id): rows inserted or deleted between pages never make a row that stayed "
        "repeat or go missing. An empty value sorts first ascending, last descending. A cursor belongs to its sort.",
    },
)
CUSTOMER_COUNT = fields.Boolean(
    metadata={"default": False, "description": "true: the page carries `total`, how many customers match q."}
)
ERRORS_FORMAT = fields.String(
    validate=validate.OneOf(["json", "csv"]),
    metadata={"default": "json", "description": "csv: every stored error as a download (no paging)."},
)


_ONE_STATUS = "|".join(JOB_STATUSES)
JOB_STATUS_FILTER = fields.String(
    validate=validate.Regexp(f"^({_ONE_STATUS})(,({_ONE_STATUS}))*$"),
    metadata=_described(
        "Only jobs in these statuses, comma-separated (`queued,running`). Without it, every job but previews "
        "(`uploaded`: uploaded for a preview, never started) is listed."
    ),
)
INCLUDE_PREVIEWS = fields.Boolean(
    metadata={"default": False, "description": "true: previews (status `uploaded`) are listed too."}
)


def file_format(choices: tuple[str, ...], default: str, description: str) -> fields.String:
    return fields.String(
        validate=validate.OneOf(choices), metadata={"default": default, "description": f"{description}."}
    )


# -- history and undo --------------------------------------------------------------------------

CHANGES = fields.Dict(
    keys=fields.String(),
    values=fields.List(fields.Raw(allow_none=True), validate=validate.Length(equal=2)),
    required=True,
    metadata=_described("field -> [old, new] of each field that changed (null: none; `attributes` as an object)."),
)


class HistorySourceSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(("import", "api", "revert", "delete")))
    job_id = fields.UUID(required=True, allow_none=True, metadata=_described("The job that made the change."))
    request_id = fields.String(
        required=True, allow_none=True, metadata=_described("X-Request-ID of the request (or the job's upload).")
    )


class HistoryEntrySchema(Schema):
    at = _timestamp("When the change was committed (UTC).")
    action = fields.String(required=True, validate=validate.OneOf(("created", "updated", "deleted", "restored")))
    by = fields.String(
        required=True, allow_none=True, metadata=_described("The name of the API key; null: keys are off.")
    )
    source = fields.Nested(HistorySourceSchema, required=True)
    version = fields.Integer(
        required=True, allow_none=True, metadata=_described("The customer's version after the change.")
    )
    changes = CHANGES


class HistoryPageSchema(Schema):
    items = fields.List(fields.Nested(HistoryEntrySchema), required=True)
    next_cursor = _next_cursor()


class JobChangeSchema(Schema):
    customer_id = fields.Integer(required=True, validate=validate.Range(min=1))
    email = fields.String(required=True, allow_none=True)
    action = fields.String(required=True, validate=validate.OneOf(("inserted", "updated", "deleted", "restored")))
    changes = CHANGES


class JobChangesPageSchema(Schema):
    items = fields.List(fields.Nested(JobChangeSchema), required=True)
    next_cursor = _next_cursor()


class RevertOptionsSchema(Schema):
    force = fields.Boolean(
        load_default=False,
        metadata=_described("true: revert customers changed since the job as well (else they are left and listed)."),
    )


class BulkDeleteSchema(Schema):
    q = fields.String(
        load_default="", validate=validate.Length(max=100), metadata=_described("The search, as GET /customers?q=.")
    )
    expected_count = fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata=_described("How many customers q matches now (GET /customers?q=&count=true): else a 409."),
    )

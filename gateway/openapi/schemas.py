"""Marshmallow schemas of what the API answers (and of its query strings), for the OpenAPI document.

Request bodies are described by the service's own input schema (shared.customers.schemas); these describe
responses. They are never used to serialise: the handlers answer documents the repositories build,
and the tests check every response they see against the document made from these (see
tests/support/openapi_check.py), so a field added, renamed or made nullable shows up as a failing test.

Response schemas reject unknown members (marshmallow's default `unknown = RAISE` becomes
`additionalProperties: false`), so an undocumented field is a mismatch too. Problem documents are the
exception: RFC 9457 lets a problem carry more members (`missing_columns`, `header`, ...).
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate

from shared.customers.customer_repo import SORT_KEYS
from shared.customers.fields import (
    ATTRIBUTE_PREFIX,
    ATTRIBUTES,
    ATTRIBUTES_DESCRIPTION,
    BY_NAME,
    FULL_NAME,
    MAX_ATTRIBUTE_NAME,
)
from shared.customers.schemas import FIELD_LENGTHS, CustomerSchema
from shared.imports.service import STATUSES
from shared.spreadsheet.mapping import MAX_JOINED
from shared.spreadsheet.preview import REASONS
from shared.spreadsheet.rules import CUSTOMER_FIELDS

JOB_STATUSES = STATUSES  # every status a job can have, from its one home
JOB_KINDS = ("import", "revert", "delete")
FILE_KINDS = ("xlsx", "csv")
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
MAPPING_TARGET = (
    "^("
    + "|".join([*CUSTOMER_FIELDS, FULL_NAME])
    + ")$|^"
    + ATTRIBUTE_PREFIX.replace(".", "\\.")
    + f"\\S(.{{0,{MAX_ATTRIBUTE_NAME - 2}}}\\S)?$"
)


def _mapping_value(*, integers: bool = False) -> fields.Raw:
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


def _mapping(*, description: str, values: fields.Field | None = None, **kwargs: Any) -> fields.Dict:
    """target -> column(s). (The keys' pattern becomes `propertyNames`: see gateway.openapi.document.)"""
    return fields.Dict(
        keys=fields.String(validate=validate.Regexp(MAPPING_TARGET)),
        values=values or _mapping_value(),
        metadata=_described(description),
        **kwargs,
    )


class RowErrorSchema(Schema):
    row = fields.Integer(required=True, metadata=_described("Row number as the spreadsheet shows it."))
    column = fields.String(
        required=True,
        allow_none=True,
        metadata=_described(
            "The column as the file shows it: its header text (`Firma`), or its letter in a file without a "
            "header; columns joined into one field as `Address1 + Address2`. null: the row as a whole."
        ),
    )
    field = fields.String(
        required=True,
        allow_none=True,
        metadata=_described("The customer field (or `attributes.<name>`) the value was for; null: none."),
    )
    value = fields.String(
        required=True, allow_none=True, metadata=_described("The offending value (at most 100 characters).")
    )
    message = fields.String(required=True, metadata=_described("What is wrong, in plain words."))


class ProgressSchema(Schema):
    rows_processed = _count("Rows read so far.")
    rows_total_estimate = fields.Integer(
        required=True, allow_none=True, metadata=_described("Estimated data rows in the file; null until known.")
    )
    percent = fields.Float(
        required=True, allow_none=True, validate=validate.Range(min=0, max=100), metadata=_described("null: unknown.")
    )


class JobPartSchema(Schema):
    """One part of a job split over several workers (FANOUT_MIN_ROWS; docs/scaling.md)."""

    part = fields.Integer(required=True, metadata=_described("0-based."))
    status = fields.String(
        required=True, validate=validate.OneOf(["queued", "running", "completed", "failed", "cancelled"])
    )
    rows = _count("Rows this part read so far (its share of rows_read).")
    rows_inserted = _count("New customers.")
    rows_updated = _count("Customers that existed and changed.")
    rows_unchanged = _count("Customers that existed with the same values.")
    rows_invalid = _count("Rows skipped as invalid.")
    attempts = _count("How many times a worker started on the part.")
    worker = fields.String(
        required=True, allow_none=True, metadata=_described("The worker (host:pid:tag) that last took the part.")
    )


class WebhookAttemptSchema(Schema):
    at = fields.DateTime(required=True, metadata=_described("When the attempt was made (UTC)."))
    status = fields.Integer(
        required=True, allow_none=True, metadata=_described("The receiver's HTTP status; null: none.")
    )
    error = fields.String(required=True, allow_none=True, metadata=_described("Why it failed; null: it did not."))


class WebhookSchema(Schema):
    """The delivery of the job's webhook: owed once the job ends, retried with back-off."""

    status = fields.String(required=True, validate=validate.OneOf(["pending", "delivered", "failed"]))
    delivery_id = fields.String(required=True, metadata=_described("X-Webhook-Id: the same on every attempt."))
    attempts = fields.List(fields.Nested(WebhookAttemptSchema), required=True)


class JobSchema(Schema):
    job_id = fields.UUID(required=True)
    kind = fields.String(
        required=True,
        validate=validate.OneOf(JOB_KINDS),
        metadata=_described(
            "import: a file; revert: undoes the job `reverts` names (POST /jobs/{id}/revert); delete: a bulk "
            "delete by search (POST /customers/bulk-delete)."
        ),
    )
    reverts = fields.UUID(required=True, allow_none=True, metadata=_described("A revert: the job it undoes."))
    reverted_by = fields.UUID(
        required=True, allow_none=True, metadata=_described("The revert job queued for this job; null: none.")
    )
    status = fields.String(required=True, validate=validate.OneOf(JOB_STATUSES))
    filename = fields.String(required=True, metadata=_described("The upload's name; a revert or delete: what it does."))
    file_kind = fields.String(
        required=True, allow_none=True, validate=validate.OneOf(FILE_KINDS), metadata=_described("null: no file.")
    )
    size_bytes = _count("Size of the upload.")
    sha256 = fields.String(required=True, metadata=_described("SHA-256 of the upload, hex."))
    dry_run = fields.Boolean(required=True, metadata=_described("true: validated only, nothing written."))
    reader = fields.String(
        required=True, allow_none=True, metadata=_described("The reader that parsed the file; null until it starts.")
    )
    sheet = fields.String(required=True, allow_none=True, metadata=_described("The worksheet read (xlsx)."))
    encoding = fields.String(required=True, allow_none=True, metadata=_described("The text encoding read (CSV)."))
    header_row = fields.Integer(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata=_described("The header's row number (0: the file has none); null until known."),
    )
    mapping = _mapping(
        required=True,
        allow_none=True,
        description="The mapping the import uses (the one given merged with the preview's suggestions); null: none.",
    )
    rows_read = _count("rows_inserted + rows_updated + rows_unchanged + rows_invalid.")
    rows_inserted = _count("New customers.")
    rows_updated = _count("Customers that existed and changed.")
    rows_unchanged = _count("Customers that existed with the same values.")
    rows_invalid = _count("Rows skipped as invalid (exact, even when not all errors are stored).")
    rows_deleted = _count("A revert: customers it deleted (the import had inserted them); a bulk delete: deleted.")
    rows_restored = _count("A revert: customers given back the values they had before the job it undoes.")
    progress = fields.Nested(ProgressSchema, required=True)
    checkpoint_row = _count("Last row committed; an import resumed by another worker goes on from here.")
    warnings = fields.List(fields.String(), required=True)
    errors = fields.List(
        fields.Nested(RowErrorSchema),
        metadata=_described("The first row errors (GET /jobs/{id} only; all of them at /jobs/{id}/errors)."),
    )
    callback_url = fields.Url(
        required=True, allow_none=True, metadata=_described("Where the job's document is POSTed when it ends.")
    )
    webhook = fields.Nested(
        WebhookSchema, required=True, allow_none=True, metadata=_described("null: no callback_url.")
    )
    errors_stored = _count("Row errors stored (capped by MAX_ERRORS_PER_JOB).")
    parts = fields.List(
        fields.Nested(JobPartSchema),
        metadata=_described(
            "GET /jobs/{id} only: the parts of a job split over several workers; empty when one worker "
            "imports it. The job's counters are their sums."
        ),
    )
    error = fields.String(required=True, allow_none=True, metadata=_described("Why a failed job failed."))
    attempts = _count("How many times a worker started on the job.")
    request_id = fields.String(required=True, allow_none=True, metadata=_described("X-Request-ID of the upload."))
    uploaded_by = fields.String(
        required=True,
        allow_none=True,
        metadata=_described("The name of the API key that uploaded the file (never the key); null: keys are off."),
    )
    duration_s = fields.Float(required=True, allow_none=True, metadata=_described("null until finished."))
    created_at = _timestamp("When the upload was received (UTC).")
    started_at = _timestamp("When a worker first started on it.", nullable=True)
    finished_at = _timestamp("When it completed or failed.", nullable=True)
    updated_at = _timestamp("Last change of status or counters.")


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


def _callback_url() -> fields.Url:
    return fields.Url(
        metadata=_described(
            "An http(s) URL the job's document is POSTed to when it ends (signed: see the `jobEnded` webhook); "
            "private and loopback addresses are refused unless WEBHOOK_ALLOW_PRIVATE; metadata and link-local "
            "addresses always."
        )
    )


def _option_fields() -> dict[str, fields.Field]:
    """The import options as form fields or query parameters (text: `mapping` is a JSON object)."""
    return {
        "dry_run": fields.Boolean(
            metadata={"default": False, "description": "true: validate the file, write nothing."}
        ),
        "preview": fields.Boolean(
            metadata={"default": False, "description": "true: store the file and answer its preview; import nothing."}
        ),
        "mapping": fields.String(
            metadata=_described(
                'A JSON object: customer field -> header text, column letter or 1-based number, e.g. {"phone": "D"}.'
            )
        ),
        "header_row": fields.Integer(
            validate=validate.Range(min=0), metadata=_described("The header's row number; 0: the file has none.")
        ),
        "sheet": fields.String(metadata=_described("A worksheet's name or 1-based number (xlsx).")),
        "encoding": fields.String(metadata=_described("The text encoding (CSV); detected when absent.")),
        "callback_url": _callback_url(),
    }


UploadOptionsSchema = Schema.from_dict(_option_fields(), name="UploadOptionsSchema")
UploadFormSchema = Schema.from_dict(
    {
        "file": fields.Raw(
            required=True,
            metadata={"type": "string", "format": "binary", "description": "An .xlsx workbook or a .csv file."},
        ),
        **_option_fields(),
    },
    name="UploadFormSchema",
)


class StartOptionsSchema(Schema):
    """POST /jobs/{id}/start: options replacing those of the upload (each optional)."""

    mapping = _mapping(
        description="Customer field -> header text, column letter or 1-based column number.",
        values=_mapping_value(integers=True),
    )
    header_row = fields.Integer(validate=validate.Range(min=0), metadata=_described("0: the file has no header row."))
    sheet = fields.Raw(metadata={"type": ["string", "integer"], "description": "A worksheet's name or number."})
    encoding = fields.String(metadata=_described("The text encoding (CSV)."))
    dry_run = fields.Boolean()
    callback_url = _callback_url()


# POST /jobs/{id}/preview: how to read the stored file again, the reading options of a start (each
# optional). The header row and the mapping are found anew unless given; the sheet and encoding stay
# those of the last preview.
PreviewOptionsSchema = Schema.from_dict(
    {name: StartOptionsSchema._declared_fields[name] for name in ("mapping", "header_row", "sheet", "encoding")},
    name="PreviewOptionsSchema",
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

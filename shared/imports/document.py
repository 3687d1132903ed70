"""The job as the API shows it: one marshmallow schema dumps the document (GET /jobs/{id}, the lists, the
events, the webhook) from the job's row, and the API document shows that same schema (gateway/openapi/).

Values the row does not hold as such are computed by the fields themselves (`_Computed`): the progress,
the duration, a mode left at its default, the timestamps written as UTC with a `Z`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from marshmallow import Schema, fields, pre_dump, validate

from shared.imports import job_repo
from shared.imports.job_repo import Job
from shared.imports.options import ChoiceOption, mapping_field, mode_default

JOB_KINDS = (job_repo.IMPORT, job_repo.REVERT, job_repo.DELETE)
FILE_KINDS = ("xlsx", "csv")
PART_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
WEBHOOK_STATUSES = ("pending", "delivered", "failed")


def _described(description: str) -> dict[str, Any]:
    return {"description": description}


def _count(description: str, **kwargs: Any) -> fields.Integer:
    return fields.Integer(required=True, validate=validate.Range(min=0), metadata=_described(description), **kwargs)


def iso(value: dt.datetime | None) -> str | None:
    """A stored (naive UTC) time as the API writes it: ISO 8601 with a `Z`."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


class Timestamp(fields.DateTime):
    """A stored UTC time (naive, as MySQL gives it), written with a `Z`."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso(value)


def _timestamp(description: str, *, nullable: bool = False) -> Timestamp:
    return Timestamp(required=True, allow_none=nullable, metadata=_described(description))


class _Computed:
    """A field whose value a function computes from the whole object being dumped."""

    def __init__(self, compute: Callable[[Any], Any], *args: Any, **kwargs: Any) -> None:
        self.compute = compute
        super().__init__(*args, **kwargs)

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = None) -> Any:
        return self.compute(obj)


class ComputedFloat(_Computed, fields.Float):
    pass


class ComputedString(_Computed, fields.String):
    pass


class ComputedNested(_Computed, fields.Nested):
    pass


class ComputedChoice(_Computed, ChoiceOption):
    pass


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

    @pre_dump
    def _stored(self, error: Any, **kwargs: Any) -> Any:
        """A stored error (job_repo.StoredError: id, row, column, field, value, message) by its parts."""
        if isinstance(error, tuple):
            _, row, column, field, value, message = error
            return {"row": row, "column": column, "field": field, "value": value, "message": message}
        return error


def _percent(job: Job) -> float | None:
    if job.status == job_repo.COMPLETED:
        return 100.0
    if job.rows_total_estimate:
        return round(min(job.rows_read / job.rows_total_estimate, 0.99) * 100, 1)
    return 0.0 if job.status == job_repo.QUEUED else None


class ProgressSchema(Schema):
    rows_processed = _count("Rows read so far.", attribute="rows_read")
    rows_total_estimate = fields.Integer(
        required=True, allow_none=True, metadata=_described("Estimated data rows in the file; null until known.")
    )
    percent = ComputedFloat(
        _percent,
        required=True,
        allow_none=True,
        validate=validate.Range(min=0, max=100),
        metadata=_described("null: unknown."),
    )


class JobPartSchema(Schema):
    """One part of a job split over several workers (FANOUT_MIN_ROWS; docs/scaling.md)."""

    part = fields.Integer(required=True, metadata=_described("0-based."))
    status = fields.String(required=True, validate=validate.OneOf(PART_STATUSES))
    rows = _count("Rows this part read so far (its share of rows_read).", attribute="rows_read")
    rows_inserted = _count("New customers.")
    rows_updated = _count("Customers that existed and changed.")
    rows_unchanged = _count("Customers that existed with the same values.")
    rows_skipped = _count("Rows the import's mode left alone.")
    rows_invalid = _count("Rows skipped as invalid.")
    attempts = _count("How many times a worker started on the part.")
    worker = fields.String(
        required=True, allow_none=True, metadata=_described("The worker (host:pid:tag) that last took the part.")
    )


class WebhookAttemptSchema(Schema):
    # Stored as the text it is written as (shared.imports.webhooks).
    at = fields.String(
        required=True, metadata={"format": "date-time", "description": "When the attempt was made (UTC)."}
    )
    status = fields.Integer(
        required=True, allow_none=True, metadata=_described("The receiver's HTTP status; null: none.")
    )
    error = fields.String(required=True, allow_none=True, metadata=_described("Why it failed; null: it did not."))


class WebhookSchema(Schema):
    """The delivery of the job's webhook: owed once the job ends, retried with back-off."""

    status = fields.String(required=True, validate=validate.OneOf(WEBHOOK_STATUSES))
    delivery_id = fields.String(required=True, metadata=_described("X-Webhook-Id: the same on every attempt."))
    attempts = fields.List(fields.Nested(WebhookAttemptSchema), required=True)


def _mode(name: str) -> ComputedChoice:
    """The mode the job runs with: the one given, or the default."""
    return ComputedChoice(lambda job: getattr(job.options, name) or mode_default(name), name, required=True)


def _duration(job: Job) -> float | None:
    if not (job.finished_at and job.started_at):
        return None
    return round((job.finished_at - job.started_at).total_seconds(), 3)


class JobSchema(Schema):
    job_id = fields.UUID(required=True, attribute="id")
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
    status = fields.String(required=True, validate=validate.OneOf(job_repo.STATUSES))
    filename = fields.String(required=True, metadata=_described("The upload's name; a revert or delete: what it does."))
    file_kind = ComputedString(
        lambda job: job.file_kind or None,
        required=True,
        allow_none=True,
        validate=validate.OneOf(FILE_KINDS),
        metadata=_described("null: no file."),
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
    mapping = mapping_field(
        "The mapping the import uses (the one given merged with the preview's suggestions); null: none.",
        required=True,
        allow_none=True,
        attribute="options.mapping",
    )
    mode = _mode("mode")
    blank_cells = _mode("blank_cells")
    match_on = _mode("match_on")
    rows_read = _count("rows_inserted + rows_updated + rows_unchanged + rows_skipped + rows_invalid, always.")
    rows_inserted = _count("New customers.")
    rows_updated = _count("Customers that existed and changed.")
    rows_unchanged = _count("Customers that existed with the same values.")
    rows_skipped = _count(
        "Rows the import's mode left alone: with mode=insert a known customer, with mode=update a new one."
    )
    rows_invalid = _count("Rows skipped as invalid (exact, even when not all errors are stored).")
    rows_deleted = _count("A revert: customers it deleted (the import had inserted them); a bulk delete: deleted.")
    rows_restored = _count("A revert: customers given back the values they had before the job it undoes.")
    progress = ComputedNested(lambda job: job, ProgressSchema, required=True)
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
    duration_s = ComputedFloat(_duration, required=True, allow_none=True, metadata=_described("null until finished."))
    created_at = _timestamp("When the upload was received (UTC).")
    started_at = _timestamp("When a worker first started on it.", nullable=True)
    finished_at = _timestamp("When it completed or failed.", nullable=True)
    updated_at = _timestamp("Last change of status or counters.")


_JOB = JobSchema()


def job_document(
    job: Job,
    first_errors: Sequence[job_repo.StoredError] | None,
    parts: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The job as the API shows it, dumped by JobSchema. `first_errors` None leaves `errors` out (list
    items do not carry them: an empty list there would claim the job had none); so does `parts` None."""
    document: dict[str, Any] = _JOB.dump(job)
    if first_errors is not None:
        document["errors"] = _JOB.fields["errors"].serialize("errors", {"errors": first_errors})
    if parts is not None:
        document["parts"] = _JOB.fields["parts"].serialize("parts", {"parts": parts})
    return document


def error_documents(errors: Sequence[job_repo.StoredError]) -> list[dict[str, Any]]:
    """Row errors as the API shows them (GET /jobs/{id}/errors), by the job document's RowErrorSchema."""
    documents: list[dict[str, Any]] = RowErrorSchema(many=True).dump(errors)
    return documents

"""Uploads and import jobs."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import BodyPartReader, HttpVersion11, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_sse import sse_response
from marshmallow import Schema

from gateway.http import auth, params
from gateway.http.keys import JOBS, METRICS, SETTINGS
from gateway.http.problems import Problem, field_errors, field_problem
from gateway.http.responses import dumps, json_response
from gateway.openapi import operations as api
from gateway.openapi import schemas as api_schemas
from shared.customers.exports import encode_file
from shared.imports import options
from shared.imports.job_repo import STATUSES, UPLOADED
from shared.imports.options import (
    OptionError,
    PreviewOptionsSchema,
    StartOptionsSchema,
    UploadOptionsSchema,
    load_options,
)
from shared.imports.service import LISTED_STATUSES, UploadRequest
from shared.imports.webhooks import check_callback_url
from shared.infra.logs import request_id_var
from shared.infra.storage import UploadTooLarge
from shared.spreadsheet.readers import UploadRejected
from shared.spreadsheet.rules import excel_safe

routes = web.RouteTableDef()

# `limit` of the paginated endpoints: (default, maximum), applied by the handlers and shown by the API document.
JOBS_LIMIT = (20, 200)
JOB_ERRORS_LIMIT = (100, 1000)

# Answers these handlers give, as the API document describes them.
_COLUMNS_UNFIT = (
    "a header without the required columns (`missing_columns`, `header`) or options that do not fit the file "
    "(`errors`), with the file's `preview` to build a mapping from"
)

CHUNK = 256 * 1024


FORM_VALUE_LIMIT = 64 * 1024
# What aiohttp's multipart reader raises for a body it cannot parse: no or a wrong boundary, a body
# cut short, a part header too long or holding a control character.
MULTIPART_ERRORS = (ValueError, AssertionError, HttpProcessingError)


def _utf8(text: str) -> str:
    """Header text as sent, bytes that were not UTF-8 (aiohttp keeps them as surrogates) as U+FFFD:
    a part's name or filename is only a label, never a path, and must be storable and answerable."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@contextlib.contextmanager
def _readable() -> Iterator[None]:
    """A multipart body that cannot be parsed is the client's mistake: 400, never 500."""
    try:
        yield
    except MULTIPART_ERRORS as exc:
        reason = _utf8(str(exc.message if isinstance(exc, HttpProcessingError) else exc)).strip()[:300]
        raise Problem(400, "Malformed multipart body", f"The multipart body cannot be read: {reason}") from None


class UploadForm:
    """The multipart body of an upload: one `file` part, streamed, and small text fields before or
    after it (a client may send its options in either place). Fields are complete once the file's
    chunks have been consumed."""

    def __init__(self, reader: MultipartReader, accepted: frozenset[str]) -> None:
        self.reader = reader
        self.accepted = accepted
        self.fields: dict[str, str] = {}
        self.file: BodyPartReader | None = None

    async def open_file(self) -> BodyPartReader:
        while True:
            part = await self._next()
            if part is None:
                raise field_problem(
                    400, "Missing file", "The multipart form has no field named 'file'.", "file", "Missing."
                )
            if part.name == "file":
                self.file = part
                return part
            await self._field(part)

    async def chunks(self) -> AsyncIterator[bytes]:
        assert self.file is not None
        while True:
            with _readable():
                chunk = await self.file.read_chunk(CHUNK)
            if not chunk:
                break
            yield chunk
        # The rest of the form: options after the file, and never a second file.
        while (part := await self._next()) is not None:
            if part.name == "file":
                raise field_problem(
                    400,
                    "One file per upload",
                    "The form holds more than one part named 'file': send one file per upload.",
                    "file",
                    "One file per upload.",
                )
            await self._field(part)

    def option(self, request: web.Request, name: str) -> str | None:
        """A query parameter or form field (not both)."""
        if name in request.query and name in self.fields:
            raise field_problem(
                400, "Duplicate parameter", f"{name} is given both in the query and in the form", name, "Given twice."
            )
        return self.fields.get(name, request.query.get(name))

    async def _next(self) -> BodyPartReader | None:
        with _readable():
            part = await self.reader.next()
        if part is not None and not isinstance(part, BodyPartReader):
            raise Problem(400, "Malformed form", "Nested multipart bodies are not accepted.")
        return part

    async def _field(self, part: BodyPartReader) -> None:
        name = _utf8(part.name or "")
        if name not in self.accepted:
            with _readable():
                await part.release()
            takes = ", ".join(repr(name) for name in ["file", *sorted(self.accepted)])
            raise field_problem(
                400,
                "Unknown form field",
                f"{name!r} is not a field of the upload form (it takes: {takes}).",
                name or "form",
                "Not a field of this form.",
            )
        with _readable():
            raw = await part.read_chunk(FORM_VALUE_LIMIT + 1)
            more = await part.read_chunk(1)
        if len(raw) > FORM_VALUE_LIMIT or more:
            raise field_problem(413, "Form field too large", f"{name} is over 64 KB", name, "Over 64 KB.")
        try:
            self.fields[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise field_problem(400, "Malformed form field", f"{name} is not UTF-8 text", name, "Not UTF-8.") from None


async def _form(request: web.Request, accepted: frozenset[str]) -> UploadForm:
    if not request.content_type.startswith("multipart/form-data"):
        raise Problem(
            415,
            "Unsupported Media Type",
            "Send the file as multipart/form-data in a field named 'file' (curl -F file=@customers.xlsx).",
        )
    with _readable():
        reader = await request.multipart()
    return UploadForm(reader, accepted)


# Each request's options are loaded by one schema (shared.imports.options), the one the API document shows.
UPLOAD_SCHEMA = UploadOptionsSchema()
START_SCHEMA = StartOptionsSchema()
PREVIEW_SCHEMA = PreviewOptionsSchema()
UPLOAD_OPTIONS = frozenset(UPLOAD_SCHEMA.fields)


async def _callback_url(request: web.Request, value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return await check_callback_url(value, allow_private=request.app[SETTINGS].webhook_allow_private)
    except OptionError as exc:
        raise Problem(422, "Invalid callback_url", str(exc), errors=field_errors(exc.errors)) from None


def _options(schema: Schema, values: dict[str, Any], what: str) -> dict[str, Any]:
    """{"options": ImportOptions, and the request's other options given}: a 422 naming each one wrong."""
    unknown = sorted(set(values) - set(schema.fields))
    if unknown:
        raise field_problem(
            422, "Unknown field", f"{unknown[0]!r} is not an option of {what}", unknown[0], "Unknown field."
        )
    try:
        return load_options(schema, values)
    except OptionError as exc:
        raise Problem(422, "Invalid import options", str(exc), errors=field_errors(exc.errors)) from None


# Uploads being received or checked, per app (one app per gateway process): MAX_CONCURRENT_UPLOADS.
_UPLOADS_IN_FLIGHT: weakref.WeakKeyDictionary[web.Application, int] = weakref.WeakKeyDictionary()
UPLOADS_RETRY_AFTER_S = 5


def _uploads_full(app: web.Application) -> bool:
    return _UPLOADS_IN_FLIGHT.get(app, 0) >= app[SETTINGS].max_concurrent_uploads


@contextlib.contextmanager
def _upload_slot(app: web.Application) -> Iterator[None]:
    """Hold one of this process's MAX_CONCURRENT_UPLOADS slots, or answer 503 (before any body is read)."""
    if _uploads_full(app):
        limit = app[SETTINGS].max_concurrent_uploads
        raise Problem(
            503,
            "Too many uploads in progress",
            f"This server is already receiving {limit} uploads, its limit (MAX_CONCURRENT_UPLOADS); "
            f"try again in {UPLOADS_RETRY_AFTER_S} s.",
            headers={"Retry-After": str(UPLOADS_RETRY_AFTER_S)},
        )
    _UPLOADS_IN_FLIGHT[app] = _UPLOADS_IN_FLIGHT.get(app, 0) + 1
    app[METRICS].uploads_in_progress.inc()
    try:
        yield
    finally:
        _UPLOADS_IN_FLIGHT[app] -= 1
        app[METRICS].uploads_in_progress.dec()


async def _expect_upload(request: web.Request) -> None:
    """`Expect: 100-continue`: ask for the body only when the upload would be taken. A request without a
    valid key, over MAX_UPLOAD_MB by its Content-Length, or arriving while every upload slot is busy
    gets no 100 Continue: the middleware answers its 401/413/503 and the client never sends the body.
    (aiohttp's default handler would say "continue" before the middleware had looked at anything.)"""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    settings = request.app[SETTINGS]
    try:
        auth.authenticate(request.headers, settings.keys)
    except Problem:
        return
    too_large = request.content_length is not None and request.content_length > settings.max_upload_bytes + 64 * 1024
    if too_large or _uploads_full(request.app):
        return
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0


@api.operation(
    "uploadFile",
    "Upload a workbook (.xlsx) or .csv of customers; answers at once with a job id",
    "imports",
    {
        201: api.ok(
            "preview=true: the file is stored (status `uploaded`) and previewed; nothing is imported "
            "until POST start_url. A preview not started within PREVIEW_TTL_S expires.",
            "UploadedPreview",
            "Location",
        ),
        202: api.ok("Accepted: the job is queued. Follow it at Location.", "UploadAccepted", "Location"),
        413: api.problem(
            "The upload is over MAX_UPLOAD_MB, the workbook would inflate past the limit, a form "
            "field is over 64 KB, or the file holds more rows than MAX_ROWS_PER_JOB (estimated "
            "from its first rows)."
        ),
        415: api.problem("Not multipart/form-data; or not a workbook or CSV (legacy .xls, encrypted, binary)."),
        422: api.problem(
            "An option is invalid (dry_run, preview, mapping, header_row, sheet, encoding, callback_url); "
            "the file is "
            "not a readable workbook (damaged, suspicious compression, malformed XML); or "
            f"{_COLUMNS_UNFIT}.",
            schema="ColumnsProblem",
        ),
        503: api.problem(
            f"{api.NO_DATABASE} Or this server is already receiving MAX_CONCURRENT_UPLOADS uploads.",
            "RetryAfter",
        ),
    },
    parameters=[api.query(options.UploadOptionsSchema)],
    body={
        "required": True,
        "description": "The file in a part named `file`; the options may come as form fields instead "
        "of query parameters (before or after the file, not both).",
        "content": {"multipart/form-data": {"schema": "UploadForm"}},
    },
    bad_request="an empty file, no part named `file` or two of them, an unknown form field, an option "
    "given both in the query and the form, a malformed multipart body",
    description="The container and the header are checked at once, from the first rows. Nothing is "
    "queued for a rejected file.",
)
@routes.post("/upload", expect_handler=_expect_upload)
@params.accepts(*UPLOAD_OPTIONS)
async def upload(request: web.Request) -> web.Response:
    with _upload_slot(request.app):
        return await _upload(request)


async def _upload(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    jobs = request.app[JOBS]
    limit = settings.max_upload_bytes
    too_large = Problem(413, "Upload too large", f"The upload is larger than the limit of {settings.max_upload_mb} MB.")
    # read_chunk() is not bounded by client_max_size: refuse early by header, count while streaming.
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        metrics.upload("too_large")
        raise too_large
    form = await _form(request, UPLOAD_OPTIONS)
    part = await form.open_file()
    filename = _utf8(part.filename or "upload")
    try:
        received = await jobs.receive(form.chunks())
    except UploadTooLarge:
        metrics.upload("too_large")
        raise too_large from None
    try:
        given = _options(UPLOAD_SCHEMA, {name: form.option(request, name) for name in UPLOAD_OPTIONS}, "an upload")
        chosen, dry_run, preview = given["options"], given.get("dry_run", False), given.get("preview", False)
        callback_url = await _callback_url(request, given.get("callback_url"))
        job = await jobs.upload(
            UploadRequest(
                upload=received,
                filename=filename,
                options=chosen,
                dry_run=dry_run,
                preview=preview,
                callback_url=callback_url,
                request_id=request_id_var.get(),
                uploaded_by=auth.current_key.get(),
            )
        )
    except UploadRejected:
        metrics.upload("rejected")
        raise  # the middleware answers it (400/413/415/422)
    finally:
        jobs.store.discard(received.path)  # the partial file, if it was not committed under the job id
    metrics.upload("accepted", received.size)
    status_url = f"/jobs/{job['job_id']}"
    if preview:
        job["status_url"] = status_url
        job["start_url"] = f"{status_url}/start"
        return json_response(job, status=201, headers={"Location": status_url})
    return _accepted(job)


def _accepted(job: dict[str, Any]) -> web.Response:
    """202: the job is queued; follow it at Location."""
    status_url = f"/jobs/{job['job_id']}"
    return json_response(
        {
            "job_id": job["job_id"],
            "status": job["status"],
            "status_url": status_url,
            "filename": job["filename"],
            "dry_run": job["dry_run"],
        },
        status=202,
        headers={"Location": status_url},
    )


@api.operation(
    "startJob",
    "Import a previewed upload, with options replacing the upload's",
    "imports",
    {
        202: api.ok("Accepted: the job is queued. Follow it at Location.", "UploadAccepted", "Location"),
        404: api.NO_JOB,
        409: api.problem("The job is not an uploaded preview waiting to be started."),
        413: api.problem("The body is over the server's limit (1 MB)."),
        422: api.problem(f"An unknown or invalid option; or {_COLUMNS_UNFIT}.", schema="ColumnsProblem"),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.JOB_ID],
    body=api.json_body(
        "StartOptions",
        "Each option is optional; no body starts the job with the upload's options.",
        required=False,
    ),
    bad_request=f"{api.BAD_JOB_ID}; malformed JSON, or a body that is not an object",
)
@routes.post("/jobs/{id}/start")
async def start(request: web.Request) -> web.Response:
    job_id = params.job_id(request)
    body = await params.json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise Problem(400, "Bad request", "The body must be a JSON object.")
    given = _options(START_SCHEMA, body, "a start")
    job = await request.app[JOBS].start(
        job_id,
        given["options"],
        dry_run=given.get("dry_run"),
        callback_url=await _callback_url(request, given.get("callback_url")),
    )
    return _accepted(job)


@api.operation(
    "previewAgain",
    "Read a preview's stored file again with another header row, sheet or encoding",
    "imports",
    {
        200: api.ok(
            "The same job (still `uploaded`) with its new preview; nothing was uploaded again. "
            "A start without options now uses this reading.",
            "UploadedPreview",
        ),
        404: api.NO_JOB,
        409: api.problem("The job is not an uploaded preview (it was started, or has expired)."),
        413: api.problem("The body is over the server's limit (1 MB)."),
        422: api.problem(
            "An unknown or invalid option, a sheet the workbook does not have, an encoding that does not fit the file.",
            schema="ColumnsProblem",
        ),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.JOB_ID],
    body=api.json_body(
        "PreviewOptions",
        "Each option is optional; the header row and the mapping are found anew unless given.",
        required=False,
    ),
    bad_request=f"{api.BAD_JOB_ID}; malformed JSON, or a body that is not an object",
)
@routes.post("/jobs/{id}/preview")
async def preview_again(request: web.Request) -> web.Response:
    """An uploaded preview read again from its stored file with other header_row, sheet or encoding:
    200 with the same job and its new preview (nothing uploaded again); 409 once it is no preview."""
    job_id = params.job_id(request)
    body = await params.json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise Problem(400, "Bad request", "The body must be a JSON object.")
    job = await request.app[JOBS].preview_again(job_id, _options(PREVIEW_SCHEMA, body, "a preview")["options"])
    job["status_url"] = f"/jobs/{job_id}"
    job["start_url"] = f"/jobs/{job_id}/start"
    return json_response(job)


@api.operation(
    "deletePreview",
    "Discard a preview that will not be started: the job and its stored file are deleted",
    "imports",
    {
        204: api.empty("Deleted: the job is gone (404 from now on) and so is its file."),
        404: api.NO_JOB,
        409: api.problem("The job is not a preview (it was started): cancel or revert it instead."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.JOB_ID],
    bad_request=api.BAD_JOB_ID,
)
@routes.delete("/jobs/{id}")
async def discard_preview(request: web.Request) -> web.Response:
    """A preview that will not be started: 204, the job and its stored file gone; 409 for any other job."""
    await request.app[JOBS].discard_preview(params.job_id(request))
    return web.Response(status=204)


@api.operation(
    "getJobEvents",
    "Follow a job live (Server-Sent Events) until it ends",
    "imports",
    {
        200: {
            "description": "An event stream: `progress` after every committed batch, then `completed` "
            "or `failed`, then the end; each event's data is the job document (as GET /jobs/{id}). "
            "A job that already ended answers its final event at once. Comments keep the "
            "connection alive.",
            "headers": api.headers(),
            "content": {
                "text/event-stream": {
                    # One event, as an EventSource (or a tool reading the stream) parses it.
                    "schema": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string", "description": "Pass it back as Last-Event-ID."},
                            "event": {"type": "string", "enum": ["progress", "completed", "failed"]},
                            "data": {
                                "type": "string",
                                "description": "The job document (as GET /jobs/{id}), JSON.",
                                "contentMediaType": api.JSON,
                                "contentSchema": {"$ref": "#/components/schemas/Job"},
                            },
                            "retry": {"type": "integer"},
                        },
                        "required": ["data"],
                    },
                    "example": 'id: 1718000000000-0\nevent: progress\ndata: {"job_id": "...", ...}\n\n',
                }
            },
        },
        404: api.NO_JOB,
        503: api.DB_UNAVAILABLE,
    },
    parameters=[
        api.JOB_ID,
        {
            "name": "Last-Event-ID",
            "in": "header",
            "description": "The id of the last event received: the stream resumes after it.",
            "schema": {"type": "string"},
        },
    ],
    bad_request=api.BAD_JOB_ID,
)
@routes.get("/jobs/{id}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: `progress` after every committed batch, then `completed` or `failed`, then
    the end. Resumes after `Last-Event-ID`; a comment every SSE_KEEPALIVE_S keeps proxies from cutting it."""
    stream = await request.app[JOBS].follow(params.job_id(request), request.headers.get("Last-Event-ID"))
    keepalive = request.app[SETTINGS].sse_keepalive_s
    # Headers go out before the handler returns: the request id too (the middleware adds it later).
    headers = {"X-Accel-Buffering": "no", "X-Request-ID": request_id_var.get() or ""}
    async with sse_response(request, ping_interval=keepalive, headers=headers) as response:
        async for event_id, event, document in stream:
            await response.send(dumps(document).decode(), id=event_id, event=event)
    return response


@api.operation(
    "listJobs",
    "Recent import jobs, newest first",
    "imports",
    {
        200: api.ok("A page of jobs (without their row errors).", "JobPage"),
        422: api.problem("limit out of range."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[
        api.query(
            api_schemas.page_query(
                *JOBS_LIMIT, status=api_schemas.JOB_STATUS_FILTER, include_previews=api_schemas.INCLUDE_PREVIEWS
            )
        )
    ],
    bad_request=api.BAD_CURSOR,
    description="Previews (status `uploaded`) are left out unless `status` names them or "
    "`include_previews=true`: a page that previews files and abandons them does not fill the list.",
)
@routes.get("/jobs")
@params.accepts("limit", "cursor", "status", "include_previews")
async def jobs_index(request: web.Request) -> web.Response:
    """Recent jobs; previews (status `uploaded`) only when asked: ?status=uploaded or ?include_previews=true."""
    limit = params.limit_param(request, default=JOBS_LIMIT[0], maximum=JOBS_LIMIT[1])
    page = await request.app[JOBS].list_page(
        limit=limit, cursor=params.cursor_param(request), statuses=_listed_statuses(request)
    )
    return json_response(page)


def _listed_statuses(request: web.Request) -> tuple[str, ...] | None:
    """`status` (one or several, comma-separated) lists those; else every status but `uploaded`, unless
    `include_previews`; None: every job."""
    previews = params.bool_param(request, "include_previews")
    raw = request.query.get("status")
    if raw is None:
        return None if previews else LISTED_STATUSES
    wanted = tuple(dict.fromkeys(raw.split(",")))
    wrong = [status for status in wanted if status not in STATUSES]
    if wrong:
        allowed = ", ".join(STATUSES)
        raise field_problem(
            422,
            "Invalid query parameter",
            f"status must be one or more of {allowed} (comma-separated), got {wrong[0]!r}",
            "status",
            f"One or more of {allowed}.",
        )
    return (*wanted, UPLOADED) if previews and UPLOADED not in wanted else wanted


@api.operation(
    "getJob",
    "One import job: status, counters, progress, the first row errors",
    "imports",
    {200: api.ok("The job.", "Job"), 404: api.NO_JOB, 503: api.DB_UNAVAILABLE},
    parameters=[api.JOB_ID],
    bad_request=api.BAD_JOB_ID,
)
@routes.get("/jobs/{id}")
async def job_detail(request: web.Request) -> web.Response:
    return json_response(await request.app[JOBS].get(params.job_id(request)))


@api.operation(
    "listJobErrors",
    "Every stored row error of a job (JSON pages, or ?format=csv)",
    "imports",
    {
        200: {
            "description": "A page of row errors; with format=csv all of them as a download.",
            "headers": api.headers("ContentDisposition"),
            "content": {
                api.JSON: {"schema": "JobErrorsPage"},
                api.CSV: {"schema": {"type": "string"}, "example": "row,column,field,value,message\r\n"},
            },
        },
        404: api.NO_JOB,
        422: api.problem("limit out of range, or format not json or csv."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.JOB_ID, api.query(api_schemas.page_query(*JOB_ERRORS_LIMIT, format=api_schemas.ERRORS_FORMAT))],
    bad_request=f"{api.BAD_JOB_ID}; {api.BAD_CURSOR}",
)
@routes.get("/jobs/{id}/errors")
@params.accepts("limit", "cursor", "format")
async def job_errors(request: web.Request) -> web.Response:
    job_id = params.job_id(request)
    kind = params.choice_param(request, "format", ("json", "csv"), default="json")
    # A bad limit is a 422 whatever the format (as the document says), though the csv sends every error.
    limit = params.limit_param(request, default=JOB_ERRORS_LIMIT[0], maximum=JOB_ERRORS_LIMIT[1])
    page = await request.app[JOBS].errors(
        job_id, limit=None if kind == "csv" else limit, cursor=params.cursor_param(request)
    )
    if kind == "json":
        return json_response(page)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "column", "field", "value", "message"])
    for item in page["items"]:
        value = excel_safe(item["value"]) if item["value"] else ""  # a cell from the file: never a formula
        writer.writerow([item["row"], item["column"] or "", item["field"] or "", value, item["message"]])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-errors.csv"'},
    )


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@api.operation(
    "getRejectedRows",
    "The invalid rows as uploaded, plus an `errors` column: fix them and upload the file as it is",
    "imports",
    {
        200: api.download("The rejected rows.", {api.CSV: "", api.XLSX: ""}),
        404: api.NO_JOB,
        422: api.problem("format not csv or xlsx."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[
        api.JOB_ID,
        api.query(api.fields_schema({"format": api_schemas.file_format(("csv", "xlsx"), "csv", "The file's format")})),
    ],
    bad_request=api.BAD_JOB_ID,
)
@routes.get("/jobs/{id}/rejected")
@params.accepts("format")
async def job_rejected(request: web.Request) -> web.Response:
    """The invalid rows as uploaded plus an `errors` column: fix them, upload the file as it is."""
    job_id = params.job_id(request)
    kind = params.choice_param(request, "format", ("csv", "xlsx"), default="csv")
    header, rows = await request.app[JOBS].rejected(job_id)
    body = await asyncio.to_thread(encode_file, kind, header, rows, "rejected")
    content_type = "text/csv; charset=utf-8" if kind == "csv" else XLSX_TYPE
    return web.Response(
        body=body,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="job-{job_id}-rejected.{kind}"',
        },
    )


# -- undo: what a job changed, revert, cancel ----------------------------------------------------------
def _job_accepted(job: dict[str, Any]) -> web.Response:
    """202 with the queued job's document; follow it at Location."""
    return json_response(job, status=202, headers={"Location": f"/jobs/{job['job_id']}"})


@api.operation(
    "listJobChanges",
    "What a job did to each customer (JSON pages, or ?format=csv: a line per changed field)",
    "imports",
    {
        200: {
            "description": "A page of customers the job inserted, updated, deleted or restored; with "
            "format=csv all of them as a download.",
            "headers": api.headers("ContentDisposition"),
            "content": {
                api.JSON: {"schema": "JobChangesPage"},
                api.CSV: {
                    "schema": {"type": "string"},
                    "example": "customer_id,email,action,field,old,new\r\n",
                },
            },
        },
        404: api.NO_JOB,
        422: api.problem("limit out of range, or format not json or csv."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.JOB_ID, api.query(api_schemas.page_query(*JOB_ERRORS_LIMIT, format=api_schemas.ERRORS_FORMAT))],
    bad_request=f"{api.BAD_JOB_ID}; {api.BAD_CURSOR}",
)
@routes.get("/jobs/{id}/changes")
@params.accepts("limit", "cursor", "format")
async def job_changes(request: web.Request) -> web.StreamResponse:
    """Each customer the job inserted, updated, deleted or restored, and what changed (JSON pages, or
    every one as CSV: a line per changed field, streamed a page at a time)."""
    job_id = params.job_id(request)
    kind = params.choice_param(request, "format", ("json", "csv"), default="json")
    jobs = request.app[JOBS]
    # A bad limit is a 422 whatever the format (as the document says), though the csv pages by itself.
    limit = params.limit_param(request, default=JOB_ERRORS_LIMIT[0], maximum=JOB_ERRORS_LIMIT[1])
    if kind == "json":
        return json_response(await jobs.changes(job_id, limit=limit, cursor=params.cursor_param(request)))
    # The first page is read before anything is sent: an unknown job is still a 404, MySQL down a 503.
    page = await jobs.changes(job_id, limit=CHANGES_CSV_PAGE, cursor=params.cursor_param(request))
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="job-{job_id}-changes.csv"',
        "X-Request-ID": request_id_var.get() or "",  # the middleware's copy would come too late
    }
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    await response.write(_changes_csv(page["items"], header=True))
    while page["next_cursor"] is not None:
        page = await jobs.changes(job_id, limit=CHANGES_CSV_PAGE, cursor=page["next_cursor"])
        await response.write(_changes_csv(page["items"]))
    await response.write_eof()
    return response


CHANGES_CSV_PAGE = 1000


def _changes_csv(items: list[dict[str, Any]], *, header: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(["customer_id", "email", "action", "field", "old", "new"])
    for item in items:
        for name, (old, new) in item["changes"].items() or [(None, (None, None))]:
            cells = [old, new] if name != "attributes" else [dumps(old).decode(), dumps(new).decode()]
            # Values customers and files gave: never a formula in a spreadsheet.
            writer.writerow(
                [item["customer_id"], excel_safe(item["email"] or ""), item["action"], name or "",
                 *(excel_safe(cell) if cell is not None else "" for cell in cells)]
            )  # fmt: skip
    return out.getvalue().encode("utf-8")


@api.operation(
    "revertJob",
    "Undo a completed or cancelled import (or bulk delete): a `revert` job",
    "imports",
    {
        202: api.JOB_QUEUED,
        404: api.NO_JOB,
        409: api.problem(
            "The job is not a finished import or bulk delete (running, failed, a dry run, a revert), or "
            "was already reverted."
        ),
        413: api.problem("The body is over the server's limit (1 MB)."),
        422: api.problem("An unknown field, or force not a boolean."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.JOB_ID],
    body=api.json_body(
        "RevertOptions",
        "Optional. Customers changed since the job are conflicts, left as they are and "
        "listed in the revert's errors (`row` is the customer id), unless force.",
        required=False,
    ),
    bad_request=f"{api.BAD_JOB_ID}; malformed JSON",
)
@routes.post("/jobs/{id}/revert")
async def revert_job(request: web.Request) -> web.Response:
    """Queue a revert of a completed or cancelled import (or bulk delete): body optional, `{"force": true}`
    reverts customers changed since as well."""
    job_id = params.job_id(request)
    body = await params.json_body(request) if await request.read() else {}
    if not isinstance(body, dict):
        raise Problem(422, "Invalid body", 'The body must be a JSON object, like {"force": true}.')
    unknown = sorted(set(body) - {"force"})
    if unknown:
        raise field_problem(
            422, "Unknown field", f"{unknown[0]!r} is not an option of a revert", unknown[0], "Unknown field."
        )
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise field_problem(422, "Invalid field", "force must be true or false", "force", "Not a boolean.")
    job = await request.app[JOBS].revert(
        job_id, force=force, requested_by=auth.current_key.get(), request_id=request_id_var.get()
    )
    return _job_accepted(job)


@api.operation(
    "cancelJob",
    "Cancel a queued or running job (a running one stops at its next batch; its parts too)",
    "imports",
    {
        200: api.ok("The job, `cancelled`; what it committed stays (and can be reverted).", "Job"),
        404: api.NO_JOB,
        409: api.problem("The job has ended (or is a preview: DELETE /jobs/{id} discards one)."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.JOB_ID],
    bad_request=api.BAD_JOB_ID,
)
@routes.post("/jobs/{id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """A queued job ends `cancelled` at once; a running one stops at its next batch."""
    return json_response(await request.app[JOBS].cancel(params.job_id(request)))

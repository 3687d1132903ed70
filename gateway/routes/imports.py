"""Uploads and import jobs."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from gateway import params
from gateway.keys import DB_POOL, METRICS, REDIS, SETTINGS, STORE
from gateway.problems import Problem, field_problem
from shared.jobs import BadCursor, JobNotFound, get_job, list_job_errors, list_jobs, submit_upload
from shared.readers import UploadRejected
from shared.storage import UploadTooLarge

routes = web.RouteTableDef()
CHUNK = 256 * 1024


def _bad_cursor() -> Problem:
    return field_problem(
        400, "Invalid cursor", "cursor is not one this API issued.", "cursor", "Not a cursor this API issued."
    )


async def _file_field(request: web.Request) -> BodyPartReader:
    if not request.content_type.startswith("multipart/"):
        raise Problem(
            415,
            "Unsupported Media Type",
            "Send the file as multipart/form-data in a field named 'file' (curl -F file=@customers.xlsx).",
        )
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise field_problem(
                400, "Missing file", "The multipart form has no field named 'file'.", "file", "Missing."
            )
        if isinstance(part, BodyPartReader) and part.name == "file":
            return part
        if isinstance(part, BodyPartReader):
            await part.release()


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


@routes.post("/upload")
async def upload(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    dry_run = params.bool_param(request, "dry_run")
    limit = settings.max_upload_bytes
    # read_chunk() is not bounded by client_max_size: refuse early by header, count while streaming.
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        request.app[METRICS].uploads["too_large"] += 1
        raise Problem(413, "Upload too large", f"The upload is larger than the limit of {settings.max_upload_mb} MB.")
    part = await _file_field(request)
    filename = part.filename or "upload"
    try:
        job = await submit_upload(
            settings=settings,
            pool=request.app[DB_POOL],
            arq=request.app[REDIS],
            store=request.app[STORE],
            chunks=_chunks(part),
            filename=filename,
            dry_run=dry_run,
        )
    except UploadTooLarge:
        request.app[METRICS].uploads["too_large"] += 1
        raise Problem(
            413, "Upload too large", f"The upload is larger than the limit of {settings.max_upload_mb} MB."
        ) from None
    except UploadRejected as exc:
        request.app[METRICS].uploads["rejected"] += 1
        raise Problem(exc.status, exc.title, exc.detail) from None
    request.app[METRICS].uploads["accepted"] += 1
    status_url = f"/jobs/{job['job_id']}"
    return web.json_response(
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


@routes.get("/jobs")
async def jobs_index(request: web.Request) -> web.Response:
    limit = params.limit_param(request, default=20, maximum=200)
    try:
        page = await list_jobs(request.app[DB_POOL], limit=limit, cursor=request.query.get("cursor"))
    except BadCursor:
        raise _bad_cursor() from None
    return web.json_response(page)


@routes.get("/jobs/{id}")
async def job_detail(request: web.Request) -> web.Response:
    job_id = params.job_id(request)
    try:
        return web.json_response(await get_job(request.app[DB_POOL], job_id))
    except JobNotFound:
        raise Problem(404, "Not Found", f"No import job {job_id}.") from None


@routes.get("/jobs/{id}/errors")
async def job_errors(request: web.Request) -> web.Response:
    job_id = params.job_id(request)
    as_csv = request.query.get("format", "json").lower()
    if as_csv not in ("json", "csv"):
        raise field_problem(
            422, "Invalid query parameter", "format must be json or csv", "format", "Must be json or csv."
        )
    limit = None if as_csv == "csv" else params.limit_param(request, default=100, maximum=1000)
    try:
        page = await list_job_errors(request.app[DB_POOL], job_id, limit=limit, cursor=request.query.get("cursor"))
    except JobNotFound:
        raise Problem(404, "Not Found", f"No import job {job_id}.") from None
    except BadCursor:
        raise _bad_cursor() from None
    if as_csv == "json":
        return web.json_response(page)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "column", "message"])
    for item in page["items"]:
        writer.writerow([item["row"], item["column"] or "", item["message"]])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-errors.csv"'},
    )

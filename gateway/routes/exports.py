"""File downloads: the import template, and every customer as CSV or xlsx, streamed."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from gateway.http import params
from gateway.http.keys import DB_POOL, SETTINGS
from gateway.http.problems import field_problem
from gateway.openapi import operations as api
from gateway.openapi import schemas as api_schemas
from shared.customers import exports
from shared.infra.logs import request_id_var

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def _format(request: web.Request, default: str) -> str:
    raw = request.query.get("format")
    value = default if raw is None else raw.strip().lower()  # given empty: not a format
    if value not in exports.FORMATS:
        raise field_problem(
            422,
            "Invalid query parameter",
            f"format must be csv or xlsx, got {str(raw)[:20]!r}",
            "format",
            "Must be csv or xlsx.",
        )
    return value


def _download_headers(fmt: str, filename: str) -> dict[str, str]:
    return {
        "Content-Type": exports.content_type(fmt),
        "Content-Disposition": f'attachment; filename="{filename}"',
    }


@api.operation(
    "getTemplate",
    "An empty import file: the header row (with a note on each column in the xlsx)",
    "imports",
    {200: api.download("The template.", {api.XLSX: "", api.CSV: ""}), 422: api.problem("format not xlsx or csv.")},
    parameters=[
        api.query(api.fields_schema({"format": api_schemas.file_format(("xlsx", "csv"), "xlsx", "The file's format")}))
    ],
)
@routes.get("/template")
@params.accepts("format")
async def import_template(request: web.Request) -> web.Response:
    fmt = _format(request, default="xlsx")
    return web.Response(body=exports.template(fmt), headers=_download_headers(fmt, f"customers-template.{fmt}"))


@api.operation(
    "exportCustomers",
    "Every matching customer as a file, streamed (importing it back changes nothing)",
    "customers",
    {
        200: api.download("The customers.", {api.CSV: "", api.XLSX: ""}),
        422: api.problem("format not csv or xlsx, or q too long."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[
        api.query(
            api.fields_schema(
                {
                    "format": api_schemas.file_format(("csv", "xlsx"), "csv", "The file's format"),
                    "q": api_schemas.SEARCH,
                }
            )
        )
    ],
)
@routes.get("/customers/export")
@params.accepts("format", "q")
async def export_customers(request: web.Request) -> web.StreamResponse:
    fmt = _format(request, default="csv")
    search = params.text_param(request, "q", max_length=100)
    chunks = exports.export_chunks(
        request.app[DB_POOL], fmt=fmt, search=search, timeout_s=request.app[SETTINGS].db_timeout_s
    )
    async with contextlib.aclosing(chunks):
        # The first page is read before anything is sent: MySQL down is still a proper 503.
        first = await anext(chunks)
        headers = _download_headers(fmt, exports.export_filename(fmt))
        headers["X-Request-ID"] = request_id_var.get() or ""  # the middleware's copy would come too late
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":  # the headers only: aiohttp would send whatever is written
            await response.write_eof()
            return response
        try:
            await response.write(first)
            del first
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            log.info("export abandoned: the client went away")
        except Exception:
            # The headers are gone: the only way left to say "failed" is to cut the connection, so no
            # client takes a truncated file for the whole export (the error is logged upstream).
            if request.transport is not None:
                request.transport.abort()
            raise
    return response

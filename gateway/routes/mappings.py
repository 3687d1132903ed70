"""Remembered mappings: GET /mappings lists them, DELETE /mappings/{id} forgets one."""

from __future__ import annotations

from aiohttp import web

from gateway.http import params
from gateway.http.keys import MAPPINGS
from gateway.http.problems import Problem, field_problem
from gateway.http.responses import json_response
from gateway.openapi import operations as api
from gateway.openapi import schemas as api_schemas
from shared.imports.mappings import MappingNotFound

routes = web.RouteTableDef()

# Answers these handlers give, as the API document describes them.
_MAPPING_ID = api.path_id("The mapping's id (from GET /mappings).", {"type": "integer", "minimum": 1})


LIMIT = (50, 500)  # default, maximum


def _mapping_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise field_problem(
            400,
            "Invalid id",
            f"mapping id must be a positive whole number, got {raw[:40]!r}",
            "id",
            "Must be a positive whole number.",
        )
    return int(raw)


@api.operation(
    "listMappings",
    "The remembered mappings, most recently used first",
    "imports",
    {
        200: api.ok(
            "A page of mappings: the file header each is remembered under (its cells normalised, in "
            "order), the mapping, the file it came from and when an import last started with it. A "
            "preview of a file with that header suggests the mapping (`reason: remembered`).",
            "RememberedMappingPage",
        ),
        422: api.problem("limit out of range."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.query(api_schemas.page_query(*LIMIT))],
    bad_request=api.BAD_CURSOR,
)
@routes.get("/mappings")
@params.accepts("limit", "cursor")
async def list_mappings(request: web.Request) -> web.Response:
    limit = params.limit_param(request, default=LIMIT[0], maximum=LIMIT[1])
    page = await request.app[MAPPINGS].list_page(limit=limit, cursor=params.cursor_param(request))
    return json_response(page)


@api.operation(
    "forgetMapping",
    "Forget a remembered mapping: files with its header are no longer suggested it",
    "imports",
    {204: api.empty("Forgotten."), 404: api.problem("No remembered mapping of that id."), 503: api.DB_UNAVAILABLE},
    parameters=[_MAPPING_ID],
    bad_request="an id that is not a positive whole number",
)
@routes.delete("/mappings/{id}")
@params.accepts()
async def forget_mapping(request: web.Request) -> web.Response:
    mapping_id = _mapping_id(request)
    try:
        await request.app[MAPPINGS].delete(mapping_id)
    except MappingNotFound as exc:
        raise Problem(404, "Not Found", str(exc)) from None
    return web.Response(status=204)

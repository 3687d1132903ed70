"""Remembered mappings: GET /mappings lists them, DELETE /mappings/{id} forgets one."""

from __future__ import annotations

from aiohttp import web

from gateway.http import params
from gateway.http.keys import MAPPINGS
from gateway.http.problems import Problem, field_problem
from gateway.http.responses import json_response
from shared.imports.mappings import MappingNotFound

routes = web.RouteTableDef()

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


@routes.get("/mappings")
@params.accepts("limit", "cursor")
async def list_mappings(request: web.Request) -> web.Response:
    limit = params.limit_param(request, default=LIMIT[0], maximum=LIMIT[1])
    page = await request.app[MAPPINGS].list_page(limit=limit, cursor=params.cursor_param(request))
    return json_response(page)


@routes.delete("/mappings/{id}")
@params.accepts()
async def forget_mapping(request: web.Request) -> web.Response:
    mapping_id = _mapping_id(request)
    try:
        await request.app[MAPPINGS].delete(mapping_id)
    except MappingNotFound as exc:
        raise Problem(404, "Not Found", str(exc)) from None
    return web.Response(status=204)

"""Customer CRUD. Handlers parse and check input, call one CustomerService method, shape the answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.http import auth, params
from gateway.http.keys import CUSTOMERS, JOBS, METRICS
from gateway.http.problems import Problem, field_errors, field_problem
from gateway.http.responses import JSON, dumps, json_response
from shared.customers.cache import CacheUnavailable
from shared.customers.service import MAX_LIMIT, EmailTaken, InvalidInput, NotFound, PreconditionFailed
from shared.infra.logs import request_id_var

routes = web.RouteTableDef()


def _not_found(customer_id: int) -> Problem:
    return Problem(404, "Not Found", f"No customer {customer_id}.")


def _invalid(exc: InvalidInput) -> Problem:
    return Problem(422, "Validation failed", str(exc), errors=field_errors(exc.errors))


def _stale(exc: PreconditionFailed) -> Problem:
    return Problem(412, "Precondition Failed", str(exc), headers={"ETag": params.etag(exc.current_version)})


def _taken(exc: EmailTaken) -> Problem:
    return field_problem(409, "Conflict", str(exc), "email", "Already in use.")


def _document_response(doc: dict[str, Any], cache: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=dumps(doc),
        content_type=JSON,
        headers={"ETag": params.etag(int(doc["version"])), "X-Cache": cache},
    )


@routes.get("/customers")
@params.accepts("limit", "cursor", "q", "sort", "count")
async def list_customers(request: web.Request) -> web.Response:
    limit = params.limit_param(request, default=50, maximum=MAX_LIMIT)
    search = params.text_param(request, "q", max_length=100)
    sort = params.text_param(request, "sort", max_length=40)
    count = params.parse_bool("count", request.query.get("count"))
    try:
        body, cache = await request.app[CUSTOMERS].list_page(
            limit=limit, cursor=params.cursor_param(request), search=search, sort=sort, count=count
        )
    except InvalidInput as exc:
        raise _invalid(exc) from None
    request.app[METRICS].cache_result(cache)
    return web.Response(body=body, content_type=JSON, headers={"X-Cache": cache})


@routes.get("/customers/cache")
@params.accepts("limit", "cursor")
async def cached_customers(request: web.Request) -> web.Response:
    limit = params.limit_param(request, default=50, maximum=MAX_LIMIT)
    try:
        page = await request.app[CUSTOMERS].cached(cursor=params.cursor_param(request), limit=limit)
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except CacheUnavailable:
        raise Problem(503, "Service Unavailable", "Redis is unavailable; the cache cannot be listed.") from None
    return json_response(page)


@routes.get("/customers/{id}")
async def get_customer(request: web.Request) -> web.Response:
    customer_id = params.customer_id(request)
    try:
        found = await request.app[CUSTOMERS].get(customer_id)
    except NotFound:
        raise _not_found(customer_id) from None
    request.app[METRICS].cache_result(found.cache)
    headers = {"ETag": params.etag(found.version), "X-Cache": found.cache}
    if params.none_match(request, found.version):
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, content_type=JSON, headers=headers)


@routes.get("/customers/{id}/history")
@params.accepts("limit", "cursor")
async def customer_history(request: web.Request) -> web.Response:
    customer_id = params.customer_id(request)
    limit = params.limit_param(request, default=50, maximum=MAX_LIMIT)
    try:
        page = await request.app[CUSTOMERS].history(customer_id, limit=limit, cursor=params.cursor_param(request))
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except NotFound:
        raise _not_found(customer_id) from None
    return json_response(page)


@routes.post("/customers")
async def create_customer(request: web.Request) -> web.Response:
    data = await params.json_body(request)
    try:
        doc, cache = await request.app[CUSTOMERS].create(data, actor=auth.current_key.get())
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except EmailTaken as exc:
        raise _taken(exc) from None
    response = _document_response(doc, cache, status=201)
    response.headers["Location"] = f"/customers/{doc['id']}"
    return response


async def _replace(request: web.Request, *, partial: bool) -> web.Response:
    customer_id = params.customer_id(request)
    expected = params.if_match_version(request)
    data = await params.json_body(request)
    try:
        doc, cache = await request.app[CUSTOMERS].replace(
            customer_id, data, if_match=expected, partial=partial, actor=auth.current_key.get()
        )
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except NotFound:
        raise _not_found(customer_id) from None
    except PreconditionFailed as exc:
        raise _stale(exc) from None
    except EmailTaken as exc:
        raise _taken(exc) from None
    return _document_response(doc, cache)


@routes.put("/customers/{id}")
async def put_customer(request: web.Request) -> web.Response:
    return await _replace(request, partial=False)


@routes.patch("/customers/{id}")
async def patch_customer(request: web.Request) -> web.Response:
    return await _replace(request, partial=True)


@routes.delete("/customers/{id}")
async def delete_customer(request: web.Request) -> web.Response:
    customer_id = params.customer_id(request)
    expected = params.if_match_version(request)
    try:
        cache = await request.app[CUSTOMERS].delete(customer_id, if_match=expected, actor=auth.current_key.get())
    except NotFound:
        raise _not_found(customer_id) from None
    except PreconditionFailed as exc:
        raise _stale(exc) from None
    return web.Response(status=204, headers={"X-Cache": cache})


@routes.post("/customers/bulk-delete")
async def bulk_delete(request: web.Request) -> web.Response:
    """`{"q": "...", "expected_count": N}`: a `delete` job deleting every customer `q` matches (as GET
    /customers?q=; empty: every customer), once N is the number that match now (else 409)."""
    body = await params.json_body(request)
    if not isinstance(body, dict):
        raise Problem(422, "Invalid body", 'The body must be a JSON object: {"q": "...", "expected_count": N}.')
    unknown = sorted(set(body) - {"q", "expected_count"})
    if unknown:
        raise field_problem(
            422, "Unknown field", f"{unknown[0]!r} is not a field of a bulk delete", unknown[0], "Unknown field."
        )
    search = body.get("q", "")
    if not isinstance(search, str) or len(search) > 100:
        raise field_problem(
            422, "Invalid field", "q must be text of at most 100 characters", "q", "Text, at most 100 characters."
        )
    expected = body.get("expected_count")
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        raise field_problem(
            422, "Invalid field", "expected_count must be the number of customers q matches now", "expected_count",
            "A whole number, 0 or more.",
        )  # fmt: skip
    job = await request.app[JOBS].bulk_delete(
        search.strip() or None, expected, requested_by=auth.current_key.get(), request_id=request_id_var.get()
    )
    return json_response(job, status=202, headers={"Location": f"/jobs/{job['job_id']}"})

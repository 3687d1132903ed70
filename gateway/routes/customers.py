"""Customer CRUD. Handlers parse and check input, call one CustomerService method, shape the answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.http import auth, params
from gateway.http.keys import CUSTOMERS, JOBS, METRICS
from gateway.http.problems import Problem, field_errors, field_problem
from gateway.http.responses import JSON, dumps, json_response
from gateway.openapi import operations as api
from gateway.openapi import schemas as api_schemas
from shared.customers.cache import CacheUnavailable
from shared.customers.service import MAX_LIMIT, EmailTaken, InvalidInput, NotFound, PreconditionFailed
from shared.infra.logs import request_id_var

routes = web.RouteTableDef()

# `limit` of the paginated endpoints: (default, maximum), applied by the handlers and shown by the API document.
CUSTOMERS_LIMIT = (50, MAX_LIMIT)

# Answers these handlers give, as the API document describes them.
_WRITTEN = ("CustomerETag", "XCache")
_NOT_FOUND = api.problem("No such customer.")
_STALE = api.problem("If-Match (or the `version` in the body) is not the customer's current version.", "CustomerETag")
_TAKEN = api.problem("Another customer has this email (`errors` names `email`).")
_INVALID = api.problem("The body is not a valid customer: `errors` names each bad field.")
# What a replace or a change of one customer answers when it does not write.
_CHANGE_FAILURES = {
    404: _NOT_FOUND,
    409: _TAKEN,
    412: _STALE,
    413: api.TOO_LARGE,
    422: _INVALID,
    503: api.DB_UNAVAILABLE,
}
_BAD_WRITE = "no body, malformed JSON, a customer id that is not a positive whole number, a malformed If-Match"
_WRITE_BODY = (
    "All ten fields (absent ones become null). Text fields also take numbers (a phone or a postcode); "
    "first_name or last_name is required. The read-only fields GET answered may be sent back: "
    "`id` must be this customer's, `version` is checked like If-Match, the timestamps are ignored."
)


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


@api.operation(
    "listCustomers",
    "A page of customers, by id or by the field `sort` names",
    "customers",
    {
        200: api.ok("A page of customers.", "CustomerPage", "XCache"),
        422: api.problem("limit out of range, q too long, sort not a field, or count not a boolean."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[
        api.query(
            api_schemas.page_query(
                *CUSTOMERS_LIMIT, q=api_schemas.SEARCH, sort=api_schemas.CUSTOMER_SORT, count=api_schemas.CUSTOMER_COUNT
            )
        )
    ],
    bad_request=api.BAD_CURSOR,
    description="Cached in Redis per page until the next write.",
)
@routes.get("/customers")
@params.accepts("limit", "cursor", "q", "sort", "count")
async def list_customers(request: web.Request) -> web.Response:
    limit = params.limit_param(request, default=CUSTOMERS_LIMIT[0], maximum=CUSTOMERS_LIMIT[1])
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


@api.operation(
    "listCachedCustomers",
    "What Redis holds now, with each document's remaining TTL",
    "customers",
    {
        200: api.ok("A page of cached customers (SCAN order).", "CachedCustomerPage"),
        422: api.problem("limit out of range."),
        503: api.problem("Redis is unavailable."),
    },
    parameters=[api.query(api_schemas.page_query(*CUSTOMERS_LIMIT))],
    bad_request=api.BAD_CURSOR,
)
@routes.get("/customers/cache")
@params.accepts("limit", "cursor")
async def cached_customers(request: web.Request) -> web.Response:
    limit = params.limit_param(request, default=CUSTOMERS_LIMIT[0], maximum=CUSTOMERS_LIMIT[1])
    try:
        page = await request.app[CUSTOMERS].cached(cursor=params.cursor_param(request), limit=limit)
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except CacheUnavailable:
        raise Problem(503, "Service Unavailable", "Redis is unavailable; the cache cannot be listed.") from None
    return json_response(page)


@api.operation(
    "getCustomer",
    "One customer (Redis first)",
    "customers",
    {
        200: api.ok("The customer.", "Customer", *_WRITTEN),
        304: api.empty("Not modified: If-None-Match names the current version.", *_WRITTEN),
        404: _NOT_FOUND,
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.CUSTOMER_ID, api.IF_NONE_MATCH],
    bad_request="a customer id that is not a positive whole number",
)
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


@api.operation(
    "getCustomerHistory",
    "Every change of a customer, newest first (also for a deleted one)",
    "customers",
    {
        200: api.ok("A page of changes: who, when, through what, and each field's old and new value.", "HistoryPage"),
        404: api.problem("No customer ever had this id."),
        422: api.problem("limit out of range."),
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.CUSTOMER_ID, api.query(api_schemas.page_query(*CUSTOMERS_LIMIT))],
    bad_request=f"a customer id that is not a positive whole number; {api.BAD_CURSOR}",
)
@routes.get("/customers/{id}/history")
@params.accepts("limit", "cursor")
async def customer_history(request: web.Request) -> web.Response:
    customer_id = params.customer_id(request)
    limit = params.limit_param(request, default=CUSTOMERS_LIMIT[0], maximum=CUSTOMERS_LIMIT[1])
    try:
        page = await request.app[CUSTOMERS].history(customer_id, limit=limit, cursor=params.cursor_param(request))
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except NotFound:
        raise _not_found(customer_id) from None
    return json_response(page)


@api.operation(
    "createCustomer",
    "Create a customer",
    "customers",
    {
        201: api.ok("Created.", "Customer", *_WRITTEN, "Location"),
        409: _TAKEN,
        413: api.TOO_LARGE,
        422: _INVALID,
        503: api.DB_UNAVAILABLE,
    },
    body=api.json_body("CustomerIn", _WRITE_BODY.replace("All ten", "The ten")),
    bad_request="no body, or malformed JSON",
)
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


@api.operation(
    "replaceCustomer",
    "Replace a customer",
    "customers",
    {
        200: api.ok("The customer as stored (the version is unchanged when nothing changed).", "Customer", *_WRITTEN),
        **_CHANGE_FAILURES,
    },
    parameters=[api.CUSTOMER_ID, api.IF_MATCH],
    body=api.json_body("CustomerIn", _WRITE_BODY),
    bad_request=_BAD_WRITE,
)
@routes.put("/customers/{id}")
async def put_customer(request: web.Request) -> web.Response:
    return await _replace(request, partial=False)


@api.operation(
    "updateCustomer",
    "Change some fields of a customer",
    "customers",
    {
        200: api.ok("The customer as stored.", "Customer", *_WRITTEN),
        **_CHANGE_FAILURES,
    },
    parameters=[api.CUSTOMER_ID, api.IF_MATCH],
    body=api.json_body("CustomerPatch", "The fields to change; null clears one (email cannot be cleared)."),
    bad_request=_BAD_WRITE,
)
@routes.patch("/customers/{id}")
async def patch_customer(request: web.Request) -> web.Response:
    return await _replace(request, partial=True)


@api.operation(
    "deleteCustomer",
    "Delete a customer (from MySQL and Redis)",
    "customers",
    {
        204: api.empty("Deleted.", "XCache"),
        404: _NOT_FOUND,
        412: _STALE,
        503: api.DB_UNAVAILABLE,
    },
    parameters=[api.CUSTOMER_ID, api.IF_MATCH],
    bad_request="a customer id that is not a positive whole number, a malformed If-Match",
)
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


@api.operation(
    "bulkDeleteCustomers",
    "Delete every customer a search matches, as a `delete` job (in the history, revertable)",
    "customers",
    {
        202: api.JOB_QUEUED,
        409: api.problem("expected_count is not the number of customers q matches now: nothing is deleted."),
        413: api.problem("The body is over the server's limit (1 MB)."),
        422: api.problem("An unknown field, q too long, or expected_count not a whole number."),
        503: api.DB_UNAVAILABLE,
    },
    body=api.json_body("BulkDelete", "The search and how many customers it matches now."),
    bad_request="no body, malformed JSON",
)
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
    if isinstance(expected, float) and expected.is_integer():
        expected = int(expected)  # 12.0 is a whole number (JSON Schema's "integer" says so too)
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        raise field_problem(
            422, "Invalid field", "expected_count must be the number of customers q matches now", "expected_count",
            "A whole number, 0 or more.",
        )  # fmt: skip
    job = await request.app[JOBS].bulk_delete(
        search.strip() or None, expected, requested_by=auth.current_key.get(), request_id=request_id_var.get()
    )
    return json_response(job, status=202, headers={"Location": f"/jobs/{job['job_id']}"})

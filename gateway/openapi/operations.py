"""The pieces an operation of the API document is made of, for the route modules to declare each
operation next to its handler:

    @api.operation("getJob", "One import job", "imports", {200: api.ok("The job.", "Job"), 404: api.NO_JOB})
    @routes.get("/jobs/{id}")
    async def job_detail(request): ...

gateway.openapi.document assembles the document from the app's route tables; a route without an operation
is an error. Schemas are named by their component name ("Job"), which the document registers; limits are
the handlers' own constants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web
from marshmallow import Schema

from gateway.openapi import schemas as s

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Handler = TypeVar("Handler", bound=Callable[..., Any])
_ATTRIBUTE = "openapi_operation"


class Operation(dict[str, Any]):
    """An OpenAPI Operation Object that, used as a decorator, attaches itself to its handler (above or below
    the route's decorator: the route keeps the same function object)."""

    def __call__(self, handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, self)
        return handler


def of(handler: Callable[..., Any]) -> Operation | None:
    """The operation attached to a handler, if any."""
    op: Operation | None = getattr(handler, _ATTRIBUTE, None)
    return op


def paths(tables: Iterable[web.RouteTableDef]) -> dict[str, dict[str, dict[str, Any]]]:
    """path -> method -> operation of every route of these tables, in their order; a route without an
    operation is an error (the document lists every route)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for table in tables:
        for route in table:
            if not isinstance(route, web.RouteDef):
                continue
            op = of(route.handler)
            if op is None:
                raise LookupError(f"{route.method} {route.path}: its handler declares no operation (api.operation)")
            found.setdefault(route.path, {})[route.method.lower()] = dict(op)
    return found


# -- headers ------------------------------------------------------------------------------------


def _header(
    name: str, description: str, schema: dict[str, Any] | None = None, *, required: bool = True
) -> tuple[str, dict[str, Any]]:
    return name, {"description": description, "required": required, "schema": schema or {"type": "string"}}


# component id -> (header name, Header Object)
HEADERS: dict[str, tuple[str, dict[str, Any]]] = {
    "RequestId": _header("X-Request-ID", "The request's id: the one sent, else a new one. The logs carry it too."),
    "CustomerETag": _header(
        "ETag", 'The customer\'s version as an entity tag: `"v<version>"`.', {"type": "string", "pattern": r'^"v\d+"$'}
    ),
    "ContentETag": _header("ETag", "An entity tag of the content, for If-None-Match."),
    "XCache": _header(
        "X-Cache",
        "hit: served from Redis; miss: from MySQL (and cached); bypass: Redis unavailable, from MySQL.",
        {"type": "string", "enum": list(s.CACHE_STATES)},
    ),
    "Location": _header("Location", "Where the new resource is."),
    "WWWAuthenticate": _header("WWW-Authenticate", "The scheme to use: `Bearer`."),
    "RetryAfter": _header(
        "Retry-After", "Seconds to wait before trying again.", {"type": "string", "pattern": r"^\d+$"}
    ),
    "ContentDisposition": _header("Content-Disposition", "A download, with its file name.", required=False),
    "CacheControl": _header("Cache-Control", "How long the answer may be reused."),
    "RateLimitLimit": _header(
        "RateLimit-Limit",
        "Requests a minute this key (or address) may make here. Absent when limits are off or Redis is down.",
        {"type": "string", "pattern": r"^\d+$"},
        required=False,
    ),
    "RateLimitRemaining": _header(
        "RateLimit-Remaining",
        "Requests left right now.",
        {"type": "string", "pattern": r"^\d+$"},
        required=False,
    ),
    "RateLimitReset": _header(
        "RateLimit-Reset",
        "Seconds until the allowance is whole again.",
        {"type": "string", "pattern": r"^\d+$"},
        required=False,
    ),
}
RATE_LIMIT_HEADERS = ("RateLimitLimit", "RateLimitRemaining", "RateLimitReset")
REQUEST_ID = "RequestId"  # the parameter component: apispec turns the name into a $ref


def headers(*ids: str) -> dict[str, Any]:
    return {HEADERS[id_][0]: {"$ref": f"#/components/headers/{id_}"} for id_ in ("RequestId", *ids)}


# -- responses ----------------------------------------------------------------------------------


def ok(description: str, schema: Any, *header_ids: str, media: str = JSON) -> dict[str, Any]:
    return {"description": description, "headers": headers(*header_ids), "content": {media: {"schema": schema}}}


def empty(description: str, *header_ids: str) -> dict[str, Any]:
    return {"description": description, "headers": headers(*header_ids)}


def problem(description: str, *header_ids: str, schema: str = "Problem") -> dict[str, Any]:
    return {"description": description, "headers": headers(*header_ids), "content": {PROBLEM_JSON: {"schema": schema}}}


def download(description: str, media_types: dict[str, str], *header_ids: str) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    return {
        "description": description,
        "headers": headers("ContentDisposition", *header_ids),
        "content": {media: {"schema": binary, **({"example": ex} if ex else {})} for media, ex in media_types.items()},
    }


UNKNOWN_QUERY = "a query parameter this operation does not take"
BAD_CURSOR = "a cursor this API did not issue"
NO_DATABASE = "MySQL is unavailable or did not answer in time; try again after Retry-After seconds."
DB_UNAVAILABLE = problem(NO_DATABASE, "RetryAfter")
TOO_LARGE = problem("The body is over the server's limit (1 MB).")
LIMIT_OUT_OF_RANGE = problem("limit out of range.")


def operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[int, dict[str, Any]],
    *,
    parameters: list[Any] | None = None,
    body: dict[str, Any] | None = None,
    description: str | None = None,
    public: bool = False,
    bad_request: str = "",
) -> Operation:
    """An operation with what every operation shares: the request id parameter, 400 for an unknown
    query parameter (and whatever else `bad_request` names), 401 and 429 unless public, 500. Answers
    of operations that are not public may carry the RateLimit headers."""
    answers = dict(responses)
    reasons = UNKNOWN_QUERY + (f"; {bad_request}" if bad_request else "")
    answers.setdefault(400, problem(f"Bad request: {reasons}."))
    if not public:
        answers[401] = problem(
            "No valid API key (only when the service has API_KEYS): send `Authorization: Bearer <key>` or "
            "`X-API-Key: <key>`. The same answer for every path, known or not.",
            "WWWAuthenticate",
        )
        answers[429] = problem(
            "Over the rate limit of this key (or client address): try again after Retry-After seconds.",
            "RetryAfter",
        )
    answers[500] = problem("An unexpected error; it has been logged under the request id.")
    if not public:
        limited = headers(*RATE_LIMIT_HEADERS)
        for status, answer in answers.items():
            answers[status] = {**answer, "headers": {**answer.get("headers", {}), **limited}}
    op = Operation(
        operationId=operation_id,
        summary=summary,
        tags=[tag],
        parameters=[*(parameters or []), REQUEST_ID],
        responses={str(status): answers[status] for status in sorted(answers)},
    )
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


# -- parameters and bodies ----------------------------------------------------------------------


def path_id(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "description": description, "schema": schema}


CUSTOMER_ID = path_id("The customer's id.", {"type": "integer", "minimum": 1, "maximum": 2**63 - 1})
JOB_ID = path_id("The job id the upload answered.", {"type": "string", "format": "uuid"})
BAD_JOB_ID = "a job id that is not a UUID"
NO_JOB = problem("No such job.")
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "description": 'Only if the customer is still at this version: an ETag it answered (`"v3"`), or `*`. '
    'A stale one is a 412, and so is a weak one (`W/"v3"`): If-Match compares strongly (RFC 9110).',
    # What the server takes (gateway/http/params.py): `*`, or a list of our ETags, strong or weak.
    "schema": {"type": "string", "pattern": r'^(\*|(W/)?"v[0-9]{1,18}"(, ?(W/)?"v[0-9]{1,18}")*)$'},
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "description": "A 304 with no body when the customer is still at this version.",
    "schema": {"type": "string"},
}


def query(schema: Any) -> dict[str, Any]:
    return {"in": "query", "schema": schema}


def json_body(schema: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "description": description, "content": {JSON: {"schema": schema}}}


def fields_schema(fields: dict[str, Any]) -> type[Schema]:
    """Query parameters as a schema, from marshmallow fields (name -> field)."""
    return Schema.from_dict(fields)


JOB_QUEUED = ok("Accepted: the job's document (status `queued`). Follow it at Location.", "Job", "Location")

# -- the pages and their files (public) ---------------------------------------------------------

TEXT = {"type": "string"}
ASSET_QUERY = {
    "name": "v",
    "in": "query",
    "description": "The asset's content version, as the page links it (then it may be cached for a year).",
    "schema": {"type": "string"},
}
ASSET_NONE_MATCH = {**IF_NONE_MATCH, "description": "A 304 with no body when the asset has this ETag."}
ASSET_HEADERS = ("ContentETag", "CacheControl")


def asset_name(names: Iterable[str]) -> dict[str, Any]:
    """The `{name}` of a file a page loads: one of these."""
    return {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": list(names)}}

"""The OpenAPI 3.1 document, assembled by apispec from the operation each route's handler declares next to
it (gateway/openapi/operations.py) and the marshmallow schemas they name; served at /openapi.json.

Request bodies come from the service's own input schema (shared.customers.schemas), responses from
gateway.openapi.schemas, so the document cannot drift from what is validated; the tests check every
response they see against it (tests/support/openapi_check.py) and that it lists every route the app
registers (tests/api/test_openapi.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from typing import Any

import orjson
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields, validate

from gateway.openapi import docs_page as docs
from gateway.openapi import operations as api
from gateway.openapi import schemas as s
from shared.customers.schemas import CustomerInSchema, Text
from shared.imports import options

routes = web.RouteTableDef()

OPENAPI_VERSION = "3.1.0"


DESCRIPTION = """\
Upload spreadsheets of customers (.xlsx or .csv); background workers import them. Read and edit the
customers over JSON.

**Keys.** When the service runs with `API_KEYS`, every operation except the public ones (health,
readiness, metrics, this document, its Postman collection and /docs) needs
`Authorization: Bearer <key>` or `X-API-Key: <key>`; without one the answer is 401, whatever the path.

**Rate limits** (per API key, or per client address when the service has no keys): `RATE_LIMIT_PER_MIN`
requests a minute, and `UPLOAD_RATE_LIMIT_PER_MIN` uploads a minute for POST /upload. Answers carry
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the allowance is whole
again); over the limit the answer is 429 with `Retry-After`.

**Errors** are `application/problem+json` (RFC 9457): `title`, `status`, a `detail` a person can act on,
`instance` (the path) and, when inputs were wrong, `errors: [{field, message}]`. A query parameter an
operation does not take is a 400 naming it.

**Pages.** Paginated operations take `limit` and `cursor` and answer `{items, next_cursor}`;
`next_cursor` is null on the last page, else pass it back as `cursor`.

Every response carries `X-Request-ID` (the one you sent, if any); the logs carry it too.
"""

TAGS = [
    {"name": "customers", "description": "Customers: MySQL is the truth, Redis a cache never older than it."},
    {"name": "imports", "description": "Uploads and the import jobs that process them."},
    {"name": "operations", "description": "Health, readiness and metrics (public)."},
    {"name": "documentation", "description": "This document and the page that shows it (public)."},
    {"name": "page", "description": "The import page for people, at / (public: it asks for the key itself)."},
]

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


# -- the webhook the service calls --------------------------------------------------------------

WEBHOOKS = {
    "jobEnded": {
        "post": {
            "operationId": "jobEnded",
            "summary": "A job with a callback_url ended: its document (as GET /jobs/{id}), signed",
            "description": "POSTed to the job's `callback_url` once it completes or fails. A non-2xx answer, or "
            "none within WEBHOOK_TIMEOUT_S, is retried with exponential back-off up to WEBHOOK_MAX_ATTEMPTS; "
            "each attempt is recorded in the job's `webhook`.",
            "tags": ["imports"],
            "parameters": [
                {
                    "name": "X-Signature-256",
                    "in": "header",
                    "required": True,
                    "description": "`sha256=` and the hex HMAC-SHA256 of the body under WEBHOOK_SECRET.",
                    "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
                },
                {
                    "name": "X-Webhook-Id",
                    "in": "header",
                    "required": True,
                    "description": "The delivery's id, the same on every attempt: drop repeats.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-Webhook-Timestamp",
                    "in": "header",
                    "required": True,
                    "description": "Unix seconds of the attempt: refuse old replays.",
                    "schema": {"type": "string", "pattern": r"^\d+$"},
                },
            ],
            "requestBody": {"required": True, "content": {api.JSON: {"schema": {"$ref": "#/components/schemas/Job"}}}},
            "responses": {"2XX": {"description": "Received; any other answer is retried."}},
            "security": [],
        }
    }
}


# -- the assembly ----------------------------------------------------------------------------------


def _route_tables() -> tuple[web.RouteTableDef, ...]:
    """The app's route tables (imported here: the app imports this module)."""
    from gateway.app import ROUTE_TABLES

    return ROUTE_TABLES


def _dict_keys(converter: Any, field: Any, **kwargs: Any) -> dict[str, Any]:
    """`propertyNames` for a Dict field whose keys must be one of a few (apispec leaves keys out)."""
    if isinstance(field, fields.Dict) and field.key_field is not None:
        for validator in field.key_field.validators:
            if isinstance(validator, validate.OneOf):
                return {"propertyNames": {"enum": list(validator.choices)}}
            if isinstance(validator, validate.Regexp):
                return {"propertyNames": {"pattern": validator.regex.pattern}}
    return {}


def _version() -> str:
    try:
        return importlib.metadata.version("customer-import")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def build_spec() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Customer import service",
        version=_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        security=SECURITY,
        webhooks=WEBHOOKS,
    )
    # Text fields take a string or a number (a phone, a postcode) and always answer a string.
    plugin.map_to_openapi_type(Text, ["string", "number"], None)
    plugin.map_to_openapi_type(fields.Url, "string", "uri")  # JSON Schema's name for it
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_dict_keys)
    for tag in TAGS:
        spec.tag(tag)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`."}
    )
    spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."}
    )
    for component_id, (_, header) in api.HEADERS.items():
        spec.components.header(component_id, header)
    spec.components.parameter(
        "RequestId",
        "header",
        {
            "name": "X-Request-ID",
            "description": "Your id for the request, answered and logged: kept when it is 1 to 128 printable "
            "characters, else replaced by a new one (never refused).",
            "schema": {"type": "string"},
        },
    )
    # Nested schemas are registered under their class name less "Schema" when first met; the ones
    # named here get these names (a nested one must come before the schemas that nest it).
    schemas: dict[str, Any] = {
        "Preview": s.PreviewSchema,
        "Problem": s.ProblemSchema,
        "ColumnsProblem": s.ColumnsProblemSchema,
        "Customer": s.CustomerOutSchema,
        "CustomerFields": s.CustomerFieldsSchema,
        "CustomerPage": s.CustomerPageSchema,
        "CachedCustomer": s.CachedCustomerSchema,
        "CachedCustomerPage": s.CachedCustomerPageSchema,
        "CustomerIn": CustomerInSchema,
        "CustomerPatch": CustomerInSchema(partial=True),
        "Job": s.JobSchema,
        "JobPage": s.JobPageSchema,
        "JobErrorsPage": s.JobErrorsPageSchema,
        "RememberedMappingPage": s.RememberedMappingPageSchema,
        "HistoryPage": s.HistoryPageSchema,
        "JobChangesPage": s.JobChangesPageSchema,
        "RevertOptions": s.RevertOptionsSchema,
        "BulkDelete": s.BulkDeleteSchema,
        "UploadAccepted": s.UploadAcceptedSchema,
        "UploadedPreview": s.UploadedPreviewSchema,
        "StartOptions": options.StartOptionsSchema,
        "PreviewOptions": options.PreviewOptionsSchema,
        "UploadForm": s.UploadFormSchema,
        "Health": s.HealthSchema,
        "Readiness": s.ReadinessSchema,
    }
    descriptions = {
        "CustomerIn": "A whole customer (POST, PUT).",
        "CustomerPatch": "Some fields of a customer (PATCH).",
        "CachedCustomer": "A customer as Redis holds it, with its remaining TTL.",
        "PreviewOptions": "How to read a preview's stored file again (POST /jobs/{id}/preview), each optional: "
        "the header row and the mapping are found anew unless given; the sheet and encoding stay the last ones.",
    }
    for name, schema in schemas.items():
        component = {"description": descriptions[name]} if name in descriptions else None
        spec.components.schema(name, component, schema=schema)
    for path, operations in api.paths(_route_tables()).items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@functools.cache
def _encoded() -> tuple[bytes, str]:
    body = orjson.dumps(build_spec())
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


@api.operation(
    "getOpenAPI",
    "This document",
    "documentation",
    {
        200: api.ok("The OpenAPI document.", {"type": "object"}, "ContentETag", "CacheControl"),
        304: api.empty("Not modified.", "ContentETag", "CacheControl"),
    },
    parameters=[{**api.IF_NONE_MATCH, "description": "A 304 with no body when the document has this ETag."}],
    public=True,
)
async def openapi(request: web.Request) -> web.Response:
    body, etag = _encoded()
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=api.JSON, headers=headers)


routes.get("/openapi.json")(openapi)
routes.get("/docs")(docs.docs_page)
routes.get("/docs/{name}")(docs.docs_asset)

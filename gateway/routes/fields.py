"""GET /fields: the customer fields as shared/customers/fields.py declares them, for clients that show or
map them (the web page, the CLI), so none keeps a copy of its own."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from gateway.http.responses import json_response
from gateway.openapi import operations as api
from gateway.openapi.schemas import CustomerFieldsSchema
from shared.customers.fields import ATTRIBUTE_PREFIX, FIELDS, FULL_NAME, FULL_NAME_LABEL

routes = web.RouteTableDef()


@functools.cache
def fields_document() -> dict[str, Any]:
    """The answer, dumped once by the schema the API document shows."""
    document: dict[str, Any] = CustomerFieldsSchema().dump(
        {
            "items": FIELDS,
            "full_name": {"name": FULL_NAME, "label": FULL_NAME_LABEL},
            "attribute_prefix": ATTRIBUTE_PREFIX,
        }
    )
    return document


@api.operation(
    "customerFields",
    "The customer fields, in order, with their labels and lengths (shared/customers/fields.py)",
    "customers",
    {200: api.ok("The fields and the mapping's other targets.", "CustomerFields")},
    public=True,
)
@routes.get("/fields")
async def customer_fields(request: web.Request) -> web.Response:
    return json_response(fields_document())

"""The OpenAPI 3 document and an interactive page for it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shared.schemas import FIELD_LENGTHS

routes = web.RouteTableDef()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROBLEM = {"description": "Problem", "content": {"application/problem+json": {"schema": _ref("Problem")}}}
PAGE_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"},
]
CUSTOMER_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref(item)}, "next_cursor": {"type": ["string", "null"]}},
        "required": ["items", "next_cursor"],
    }


def build_spec() -> dict[str, Any]:
    customer_fields = {
        name: {"type": ["string", "null"], "maxLength": length} for name, length in FIELD_LENGTHS.items()
    }
    customer_fields["email"] = {"type": "string", "format": "email", "maxLength": FIELD_LENGTHS["email"]}
    customer = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "version": {"type": "integer"},
            **customer_fields,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
    customer_in = {
        "type": "object",
        "properties": customer_fields,
        "required": ["email"],
        "additionalProperties": False,
    }
    customer_patch = {"type": "object", "properties": customer_fields, "additionalProperties": False}
    counters = {k: {"type": "integer"} for k in ("rows_read", "rows_inserted", "rows_updated", "rows_invalid")}
    job = {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["queued", "running", "completed", "failed"]},
            "filename": {"type": "string"},
            "dry_run": {"type": "boolean"},
            **counters,
            "progress": {"type": "object"},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "errors": {"type": "array", "items": _ref("RowError")},
            "error": {"type": ["string", "null"]},
            "created_at": {"type": "string"},
            "started_at": {"type": ["string", "null"]},
            "finished_at": {"type": ["string", "null"]},
        },
    }
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    customer_headers = {
        "ETag": {"schema": {"type": "string"}},
        "X-Cache": {"schema": {"type": "string", "enum": ["hit", "miss", "bypass"]}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Customer import service",
            "version": "0.1.0",
            "description": "Upload spreadsheets of customers; manage customers over HTTP.",
        },
        "security": secured,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Customer": customer,
                "CustomerIn": customer_in,
                "CustomerPatch": customer_patch,
                "Job": job,
                "RowError": {
                    "type": "object",
                    "properties": {
                        "row": {"type": "integer"},
                        "column": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    },
                },
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
        "paths": {
            "/upload": {
                "post": {
                    "summary": "Upload a workbook (.xlsx) or .csv of customers; answers at once with a job id",
                    "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"file": {"type": "string", "format": "binary"}},
                                    "required": ["file"],
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "job_id": {"type": "string"},
                                    "status": {"type": "string"},
                                    "status_url": {"type": "string"},
                                },
                            },
                            "Accepted",
                        ),
                        "400": PROBLEM,
                        "401": PROBLEM,
                        "413": PROBLEM,
                        "415": PROBLEM,
                        "422": PROBLEM,
                    },
                }
            },
            "/jobs": {
                "get": {
                    "summary": "Recent import jobs, newest first",
                    "parameters": PAGE_PARAMS,
                    "responses": {"200": _json(_page("Job")), "401": PROBLEM},
                }
            },
            "/jobs/{id}": {
                "get": {
                    "summary": "One import job",
                    "parameters": [JOB_ID],
                    "responses": {"200": _json(_ref("Job")), "400": PROBLEM, "404": PROBLEM},
                }
            },
            "/jobs/{id}/errors": {
                "get": {
                    "summary": "Row errors of a job (JSON pages or ?format=csv)",
                    "parameters": [
                        JOB_ID,
                        *PAGE_PARAMS,
                        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}},
                    ],
                    "responses": {"200": _json(_page("RowError")), "404": PROBLEM},
                }
            },
            "/customers": {
                "get": {
                    "summary": "A page of customers (Redis first)",
                    "parameters": [*PAGE_PARAMS, {"name": "q", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": _json(_page("Customer")), "422": PROBLEM},
                },
                "post": {
                    "summary": "Create a customer",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CustomerIn")}}},
                    "responses": {
                        "201": {**_json(_ref("Customer"), "Created"), "headers": customer_headers},
                        "409": PROBLEM,
                        "422": PROBLEM,
                    },
                },
            },
            "/customers/cache": {
                "get": {
                    "summary": "What Redis holds now, with remaining TTLs",
                    "parameters": PAGE_PARAMS,
                    "responses": {"200": _json({"type": "object"}), "503": PROBLEM},
                }
            },
            "/customers/{id}": {
                "get": {
                    "summary": "One customer (Redis first)",
                    "parameters": [CUSTOMER_ID],
                    "responses": {
                        "200": {**_json(_ref("Customer")), "headers": customer_headers},
                        "304": {"description": "Not modified"},
                        "400": PROBLEM,
                        "404": PROBLEM,
                    },
                },
                "put": {
                    "summary": "Replace a customer",
                    "parameters": [CUSTOMER_ID],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CustomerIn")}}},
                    "responses": {
                        "200": _json(_ref("Customer")),
                        "404": PROBLEM,
                        "409": PROBLEM,
                        "412": PROBLEM,
                        "422": PROBLEM,
                    },
                },
                "patch": {
                    "summary": "Update some fields",
                    "parameters": [CUSTOMER_ID],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("CustomerPatch")}},
                    },
                    "responses": {
                        "200": _json(_ref("Customer")),
                        "404": PROBLEM,
                        "409": PROBLEM,
                        "412": PROBLEM,
                        "422": PROBLEM,
                    },
                },
                "delete": {
                    "summary": "Delete a customer",
                    "parameters": [CUSTOMER_ID],
                    "responses": {"204": {"description": "Deleted"}, "404": PROBLEM, "412": PROBLEM},
                },
            },
            "/healthz": {
                "get": {"summary": "Liveness", "security": [], "responses": {"200": _json({"type": "object"})}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: MySQL and Redis",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}), "503": _json({"type": "object"})},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {"200": {"description": "text/plain"}},
                }
            },
        },
    }


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Customer import service API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>
"""


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_spec())


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")

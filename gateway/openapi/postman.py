"""A Postman (v2.1) collection generated from the OpenAPI document: `GET /postman.json`.

Every operation of the document becomes a request, in an order that works as a run (create a
customer before reading it, upload before following the job, delete last). The API key is the
collection variable `apiKey` (sent as a bearer token), the server `baseUrl`; ids created on the way
go into variables. Each request carries a test that its status is the operation's success status,
so `newman run` checks the whole API in one go. The upload is a form-data file request
(`customers.xlsx`, relative to newman's --working-dir: the repo's examples/ folder has one).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from gateway.http.responses import json_response
from gateway.openapi import operations as api
from gateway.openapi.document import build_spec

routes = web.RouteTableDef()

SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
SAMPLE_FILE = "customers.xlsx"
# (method, path, variant): the order of a run; operations not named here run before the deletes.
ORDER: list[tuple[str, str, str]] = [
    ("get", "/healthz", ""),
    ("get", "/readyz", ""),
    ("get", "/openapi.json", ""),
    ("get", "/docs", ""),
    ("get", "/metrics", ""),
    ("post", "/customers", ""),
    ("get", "/customers/{id}", ""),
    ("patch", "/customers/{id}", ""),
    ("put", "/customers/{id}", ""),
    ("get", "/customers", ""),
    ("get", "/customers/cache", ""),
    ("get", "/customers/export", ""),
    ("get", "/template", ""),
    ("post", "/upload", ""),
    ("get", "/jobs/{id}", ""),
    ("get", "/jobs/{id}/events", ""),
    ("get", "/jobs/{id}/errors", ""),
    ("get", "/jobs/{id}/rejected", ""),
    ("get", "/jobs", ""),
    ("post", "/upload", "preview"),
    ("post", "/jobs/{id}/preview", ""),  # the stored file read again, with another header row
    ("post", "/jobs/{id}/start", ""),
    # Right after its start the previewed job is queued or running: cancelled (200), unless a fast
    # worker has finished it already (409).
    ("post", "/jobs/{id}/cancel", ""),
    # The uploads above remembered their mappings under the file's header.
    ("get", "/mappings", ""),
]
LAST = [
    ("delete", "/mappings/{id}", ""),  # the remembered mapping GET /mappings listed first
    # A second preview, discarded (DELETE /jobs/{id} takes only a preview that was never started).
    ("post", "/upload", "discard"),
    ("delete", "/jobs/{id}", ""),
    ("delete", "/customers/{id}", ""),
]
CUSTOMER_BODY = (
    '{\n  "first_name": "Ada",\n  "last_name": "Lovelace",\n  "company_name": "Analytical Engines",\n'
    '  "address": "12 St James\'s Square",\n  "city": "London",\n  "county": "Greater London",\n'
    '  "postal": "SW1Y 4JH",\n  "phone": "020 7946 0000",\n  "email": "EMAIL",\n  "web": "http://example.com"\n}'
)


def _success(operation: dict[str, Any]) -> int:
    """202 where the operation queues work (an upload answers 201 only as a preview), else its first 2xx."""
    codes = sorted(int(code) for code in operation.get("responses", {}) if str(code).isdigit())
    if 202 in codes:
        return 202
    return next((code for code in codes if 200 <= code < 300), 200)


def _example(operation: dict[str, Any], name: str) -> str:
    """A value for a path parameter other than an id: its example, or the first of its enum."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter.get("name") == name:
            schema = parameter.get("schema", {})
            value = parameter.get("example", schema.get("example", (schema.get("enum") or [name])[0]))
            return str(value)
    return name


def _url(path: str, variable: str, query: list[dict[str, Any]], operation: dict[str, Any]) -> dict[str, Any]:
    parts = []
    for part in path.strip("/").split("/"):
        if part == "{id}":
            part = "{{" + variable + "}}"
        elif part.startswith("{") and part.endswith("}"):
            part = _example(operation, part[1:-1])
        parts.append(part)
    raw = "{{baseUrl}}/" + "/".join(parts)
    enabled = [q for q in query if not q.get("disabled")]
    if enabled:
        raw += "?" + "&".join(f"{q['key']}={q['value']}" for q in enabled)
    return {"raw": raw, "host": ["{{baseUrl}}"], "path": parts, "query": query}


def _request(method: str, path: str, variant: str, operation: dict[str, Any]) -> dict[str, Any]:
    status = _success(operation)
    if variant in ("preview", "discard"):
        status = 201
    variable = "customerId" if path.startswith("/customers/") else "jobId"
    if path.startswith("/mappings/"):
        variable = "mappingId"
    if path in ("/jobs/{id}/preview", "/jobs/{id}/start", "/jobs/{id}/cancel"):
        variable = "previewJobId"
    elif path == "/jobs/{id}" and method == "delete":
        variable = "discardJobId"
    query: list[dict[str, Any]] = []
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "query" and "$ref" not in parameter:
            query.append({"key": parameter["name"], "value": "", "disabled": True})
    if variant in ("preview", "discard"):
        query = [{"key": "preview", "value": "true"}]
    request: dict[str, Any] = {"method": method.upper(), "header": [], "url": _url(path, variable, query, operation)}
    tests = [f'pm.test("answers {status}", function () {{ pm.response.to.have.status({status}); }});']
    if path == "/jobs/{id}/cancel":
        tests = [
            'pm.test("answers 200, or 409 when the job ended first", function () {'
            " pm.expect(pm.response.code).to.be.oneOf([200, 409]); });"
        ]
    if path == "/customers" and method == "post":
        request["body"] = {"mode": "raw", "raw": CUSTOMER_BODY.replace("EMAIL", "postman-{{$randomUUID}}@example.com")}
        tests.append('pm.collectionVariables.set("customerId", pm.response.json().id);')
        tests.append('pm.collectionVariables.set("customerEmail", pm.response.json().email);')
    elif path == "/customers/{id}" and method in ("put", "patch"):
        body = CUSTOMER_BODY.replace("EMAIL", "{{customerEmail}}")
        request["body"] = {"mode": "raw", "raw": body if method == "put" else '{"city": "Leeds"}'}
    elif path == "/jobs/{id}/start":
        request["body"] = {"mode": "raw", "raw": "{}"}
    elif path == "/mappings" and method == "get":
        tests.append('pm.collectionVariables.set("mappingId", pm.response.json().items[0].id);')
    elif path == "/jobs/{id}/preview":
        request["body"] = {"mode": "raw", "raw": '{"header_row": 1}'}
    elif path == "/customers/bulk-delete":
        # A search nothing matches: the delete job runs and deletes nothing.
        request["body"] = {"mode": "raw", "raw": '{"q": "postman-none-{{$randomUUID}}", "expected_count": 0}'}
    elif path == "/upload":
        request["body"] = {"mode": "formdata", "formdata": [{"key": "file", "type": "file", "src": SAMPLE_FILE}]}
        name = {"preview": "previewJobId", "discard": "discardJobId"}.get(variant, "jobId")
        tests.append(f'pm.collectionVariables.set("{name}", pm.response.json().job_id);')
    if "body" in request and request["body"]["mode"] == "raw":
        request["body"]["options"] = {"raw": {"language": "json"}}
        request["header"].append({"key": "Content-Type", "value": "application/json"})
    if not operation.get("security", [{}]) or operation.get("security") == []:
        request["auth"] = {"type": "noauth"}
    summary = operation.get("summary") or f"{method.upper()} {path}"
    return {
        "name": summary + {"preview": " (preview)", "discard": " (a preview to discard)"}.get(variant, ""),
        "request": request,
        "event": [{"listen": "test", "script": {"type": "text/javascript", "exec": tests}}],
    }


def build_collection(spec: dict[str, Any], base_url: str) -> dict[str, Any]:
    operations = {
        (method, path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    named = {(m, p) for m, p, _ in ORDER + LAST}
    middle = [(m, p, "") for (m, p) in sorted(operations) if (m, p) not in named]
    items = [
        _request(method, path, variant, operations[(method, path)])
        for method, path, variant in ORDER + middle + LAST
        if (method, path) in operations
    ]
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, spec["info"]["title"])),
            "name": spec["info"]["title"],
            "description": "Generated from /openapi.json. Set apiKey when API_KEYS is configured.",
            "schema": SCHEMA,
        },
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}]},
        "variable": [
            {"key": "baseUrl", "value": base_url},
            {"key": "apiKey", "value": ""},
            {"key": "customerId", "value": ""},
            {"key": "customerEmail", "value": ""},
            {"key": "jobId", "value": ""},
            {"key": "previewJobId", "value": ""},
            {"key": "discardJobId", "value": ""},
            {"key": "mappingId", "value": ""},
        ],
        "item": items,
    }


@api.operation(
    "getPostmanCollection",
    "A Postman collection of every operation, in an order that runs (`newman run`)",
    "documentation",
    {200: api.ok("The collection (v2.1).", {"type": "object"}, "ContentDisposition")},
    public=True,
)
@routes.get("/postman.json")
async def postman(request: web.Request) -> web.Response:
    base = f"{request.scheme}://{request.host}"
    return json_response(
        build_collection(build_spec(), base),
        headers={"Content-Disposition": 'attachment; filename="customer-import.postman_collection.json"'},
    )

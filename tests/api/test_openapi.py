"""The OpenAPI document: a valid OpenAPI 3.1 document, generated from the schemas the service uses,
listing every route the app registers with the query parameters its handler takes, and the checker
every test's responses go through (tests/support/openapi_check.py) really catches mismatches.

Every response below is also checked against the document by the test client itself."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from marshmallow import ValidationError
from openapi_spec_validator import validate as validate_openapi

from gateway.app import create_app
from gateway.http.middlewares import PUBLIC_PATHS
from gateway.openapi import docs_page as docs
from gateway.openapi.document import build_spec
from shared.config import Settings
from shared.customers.schemas import FIELD_LENGTHS, CustomerInSchema
from shared.spreadsheet.rules import CUSTOMER_FIELDS
from tests.support.openapi_check import Checker, OpenAPIMismatch, checker

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_spec()


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def app_routes(app: web.Application) -> dict[tuple[str, str], web.AbstractRoute]:
    """(method, canonical path) of every route, less the HEAD aiohttp adds to each GET and the
    catch-alls that answer 405 on a literal path (gateway/http/routing.py): no operations."""
    found = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        assert route.resource is not None
        found[(route.method, route.resource.canonical)] = route
    return found


def query_parameters(op: dict[str, Any]) -> set[str]:
    return {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}


# -- the document ------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # SchemaError unless valid JSON Schema 2020-12


def test_every_route_is_documented_and_every_operation_is_a_route(
    app: web.Application, document: dict[str, Any]
) -> None:
    routes, documented = set(app_routes(app)), set(operations(document))
    assert routes - documented == set(), "routes the OpenAPI document leaves out"
    assert documented - routes == set(), "operations the app does not have"


def test_query_parameters_are_the_ones_each_handler_takes(app: web.Application, document: dict[str, Any]) -> None:
    ops = operations(document)
    for key, route in app_routes(app).items():
        takes = set(getattr(route.handler, "query_params", frozenset()))
        assert query_parameters(ops[key]) == takes, key


def test_every_operation_is_described(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for op in operations(document).values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for (method, path), op in operations(document).items():
        where = f"{method} {path}"
        assert op["summary"] and op["operationId"] and op["tags"], where
        in_path = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
        assert in_path == set(re.findall(r"\{(\w+)\}", path)), where
        assert op["parameters"][-1] == {"$ref": "#/components/parameters/RequestId"}, where
        responses = op["responses"]
        assert {"400", "500"} <= set(responses), where
        for status, response in responses.items():
            assert response["description"], (where, status)
            assert "X-Request-ID" in response["headers"], (where, status)
            if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                assert list(response["content"]) == [PROBLEM], (where, status)
        # Public exactly when the middleware lets it through without a key.
        # (a templated path is public only when its parameter is an enum of public paths: /docs/{name})
        names = next((p["schema"]["enum"] for p in op["parameters"] if "enum" in p.get("schema", {})), None)
        concrete = {re.sub(r"\{\w+\}", name, path) for name in names} if names else {path}
        public = concrete <= PUBLIC_PATHS
        assert (op.get("security") == []) == public, where
        assert ("401" in responses) == (not public), where


def test_security_schemes(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]


def test_request_bodies_are_the_services_own_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    whole, patch = schemas["CustomerIn"], schemas["CustomerPatch"]
    assert list(whole["properties"]) == list(CustomerInSchema().fields)
    assert whole["required"] == ["email"] and "required" not in patch
    assert whole["additionalProperties"] is False and patch["additionalProperties"] is False
    for name in CUSTOMER_FIELDS:
        assert whole["properties"][name]["maxLength"] == FIELD_LENGTHS[name]
        if name != "email":
            assert whole["properties"][name]["type"] == ["string", "number", "null"], name


BODIES: list[tuple[str, dict[str, Any]]] = [
    ("names and email", {"first_name": "Ada", "email": "ada@example.com"}),
    ("numbers for text", {"last_name": "King", "email": "k@example.com", "phone": 2079460000, "postal": 1010}),
    ("read-only fields sent back", {"id": 3, "version": 2, "first_name": "A", "email": "a@example.com",
                                    "created_at": "2024-01-01T00:00:00.000000Z", "updated_at": None}),
    ("every field null but email", {**dict.fromkeys(CUSTOMER_FIELDS), "first_name": "A", "email": "a@example.com"}),
    ("an unknown field", {"first_name": "A", "email": "a@example.com", "nickname": "x"}),
    ("no email", {"first_name": "A"}),
    ("a null email", {"first_name": "A", "email": None}),
    ("too long", {"first_name": "x" * 101, "email": "a@example.com"}),
    ("a boolean for text", {"first_name": True, "email": "a@example.com"}),
    ("an object for text", {"first_name": {"a": 1}, "email": "a@example.com"}),
    ("a text version", {"first_name": "A", "email": "a@example.com", "version": "2"}),
    ("a zero id", {"first_name": "A", "email": "a@example.com", "id": 0}),
]  # fmt: skip


@pytest.mark.parametrize(("label", "body"), BODIES, ids=[label for label, _ in BODIES])
def test_the_document_accepts_the_bodies_the_service_accepts(label: str, body: dict[str, Any]) -> None:
    """What the JSON Schema can say (types, lengths, required, unknown fields) agrees with the
    service's schema, for POST/PUT and PATCH alike."""
    check = checker()
    for component, partial in (("CustomerIn", False), ("CustomerPatch", True)):
        documented = not check.validate({"$ref": f"#/components/schemas/{component}"}, body)
        try:
            CustomerInSchema().load(body, partial=partial)
            loads = True
        except ValidationError:
            loads = False
        assert documented == loads, (component, label)


# -- the checker -------------------------------------------------------------------------------

JSON_HEADERS = {"Content-Type": "application/json", "X-Request-ID": "r1"}
CUSTOMER = {
    "id": 1,
    "version": 1,
    **dict.fromkeys(CUSTOMER_FIELDS),
    "first_name": "Ada",
    "email": "ada@example.com",
    "attributes": {},
    "created_at": "2024-05-01T10:00:00.000000Z",
    "updated_at": "2024-05-01T10:00:00.000000Z",
}
CUSTOMER_HEADERS = {**JSON_HEADERS, "ETag": '"v1"', "X-Cache": "hit"}


def mismatch(document: dict[str, Any], *args: Any) -> str:
    with pytest.raises(OpenAPIMismatch) as info:
        Checker(document).check(*args)
    return str(info.value)


def test_the_checker_accepts_what_the_document_describes(document: dict[str, Any]) -> None:
    check = Checker(document).check
    check("GET", "/healthz", 200, JSON_HEADERS, b'{"status": "ok"}')
    check("HEAD", "/healthz", 200, JSON_HEADERS, b"")
    check("GET", "/customers/1", 200, CUSTOMER_HEADERS, json.dumps(CUSTOMER).encode())
    check("GET", "/customers/1", 304, {"X-Request-ID": "r1", "ETag": '"v1"', "X-Cache": "hit"}, b"")
    problem = {"type": "about:blank", "title": "Not Found", "status": 404, "instance": "/x", "extra": [1]}
    headers = {"Content-Type": PROBLEM, "X-Request-ID": "r1"}
    check("GET", "/customers/7", 404, headers, json.dumps(problem).encode())
    check("GET", "/no/such/path", 404, headers, json.dumps(problem).encode())
    check("DELETE", "/jobs", 405, headers, json.dumps({**problem, "status": 405}).encode())


def test_the_checker_names_each_kind_of_mismatch(document: dict[str, Any]) -> None:
    body = json.dumps(CUSTOMER).encode()
    message = mismatch(document, "GET", "/healthz", 418, JSON_HEADERS, b"{}")
    assert "GET /healthz (healthz) answered 418, which the document does not declare" in message
    message = mismatch(document, "GET", "/healthz", 200, {**JSON_HEADERS, "Content-Type": "text/html"}, b"x")
    assert "as 'text/html'; the document declares application/json" in message
    no_version = json.dumps({k: v for k, v in CUSTOMER.items() if k != "version"}).encode()
    message = mismatch(document, "GET", "/customers/1", 200, CUSTOMER_HEADERS, no_version)
    assert "(the body): 'version' is a required property" in message
    message = mismatch(document, "GET", "/customers/1", 200, CUSTOMER_HEADERS, body.replace(b'"id"', b'"ID"'))
    assert "Additional properties are not allowed ('ID' was unexpected)" in message
    message = mismatch(document, "GET", "/customers/1", 200, CUSTOMER_HEADERS, body.replace(b"ada@", b"ada-at-"))
    assert "['email']: 'ada-at-example.com' is not a 'email'" in message
    message = mismatch(document, "GET", "/customers/1", 200, JSON_HEADERS, body)
    assert "without the ETag header the document requires" in message
    message = mismatch(document, "GET", "/customers/1", 200, {**CUSTOMER_HEADERS, "ETag": "abc"}, body)
    assert "with header ETag: 'abc'" in message
    message = mismatch(document, "GET", "/healthz", 200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
    assert "without the X-Request-ID header" in message
    message = mismatch(document, "DELETE", "/customers/1", 204, {"X-Request-ID": "r", "X-Cache": "miss"}, b"{}")
    assert "with a body of 2 bytes, but the document declares none" in message
    message = mismatch(document, "GET", "/no/such/path", 200, JSON_HEADERS, b"{}")
    assert "no path of the OpenAPI document matches '/no/such/path'" in message
    message = mismatch(document, "DELETE", "/jobs", 200, JSON_HEADERS, b"{}")
    assert "the OpenAPI document has no DELETE operation on /jobs" in message
    message = mismatch(document, "GET", "/no/such/path", 404, JSON_HEADERS, b"{}")
    assert "not application/problem+json" in message


# -- the running app ---------------------------------------------------------------------------


async def test_limits_are_the_ones_the_handlers_apply(client: TestClient, document: dict[str, Any]) -> None:
    for (method, path), op in operations(document).items():
        limit = next((p for p in op["parameters"] if p.get("name") == "limit"), None)
        if limit is None:
            continue
        assert method == "GET"
        # A customer id is a whole number, a job id a UUID.
        url = path.replace("{id}", "1" if path.startswith("/customers/") else str(uuid.uuid4()))
        maximum = limit["schema"]["maximum"]
        assert limit["schema"]["minimum"] == 1
        for value, refused in ((maximum, False), (maximum + 1, True), (0, True)):
            response = await client.get(url, params={"limit": str(value)})
            assert (response.status == 422) == refused, (path, value, response.status)
            if refused:
                assert (await response.json())["errors"][0]["field"] == "limit"


async def test_the_statuses_the_document_declares_are_answered(client: TestClient) -> None:
    """A walk through the statuses the API answers; the client checks each answer's shape."""
    ok = {"first_name": "Ada", "email": "ada@example.com"}
    assert (await client.get("/healthz", params={"verbose": "1"})).status == 400
    assert (await client.get("/customers", params={"cursor": "bogus"})).status == 400
    assert (await client.get("/customers", params={"q": "x" * 101})).status == 422
    assert (await client.get("/customers/abc")).status == 400
    assert (await client.get("/customers/999999")).status == 404
    assert (await client.post("/customers")).status == 400
    assert (await client.post("/customers", data=b"{nope", headers={"Content-Type": "application/json"})).status == 400
    assert (await client.post("/customers", json={"first_name": "A"})).status == 422
    assert (await client.post("/customers", json={**ok, "notes": "x" * (1024 * 1024)})).status == 413
    created = await client.post("/customers", json=ok)
    assert created.status == 201 and created.headers["Location"].startswith("/customers/")
    path = created.headers["Location"]
    assert (await client.post("/customers", json=ok)).status == 409
    assert (await client.get(path, headers={"If-None-Match": created.headers["ETag"]})).status == 304
    assert (await client.head(path)).status == 200
    assert (await client.put(path, json={**ok, "city": "London"}, headers={"If-Match": '"v9"'})).status == 412
    assert (await client.put(path, json={**ok, "city": "London"}, headers={"If-Match": "nope"})).status == 400
    assert (await client.put(path, json={**ok, "city": 1010})).status == 200
    assert (await client.patch(path, json={"email": None})).status == 422
    assert (await client.patch(path, json={"phone": 2079460000})).status == 200
    assert (await client.get("/customers", params={"limit": "1"})).status == 200
    assert (await client.get("/customers/cache")).status == 200
    assert (await client.get("/customers/export")).status == 200
    assert (await client.get("/customers/export", params={"format": "xlsx", "q": "ada"})).status == 200
    assert (await client.get("/customers/export", params={"format": "pdf"})).status == 422
    assert (await client.delete(path)).status == 204
    assert (await client.delete(path)).status == 404
    job = str(uuid.uuid4())
    assert (await client.post("/upload", json={"file": "x"})).status == 415
    assert (await client.get("/jobs/not-a-uuid")).status == 400
    assert (await client.get(f"/jobs/{job}")).status == 404
    assert (await client.get(f"/jobs/{job}/errors", params={"format": "xml"})).status == 422
    assert (await client.get(f"/jobs/{job}/rejected")).status == 404
    assert (await client.post(f"/jobs/{job}/start", json={})).status == 404
    assert (await client.get("/jobs")).status == 200
    assert (await client.get("/template")).status == 200
    assert (await client.get("/template", params={"format": "csv"})).status == 200
    assert (await client.get("/template", params={"format": "ods"})).status == 422
    assert (await client.delete("/jobs")).status == 405
    assert (await client.get("/no/such/path")).status == 404


async def test_openapi_json_is_public_and_revalidated(client: TestClient, document: dict[str, Any]) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
    assert await response.json() == json.loads(json.dumps(document))
    again = await client.get("/openapi.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""


async def test_the_docs_page_loads_only_files_of_this_origin(client: TestClient) -> None:
    response = await client.get("/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "http" not in policy
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and all(link.startswith(("docs/", "openapi.json")) for link in links), links
    assert "//" not in page.replace("<!doctype html>", "")
    for link in links:
        if link.startswith("docs/"):
            asset = await client.get("/" + link)
            assert asset.status == 200, link
            assert asset.headers["Cache-Control"] == docs.IMMUTABLE, link


async def test_docs_assets_are_cached_compressed_and_revalidated(client: TestClient) -> None:
    unversioned = await client.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"})
    assert unversioned.status == 200 and unversioned.headers["Cache-Control"] == "no-cache"
    assert unversioned.headers["Content-Encoding"] == "gzip" and unversioned.headers["Vary"] == "Accept-Encoding"
    assert unversioned.content_type == "text/javascript"
    body = await unversioned.read()  # aiohttp inflated it
    assert body == (docs.static_dir() / "swagger-ui-bundle.js").read_bytes()
    assert len(gzip.compress(body)) < len(body) // 2
    plain = await client.get("/docs/swagger-ui.css", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.content_type == "text/css"
    etag = plain.headers["ETag"]
    again = await client.get("/docs/swagger-ui.css", headers={"If-None-Match": f"W/{etag}"})
    assert again.status == 304 and again.headers["ETag"] == etag
    stale = await client.get("/docs/swagger-ui.css", params={"v": "0123"})
    assert stale.status == 200 and stale.headers["Cache-Control"] == "no-cache"
    assert (await client.get("/docs/index.html")).status == 404
    assert (await client.get("/docs/swagger-ui.css", params={"x": "1"})).status == 400


async def test_with_api_keys_the_docs_and_all_they_load_need_no_key(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, api_keys=("s3cret",))))
    page = await client.get("/docs")
    assert page.status == 200
    links = re.findall(r'(?:src|href)="([^"?]+)', await page.text())
    for path in ["/openapi.json", *("/" + link for link in links)]:
        assert (await client.get(path)).status == 200, path
    for path in docs.ASSET_PATHS:
        assert (await client.get(path)).status == 200, path
    refused = await client.get("/jobs")
    assert refused.status == 401  # the checker wants its WWW-Authenticate too
    assert (await client.get("/jobs", headers={"Authorization": "Bearer s3cret"})).status == 200


async def test_an_api_key_header_is_accepted(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    client = await aiohttp_client(create_app(replace(settings, api_keys=("s3cret",))))
    assert (await client.get("/jobs", headers={"X-API-Key": "s3cret"})).status == 200

"""A literal path answers 405 for a method it does not take, with its own methods in Allow, even when
a templated path would match it (`PUT /customers/cache` is not `PUT /customers/{id}` with the id
"cache"). The paths are read from the app's router, so a literal path added later is checked too."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

pytestmark = pytest.mark.usefixtures("clean")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def literal_paths(app: web.Application) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for resource in app.router.resources():
        if isinstance(resource, web.PlainResource):
            found.setdefault(resource.canonical, set()).update(r.method for r in resource if r.method != "*")
    return found


async def test_a_method_a_literal_path_does_not_take_is_405_listing_its_own_methods(client: TestClient) -> None:
    paths = literal_paths(client.app)
    assert {"/customers/cache", "/customers/export", "/customers/bulk-delete"} <= set(paths)
    checked = 0
    for path, methods in paths.items():
        for method in METHODS:
            if method in methods:
                continue
            response = await client.request(method, path, json={} if method != "GET" else None)
            assert response.status == 405, (method, path, response.status, await response.text())
            assert set(response.headers["Allow"].split(",")) == methods, (method, path, response.headers["Allow"])
            assert response.headers["Content-Type"].startswith("application/problem+json")
            assert method in (await response.json())["detail"]
            checked += 1
    assert checked > 20


async def test_the_templated_routes_still_answer_for_their_own_paths(client: TestClient) -> None:
    assert (await client.get("/customers/cache")).status == 200
    assert (await client.get("/customers/12345")).status == 404
    assert (await client.put("/customers/abc", json={})).status == 400  # a malformed id, named
    response = await client.post("/customers/1")
    assert response.status == 405 and set(response.headers["Allow"].split(",")) == {
        "GET",
        "HEAD",
        "PUT",
        "PATCH",
        "DELETE",
    }

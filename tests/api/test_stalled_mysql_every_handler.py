"""Every handler answers within DB_TIMEOUT_S (and a margin) when MySQL stops answering, writes
included: recording an upload, starting, previewing again, deleting, reverting, cancelling,
creating, replacing, deleting customers. MySQL is reached through the TCP proxy of test_faults.py,
which lets statements through and holds the answers back (a hung server). The routes are read from
the app's router, so an endpoint added later is called too (with a generic request if it is not
described here) and must be bounded as well."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.http.keys import CUSTOMERS
from tests.api.test_faults import Answer, call, mysql_proxy, via_mysql_proxy  # noqa: F401 (fixtures)
from tests.support.jobs import run_burst_worker
from tests.support.proxy import TcpProxy
from tests.support.workbooks import csv_bytes, customers

pytestmark = pytest.mark.usefixtures("clean")
MARGIN_S = 2.0
READ_ONLY = ("id", "version", "created_at", "updated_at")


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route but HEAD (answered by its GET) and the catch-alls that
    answer 405 on a literal path (gateway/http/routing.py)."""
    found = []
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path is None:
            continue
        found += [(route.method, path) for route in resource if route.method not in ("HEAD", "*")]
    return sorted(set(found))


def upload_form(preview: bool = False) -> tuple[str, aiohttp.FormData]:
    form = aiohttp.FormData()
    form.add_field("file", csv_bytes(customers(3, domain="stalled.example")), filename="c.csv")
    return ("/upload?preview=true" if preview else "/upload"), form


async def fixtures(client: TestClient, settings: Any) -> dict[str, Any]:
    """What the requests name: a customer, a preview, a completed import, a remembered mapping."""
    response = await client.post("/upload", data=upload_form()[1])
    assert response.status == 202, await response.text()
    imported = (await response.json())["job_id"]
    await run_burst_worker(settings)
    response = await client.post("/upload?preview=true", data=upload_form()[1])
    assert response.status == 201, await response.text()
    preview = (await response.json())["job_id"]
    customer = (await (await client.get("/customers?limit=1")).json())["items"][0]
    mappings = (await (await client.get("/mappings")).json()).get("items") or [{"id": 1}]
    return {"imported": imported, "preview": preview, "customer": customer, "mapping": mappings[0]["id"]}


def request_for(method: str, template: str, ids: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The path and request options that reach the handler's MySQL work for one route."""
    customer = ids["customer"]
    body = {k: v for k, v in customer.items() if k not in READ_ONLY}
    job = ids["preview"] if template in ("/jobs/{id}/start", "/jobs/{id}/preview") else ids["imported"]
    if method == "DELETE" and template == "/jobs/{id}":
        job = ids["preview"]
    path = (
        template.replace("/jobs/{id}", f"/jobs/{job}")
        .replace("/customers/{id}", f"/customers/{customer['id']}")
        .replace("/mappings/{id}", f"/mappings/{ids['mapping']}")
        .replace("/docs/{name}", "/docs/swagger-ui.css")
        .replace("/static/{name}", "/static/app.js")
    )
    special: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/customers"): {"json": {**body, "email": "new.one@stalled.example"}},
        ("PUT", "/customers/{id}"): {"json": {**body, "city": "Lima"}},
        ("PATCH", "/customers/{id}"): {"json": {"city": "Lima"}},
        ("POST", "/customers/bulk-delete"): {"json": {"q": "nobody-matches-this", "expected_count": 0}},
        ("POST", "/jobs/{id}/start"): {"json": {}},
        ("POST", "/jobs/{id}/preview"): {"json": {"header_row": 1}},
        ("POST", "/jobs/{id}/revert"): {"json": {}},
        ("POST", "/jobs/{id}/cancel"): {"json": {}},
    }
    if (method, template) in special:
        return path, special[(method, template)]
    return path, ({"json": {}} if method in ("POST", "PUT", "PATCH") else {})


async def test_every_handler_answers_within_the_database_deadline_on_a_stalled_mysql(
    via_mysql_proxy: TestClient,  # noqa: F811
    mysql_proxy: TcpProxy,  # noqa: F811
    settings: Any,
) -> None:
    client = via_mysql_proxy
    deadline = client.app[CUSTOMERS].db_timeout_s
    ids = await fixtures(client, settings)
    calls = []
    for method, template in routes(client.app):
        if (method, template) == ("POST", "/upload"):
            for preview in (False, True):  # recording an upload (and a preview) must be bounded too
                path, form = upload_form(preview)
                calls.append((method, path, {"data": form}))
            continue
        path, options = request_for(method, template, ids)
        calls.append((method, path, options))
    assert len(calls) >= 30, calls

    mysql_proxy.hold_responses()
    try:

        async def one(method: str, path: str, options: dict[str, Any]) -> tuple[str, Answer]:
            return f"{method} {path}", await call(client, method, path, limit_s=deadline + MARGIN_S, **options)

        answers = await asyncio.gather(*(one(*c) for c in calls))
    finally:
        mysql_proxy.release_responses()
    # Bounded (call() asserts the time); and never a crash: what needs MySQL says it is unavailable.
    for name, answer in answers:
        assert answer.status != 500 and answer.status < 504, (name, answer.status, answer.body[:300])
    needed_mysql = {name for name, answer in answers if answer.status == 503}
    for write in ("POST /upload", "POST /upload?preview=true", f"POST /jobs/{ids['preview']}/start"):
        assert write in needed_mysql, (write, answers)

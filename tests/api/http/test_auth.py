"""API keys through the real app (gateway/http/auth.py): the ways to send one, the one 401 for every
protected path whether it exists or not, the key's name on a job, an upload refused before its body."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from shared.config import Settings
from tests.support import openapi_check
from tests.support.api import AS_CI, AS_OPS, BARE_KEY, CI_KEY, KEYS, OPS_KEY, PROBLEM, form, still_answers, stored
from tests.support.rawhttp import exchange, multipart_body, read_response, upload_head
from tests.support.workbooks import csv_bytes, customers


@pytest.fixture
async def keyed(aiohttp_client: Any, settings: Settings, clean: None) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(replace(settings, api_keys=KEYS)))
    return client


async def test_bearer_x_api_key_hashed_and_bare_keys(keyed: TestClient) -> None:
    for headers in (
        AS_CI,
        {"Authorization": f"bearer {CI_KEY}"},
        AS_OPS,
        {"X-API-Key": BARE_KEY},
        {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": CI_KEY},
    ):
        response = await keyed.get("/jobs", headers=headers)
        assert response.status == 200, headers
    for headers in (
        {},
        {"Authorization": f"Bearer {CI_KEY}x"},
        {"Authorization": f"Basic {CI_KEY}"},
        {"X-API-Key": f"sha256:{hashlib.sha256(OPS_KEY.encode()).hexdigest()}"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer "},
    ):
        response = await keyed.get("/jobs", headers=headers)
        assert response.status == 401, headers
        problem = await response.json()
        assert "Authorization: Bearer <key>" in problem["detail"] and "X-API-Key: <key>" in problem["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    await still_answers(keyed, AS_CI)


async def test_the_401_is_the_same_whether_or_not_the_path_exists(keyed: TestClient) -> None:
    job = str(uuid.uuid4())
    requests = [
        ("GET", "/jobs"),
        ("GET", "/customers/1"),
        ("GET", "/customers/999999999"),
        ("GET", "/customers/not-a-number"),
        ("GET", f"/jobs/{job}"),
        ("GET", "/jobs/not-a-uuid"),
        ("GET", "/no/such/path"),
        ("GET", "/customers?colour=blue"),
        ("DELETE", "/jobs"),
        ("GET", "/upload"),
        ("GET", "/docs/no-such-asset"),
    ]
    seen = set()
    for headers in ({}, {"X-API-Key": "wrong"}):
        for method, path in requests:
            # The raw session: the checker would (rightly, for an open API) want 404/405 for some.
            async with keyed.session.request(method, keyed.make_url(path), headers=headers) as response:
                body = await response.json(content_type=None)
                assert response.status == 401, (method, path, body)
                assert response.content_type == PROBLEM
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert body["instance"] == path.split("?")[0]
                seen.add((body["title"], body["detail"], tuple(sorted(body))))
    assert len(seen) == 2, seen  # one answer for "no key", one for "a wrong key": nothing else differs
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert (await keyed.get(path)).status == 200, path
    await still_answers(keyed, AS_OPS)


async def test_a_job_records_the_name_of_the_key_that_uploaded_it(
    keyed: TestClient, aiohttp_client: Any, settings: Settings
) -> None:
    response = await keyed.post("/upload", data=form("a.csv", csv_bytes(customers(2))), headers=AS_CI)
    assert response.status == 202
    job_id = (await response.json())["job_id"]
    job = await (await keyed.get(f"/jobs/{job_id}", headers=AS_OPS)).json()
    assert job["uploaded_by"] == "ci"
    listed = await (await keyed.get("/jobs", headers=AS_OPS)).json()
    assert [item["uploaded_by"] for item in listed["items"]] == ["ci"]
    everything = json.dumps([job, listed])
    assert CI_KEY not in everything and OPS_KEY not in everything
    response = await keyed.post("/upload", data=form("b.csv", csv_bytes(customers(2))), headers={"X-API-Key": BARE_KEY})
    job = await (await keyed.get(f"/jobs/{(await response.json())['job_id']}", headers=AS_CI)).json()
    assert job["uploaded_by"] == "key3"
    open_client = await aiohttp_client(create_app(settings))
    response = await open_client.post("/upload", data=form("c.csv", csv_bytes(customers(2))))
    job = await (await open_client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["uploaded_by"] is None
    await still_answers(keyed, AS_CI)


async def test_an_upload_without_a_key_is_refused_before_its_body(keyed: TestClient, settings: Settings) -> None:
    before = stored(settings)
    declared = 50 * 1024 * 1024  # declared, never sent
    # Expect: 100-continue: no "100 Continue" (the client never sends the body), the 401 at once.
    status, headers, body = await exchange(keyed, upload_head(declared, headers={"Expect": "100-continue"}))
    assert status == 401
    openapi_check.check("POST", "/upload", status, headers, body)
    # Without Expect: the first KB of a 50 MB body, and the 401 comes without the rest.
    status, headers, body = await exchange(keyed, upload_head(declared), b"x" * 1024)
    assert status == 401 and "X-API-Key" in json.loads(body)["detail"]
    # With a key the client is asked for the body...
    data = multipart_body(csv_bytes(customers(2)))
    reader, writer = await asyncio.open_connection(keyed.host, keyed.port)
    try:
        writer.write(upload_head(len(data), headers={"Expect": "100-continue", **AS_CI}))
        await writer.drain()
        status, _, _ = await read_response(reader)
        assert status == 100
        writer.write(data)
        await writer.drain()
        status, headers, body = await read_response(reader)
        assert status == 202, body
        openapi_check.check("POST", "/upload", status, headers, body)
    finally:
        writer.close()
    # ... unless it declares more than MAX_UPLOAD_MB.
    status, headers, body = await exchange(
        keyed, upload_head(declared * 10, headers={"Expect": "100-continue", **AS_CI})
    )
    assert status == 413
    openapi_check.check("POST", "/upload", status, headers, body)
    assert len(stored(settings)) == len(before) + 1
    await still_answers(keyed, AS_CI)


async def test_api_keys(aiohttp_client, settings: Settings, clean: None) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(replace(settings, api_keys=("s3cret", "other"))))
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert (await client.get(path)).status == 200, path
    response = await client.get("/jobs")
    assert response.status == 401 and response.content_type == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/jobs", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get("/customers", headers={"Authorization": "Basic s3cret"})).status == 401
    assert (await client.get("/jobs", headers={"Authorization": "Bearer s3cret"})).status == 200
    assert (await client.get("/jobs", headers={"Authorization": "Bearer other"})).status == 200
    response = await client.post("/upload", data=form("a.csv", csv_bytes(customers(1))))
    assert response.status == 401

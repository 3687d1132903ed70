"""Security: API keys, rate limits, caps, and hostile input.

Every test checks the answer and that the service still answers afterwards. Hostile files are made
here, small, from code (tests/support/hostile.py). Answers go through the OpenAPI checker like every
other test's, except where a test speaks raw HTTP (a body not sent, a 401 for a path the document does
not have): those are checked by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from arq.worker import Worker

from gateway.app import create_app
from gateway.http import auth
from gateway.http.ratelimit import RateLimiter
from gateway.routes import imports
from shared.config import Settings, SettingsError, load_settings
from tests.support import openapi_check
from tests.support.hostile import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    OLE,
    PDF,
    PNG,
    Raw,
    workbook,
    zip_bomb,
)
from tests.support.jobs import run_burst_worker
from tests.support.proxy import TcpProxy, target_of, url_via
from tests.support.workbooks import HEADER, csv_bytes, customer_row, customers
from worker.settings import build_worker_settings

PROBLEM = "application/problem+json"
CI_KEY = "ci-" + "k" * 40
OPS_KEY = "ops-" + "o" * 40
BARE_KEY = "bare-" + "b" * 40
KEYS = (f"ci={CI_KEY}", f"ops=sha256:{hashlib.sha256(OPS_KEY.encode()).hexdigest()}", BARE_KEY)
AS_CI = {"Authorization": f"Bearer {CI_KEY}"}
AS_OPS = {"X-API-Key": OPS_KEY}


def form(filename: str, data: bytes, field: str = "file") -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return fd


def row(i: int, **changes: str) -> list[str]:
    values = dict(zip(HEADER, (str(v) for v in customer_row(i)), strict=True))
    values.update(changes)
    return [values[name] for name in HEADER]


async def still_answers(client: TestClient, headers: dict[str, str] | None = None) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/jobs?limit=1", headers=headers or {})
    assert response.status == 200, await response.text()


def stored(settings: Settings) -> list[str]:
    return sorted(os.listdir(settings.upload_dir)) if os.path.isdir(settings.upload_dir) else []


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert status_line, "the server closed the connection without an answer"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
    return status, headers, body


async def exchange(client: TestClient, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Raw HTTP: send `head` and `body` (perhaps only the start of the body it declares), read one
    answer. Nothing waits for the rest of the body to be sent: an answer proves it was not needed."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


def upload_head(length: int, *, headers: dict[str, str] | None = None, boundary: str = "RawBoundary") -> bytes:
    lines = [
        "POST /upload HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def multipart_body(data: bytes, *, boundary: str = "RawBoundary", disposition: bytes | None = None) -> bytes:
    disposition = disposition or b'form-data; name="file"; filename="a.csv"'
    return (
        f"--{boundary}\r\n".encode()
        + b"Content-Disposition: "
        + disposition
        + b"\r\n\r\n"
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def limited(settings: Settings, **changes: Any) -> Settings:
    """Settings with rate limits on, in a Redis prefix of their own (so no other test's requests count)."""
    return replace(settings, redis_prefix=f"{settings.redis_prefix}rl{uuid.uuid4().hex[:8]}:", **changes)


@pytest.fixture
async def keyed(aiohttp_client: Any, settings: Settings, clean: None) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(replace(settings, api_keys=KEYS)))
    return client


# -- API keys ----------------------------------------------------------------------------------


def test_api_keys_are_named_hashed_or_numbered(tmp_path: Path) -> None:
    hashed = hashlib.sha256(b"ops-secret").hexdigest()
    s = load_settings({"API_KEYS": f" ci=k1 , ops=sha256:{hashed.upper()}, plain-key,YWJjZA== "}, cwd=tmp_path)
    assert s.api_keys == ("ci=k1", f"ops=sha256:{hashed.upper()}", "plain-key", "YWJjZA==")
    ring = auth.keyring(s.api_keys)
    assert [key.name for key in ring.keys] == ["ci", "ops", "key3", "key4"]
    assert ring.identify("k1") == "ci"
    assert ring.identify("ops-secret") == "ops"
    assert ring.identify("plain-key") == "key3"
    assert ring.identify("YWJjZA==") == "key4"  # base64 padding is part of a bare key
    assert ring.identify(f"sha256:{hashed}") is None  # the hash is not the key
    assert ring.identify("k2") is None and ring.identify("") is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("ci=topsecret1,ci=topsecret2", "two keys are named 'ci'"),
        ("key2=topsecret1,topsecret2", "two keys are named 'key2'"),
        ("ops=sha256:abc123", "64 hex digits"),
        ("sha256:" + "g" * 64, "64 hex digits"),
        ("bad name=topsecret", "the name before '='"),
        ("=topsecret", "the name before '='"),
    ],
)
def test_bad_api_keys_stop_start_up_without_quoting_a_key(tmp_path: Path, raw: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match="API_KEYS") as caught:
        load_settings({"API_KEYS": raw}, cwd=tmp_path)
    assert fragment in str(caught.value)
    assert "topsecret" not in str(caught.value)


def test_limit_settings(tmp_path: Path) -> None:
    s = load_settings({}, cwd=tmp_path)
    assert (s.rate_limit_per_min, s.upload_rate_limit_per_min) == (600, 30)
    assert (s.max_concurrent_uploads, s.max_rows_per_job) == (8, 2_000_000)
    s = load_settings(
        {"RATE_LIMIT_PER_MIN": "0", "UPLOAD_RATE_LIMIT_PER_MIN": "5", "MAX_CONCURRENT_UPLOADS": "2"}, cwd=tmp_path
    )
    assert (s.rate_limit_per_min, s.upload_rate_limit_per_min, s.max_concurrent_uploads) == (0, 5, 2)
    for name, value in [
        ("RATE_LIMIT_PER_MIN", "-1"),
        ("UPLOAD_RATE_LIMIT_PER_MIN", "lots"),
        ("MAX_CONCURRENT_UPLOADS", "0"),
        ("MAX_ROWS_PER_JOB", "0"),
    ]:
        with pytest.raises(SettingsError, match=name):
            load_settings({name: value}, cwd=tmp_path)


def test_a_key_is_compared_with_every_configured_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    ring = auth.keyring(KEYS)
    for supplied in (CI_KEY, OPS_KEY, "wrong"):
        calls.clear()
        ring.identify(supplied)
        # Hashed once, compared (as digests of one length) with every key: no early exit.
        assert len(calls) == len(KEYS)
        assert {a for a, _ in calls} == {hashlib.sha256(supplied.encode()).digest()}


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


# -- rate limits -------------------------------------------------------------------------------


def limit_headers(response: aiohttp.ClientResponse) -> tuple[int, int, int]:
    h = response.headers
    return int(h["RateLimit-Limit"]), int(h["RateLimit-Remaining"]), int(h["RateLimit-Reset"])


async def test_rate_limits_per_key_with_ratelimit_headers(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    client = await aiohttp_client(
        create_app(limited(settings, api_keys=KEYS, rate_limit_per_min=5, upload_rate_limit_per_min=2))
    )
    seen = []
    for _ in range(5):
        response = await client.get("/jobs", headers=AS_CI)
        assert response.status == 200
        limit, remaining, reset = limit_headers(response)
        seen.append(remaining)
        assert limit == 5 and 0 < reset <= 60
    assert seen == [4, 3, 2, 1, 0]
    refused = await client.get("/customers/1", headers=AS_CI)
    assert refused.status == 429 and refused.content_type == PROBLEM
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 13  # one request every 12 s comes back
    assert limit_headers(refused)[:2] == (5, 0)
    problem = await refused.json()
    assert "5 requests a minute" in problem["detail"] and "this API key" in problem["detail"]
    # Another key has its own allowance; public paths have none.
    other = await client.get("/jobs", headers=AS_OPS)
    assert other.status == 200 and limit_headers(other)[1] == 4
    for _ in range(10):
        health = await client.get("/healthz")
        assert health.status == 200 and "RateLimit-Limit" not in health.headers
    # A 404 counts and says so too.
    missing = await client.get("/customers/999999999", headers=AS_OPS)
    assert missing.status == 404 and limit_headers(missing)[1] == 3


async def test_uploads_have_their_own_lower_limit(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    client = await aiohttp_client(create_app(limited(settings, rate_limit_per_min=50, upload_rate_limit_per_min=2)))
    for i in range(2):
        response = await client.post("/upload", data=form(f"{i}.csv", csv_bytes(customers(1, start=i))))
        assert response.status == 202
        assert limit_headers(response)[:2] == (2, 1 - i)
    before = stored(settings)
    refused = await client.post("/upload", data=form("2.csv", csv_bytes(customers(1))))
    assert refused.status == 429
    assert "2 uploads a minute" in (await refused.json())["detail"]
    assert "this client address" in (await refused.json())["detail"]  # no keys: by address
    assert stored(settings) == before
    response = await client.get("/jobs")
    assert response.status == 200 and limit_headers(response)[:2] == (50, 49)


async def test_limits_hold_across_gateway_replicas(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    shared = limited(settings, api_keys=KEYS, rate_limit_per_min=4)
    first = await aiohttp_client(create_app(shared))
    second = await aiohttp_client(create_app(shared))
    for client in (first, second, first, second):
        assert (await client.get("/jobs", headers=AS_CI)).status == 200
    assert (await second.get("/jobs", headers=AS_CI)).status == 429
    assert (await first.get("/jobs", headers=AS_CI)).status == 429


async def test_the_limiter_refills_and_serves_requests_together(settings: Settings, redis: Any) -> None:
    limiter = RateLimiter(redis, prefix=f"{settings.redis_prefix}unit{uuid.uuid4().hex[:6]}:")
    calls = 0
    script = limiter._script

    async def counting(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await script(**kwargs)

    limiter._script = counting  # type: ignore[method-assign]
    decisions = await asyncio.gather(*(limiter.hit("api", "key:a", 120) for _ in range(120)))
    assert calls == 1  # 120 checks in one event-loop turn: one script call
    assert all(d is not None and d.allowed for d in decisions)
    assert sorted(d.remaining for d in decisions if d is not None) == list(range(120))
    denied = await limiter.hit("api", "key:a", 120)
    assert denied is not None and not denied.allowed and denied.retry_after_s == 1
    assert (await limiter.hit("api", "key:b", 120)) is not None  # another bucket
    await asyncio.sleep(0.6)  # one request every 0.5 s comes back
    again = await limiter.hit("api", "key:a", 120)
    assert again is not None and again.allowed and again.remaining == 0
    assert await limiter.hit("api", "key:a", 0) is None  # limit 0: off


@pytest.fixture
async def redis_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(*target_of(settings.redis_url, 6379))
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_limits_fail_open_when_redis_is_down_and_say_so_once(
    aiohttp_client: Any, settings: Settings, clean: None, redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.http.ratelimit")
    s = limited(settings, rate_limit_per_min=3)
    client = await aiohttp_client(create_app(replace(s, redis_url=url_via(s.redis_url, redis_proxy.port))))
    response = await client.get("/jobs")
    assert response.status == 200 and limit_headers(response)[1] == 2
    await redis_proxy.cut()
    for _ in range(12):  # far over the limit of 3: let through, without RateLimit headers
        response = await client.get("/jobs")
        assert response.status == 200 and "RateLimit-Limit" not in response.headers
    await asyncio.sleep(1.1)  # past the breaker: Redis is tried again, still down
    assert (await client.get("/jobs")).status == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.http.ratelimit"]
    assert sum("rate limits are off" in m for m in messages) == 1, messages
    await redis_proxy.restore()
    await asyncio.sleep(1.1)
    response = await client.get("/jobs")
    assert response.status == 200 and "RateLimit-Limit" in response.headers
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.http.ratelimit"]
    assert sum("enforced again" in m for m in messages) == 1, messages


# -- caps ----------------------------------------------------------------------------------------


async def test_concurrent_uploads_are_capped_per_process(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_concurrent_uploads=1)))
    gate = asyncio.Event()
    boundary = "SlowBoundary"

    async def slow_body() -> AsyncIterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.csv"\r\n\r\n'.encode()
        await gate.wait()
        yield csv_bytes(customers(2)) + f"\r\n--{boundary}--\r\n".encode()

    first = asyncio.create_task(
        client.post("/upload", data=slow_body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    )
    deadline = time.monotonic() + 5
    while imports._UPLOADS_IN_FLIGHT.get(client.app, 0) < 1:
        assert time.monotonic() < deadline and not first.done()
        await asyncio.sleep(0.01)
    refused = await client.post("/upload", data=form("b.csv", csv_bytes(customers(2))))
    assert refused.status == 503 and refused.headers["Retry-After"] == "5"
    assert "MAX_CONCURRENT_UPLOADS" in (await refused.json())["detail"]
    gate.set()
    assert (await first).status == 202
    assert imports._UPLOADS_IN_FLIGHT[client.app] == 0
    assert (await client.post("/upload", data=form("c.csv", csv_bytes(customers(2))))).status == 202
    await still_answers(client)


async def test_a_file_over_max_rows_per_job_is_refused_at_upload(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_rows_per_job=10)))
    before = stored(settings)
    response = await client.post("/upload", data=form("eleven.csv", csv_bytes(customers(11))))
    assert response.status == 413
    problem = await response.json()
    assert problem["title"] == "Too many rows"
    assert "MAX_ROWS_PER_JOB" in problem["detail"] and "10" in problem["detail"] and "11" in problem["detail"]
    assert stored(settings) == before
    assert (await client.post("/upload", data=form("ten.csv", csv_bytes(customers(10))))).status == 202
    await still_answers(client)


async def test_the_worker_enforces_max_rows_per_job(aiohttp_client: Any, settings: Settings, clean: None) -> None:
    capped = replace(settings, max_rows_per_job=10, import_batch_size=4)
    client = await aiohttp_client(create_app(capped))
    # No <dimension>: nothing tells the gateway how many rows there are; the worker counts them.
    data = workbook([HEADER, *(row(i) for i in range(25))])
    response = await client.post("/upload", data=form("many.xlsx", data))
    assert response.status == 202
    await run_burst_worker(capped)
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["status"] == "failed"
    assert "MAX_ROWS_PER_JOB" in job["error"] and "10" in job["error"]
    assert job["rows_read"] <= 10  # batches before the limit are kept, none past it
    await still_answers(client)


# -- hostile files -------------------------------------------------------------------------------


HOSTILE_UPLOADS = [
    pytest.param("empty.xlsx", b"", 400, "empty", id="empty file"),
    pytest.param("image.xlsx", PNG, 415, "PNG image", id="PNG named .xlsx"),
    pytest.param("doc.xlsx", PDF, 415, "PDF document", id="PDF named .xlsx"),
    pytest.param("notes.xlsx", b"just some notes\nnothing else\n", 422, "missing required column", id="text as .xlsx"),
    pytest.param("legacy.xls", OLE, 415, "legacy .xls", id="legacy .xls"),
    pytest.param("locked.xlsx", OLE, 415, "password-protected", id="encrypted workbook"),
    pytest.param("broken.xlsx", b"PK\x03\x04" + b"\x00garbage" * 100, 422, "damaged", id="corrupt zip"),
    pytest.param(
        "parts.xlsx",
        workbook([HEADER], leave_out=["[Content_Types].xml"]),
        422,
        "[Content_Types].xml missing",
        id="zip without content types",
    ),
    pytest.param(
        "parts.xlsx", workbook([HEADER], leave_out=["xl/workbook.xml"]), 422, "no workbook part", id="no workbook"
    ),
    pytest.param(
        "parts.xlsx",
        workbook([HEADER], leave_out=["xl/worksheets/sheet1.xml"]),
        422,
        "is missing",
        id="no worksheet part",
    ),
    pytest.param(
        "parts.xlsx",
        workbook([HEADER], leave_out=["xl/_rels/workbook.xml.rels"]),
        422,
        "has no worksheet part",
        id="no workbook relationships",
    ),
    pytest.param("bomb.xlsx", zip_bomb(100), 422, "compression ratio", id="zip bomb 1000:1"),
    pytest.param("nul.csv", b"first_name,email\x00\nAda,a@b.co\n", 415, "binary", id="CSV with a NUL byte"),
    # Built when the test runs (a callable), not held for the whole session.
    pytest.param("line.csv", lambda: b"a" * (100 * 1024 * 1024), 422, "field larger than field limit", id="100MB-line"),
]


@pytest.mark.parametrize(("filename", "data", "status", "fragment"), HOSTILE_UPLOADS)
async def test_hostile_uploads_are_refused_and_leave_nothing(
    client: TestClient, settings: Settings, filename: str, data: bytes | Callable[[], bytes], status: int, fragment: str
) -> None:
    data = data() if callable(data) else data
    before = stored(settings)
    started = time.monotonic()
    response = await client.post("/upload", data=form(filename, data))
    assert time.monotonic() - started < 10
    assert response.status == status, await response.text()
    problem = await response.json()
    assert fragment in problem["detail"], problem
    assert stored(settings) == before
    assert (await (await client.get("/jobs")).json())["items"] == []
    await still_answers(client)


async def test_upload_without_a_file_or_with_two(client: TestClient, settings: Settings) -> None:
    before = stored(settings)
    response = await client.post("/upload", data=form("a.csv", csv_bytes(customers(1)), field="document"))
    assert response.status == 400 and (await response.json())["errors"][0]["field"] == "document"
    fd = aiohttp.FormData()
    fd.add_field("dry_run", "true")
    response = await client.post("/upload", data=fd)
    assert response.status in (400, 415)
    two = form("a.csv", csv_bytes(customers(1)))
    two.add_field("file", csv_bytes(customers(1)), filename="b.csv", content_type="text/csv")
    response = await client.post("/upload", data=two)
    assert response.status == 400 and "one file per upload" in (await response.json())["detail"]
    assert stored(settings) == before
    await still_answers(client)


async def test_a_workbook_inflating_past_max_inflated_mb_is_413(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_inflated_mb=50)))
    response = await client.post("/upload", data=form("big.xlsx", zip_bomb(60)))
    assert response.status == 413 and "would inflate" in (await response.json())["detail"]
    await still_answers(client)


async def test_an_upload_over_max_upload_mb_is_413_without_reading_the_rest(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_upload_mb=1)))
    status, headers, body = await exchange(client, upload_head(5 * 1024 * 1024), b"x" * 4096)
    assert status == 413 and "1 MB" in json.loads(body)["detail"]
    openapi_check.check("POST", "/upload", status, headers, body)
    await still_answers(client)


async def _import(client: TestClient, settings: Settings, filename: str, data: bytes) -> dict[str, Any]:
    response = await client.post("/upload", data=form(filename, data))
    assert response.status == 202, await response.text()
    await run_burst_worker(settings)
    job: dict[str, Any] = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    return job


async def test_entities_in_a_sheet_are_never_expanded_or_fetched(client: TestClient, settings: Settings) -> None:
    # The sheet is read at upload (the header check) by the compiled reader, which refuses the DTD:
    # a 422 naming the entity declaration, nothing queued.
    for prolog, entity in ((BILLION_LAUGHS, "&lol9;"), (EXTERNAL_ENTITY, "&xxe;")):
        started = time.monotonic()
        data = workbook([HEADER, row(1, first_name=Raw(entity))], sheet_prolog=prolog)
        response = await client.post("/upload", data=form("entities.xlsx", data))
        assert time.monotonic() - started < 15
        assert response.status == 422 and "entity" in (await response.json())["detail"], await response.text()
    items = (await (await client.get("/customers?limit=1000")).json())["items"]
    assert not any("root:" in json.dumps(item) or "lollol" in json.dumps(item) for item in items)
    await still_answers(client)


@pytest.mark.parametrize("prolog", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion laughs", "external entity"])
async def test_entities_in_shared_strings_are_refused_at_upload(
    client: TestClient, settings: Settings, prolog: str
) -> None:
    entity = "&lol9;" if prolog == BILLION_LAUGHS else "&xxe;"
    data = workbook([HEADER, row(1, first_name=Raw(entity))], shared_strings=True, strings_prolog=prolog)
    response = await client.post("/upload", data=form("entities.xlsx", data))
    assert response.status == 422, await response.text()
    await still_answers(client)


async def test_a_dimension_claiming_a_million_rows_is_not_believed(client: TestClient, settings: Settings) -> None:
    data = workbook([HEADER, *(row(i) for i in range(3))], dimension="A1:J1000000")
    response = await client.post("/upload?preview=true", data=form("claims.xlsx", data))
    assert response.status == 201
    preview = await response.json()
    assert preview["preview"]["rows_total_estimate"] is None  # 1,000,000 rows cannot fit this sheet
    assert (await client.post(f"/jobs/{preview['job_id']}/start")).status == 202
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{preview['job_id']}")).json()
    assert (job["status"], job["rows_inserted"], job["progress"]["rows_total_estimate"]) == ("completed", 3, 3)
    await still_answers(client)


async def test_huge_strings_cells_and_rows_import_as_row_errors(client: TestClient, settings: Settings) -> None:
    # Random text: a run of one letter would (rightly) be refused as a zip bomb first.
    five_mb = os.urandom(2_500_000).hex()
    job = await _import(
        client, settings, "shared.xlsx", workbook([HEADER, row(1, company_name=five_mb)], shared_strings=True)
    )
    assert (job["status"], job["rows_invalid"]) == ("completed", 1)
    assert job["errors"][0]["column"] == "company_name" and "Longer than 100" in job["errors"][0]["message"]
    one_mb = os.urandom(512 * 1024).hex()
    job = await _import(client, settings, "cell.xlsx", workbook([HEADER, row(2, address=one_mb)]))
    assert (job["status"], job["rows_invalid"]) == ("completed", 1)
    assert "Longer than 255" in job["errors"][0]["message"] and len(json.dumps(job)) < 100_000
    wide = [*row(3), *(["v"] * (16384 - len(HEADER)))]  # every column Excel has
    job = await _import(client, settings, "wide.xlsx", workbook([HEADER, wide]))
    assert (job["status"], job["rows_inserted"]) == ("completed", 1)
    await still_answers(client)


async def test_escapes_and_inline_strings(client: TestClient, settings: Settings) -> None:
    data = workbook([HEADER, row(1, first_name="Ada_x000D_", last_name="Love_x006C_ace"), row(2, first_name="Inline")])
    job = await _import(client, settings, "escapes.xlsx", data)
    assert (job["status"], job["rows_inserted"]) == ("completed", 2)
    items = (await (await client.get("/customers?limit=10")).json())["items"]
    assert {(c["first_name"], c["last_name"]) for c in items} == {("Ada", "Lovelace"), ("Inline", "Last2")}
    await still_answers(client)


async def test_csv_nul_bytes_and_ragged_rows_are_row_errors(client: TestClient, settings: Settings) -> None:
    # A NUL past the first 64 KB (where the file is recognised as text) is just a character.
    data = csv_bytes(customers(1500)) + b"Nul\x00Name,x\n" + b"only,two\n" + b",".join([b"x"] * 14) + b"\n"
    job = await _import(client, settings, "ragged.csv", data)
    assert (job["status"], job["rows_inserted"], job["rows_invalid"]) == ("completed", 1500, 3)
    assert all("values but the header has 10 columns" in e["message"] for e in job["errors"])
    await still_answers(client)


async def run_worker_once(settings: Settings) -> None:
    """A burst worker that tries each job once: a job that crashes is not retried for a minute."""
    kwargs = build_worker_settings(settings)
    kwargs["cron_jobs"] = []
    kwargs["functions"] = [dataclasses.replace(f, max_tries=1) for f in kwargs["functions"]]
    worker = Worker(**kwargs, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def test_a_header_of_16384_columns_imports(client: TestClient, settings: Settings) -> None:
    header = [*HEADER, *(f"extra_column_{i}" for i in range(16384 - len(HEADER)))]
    response = await client.post("/upload", data=form("wide.xlsx", workbook([header, row(1)])))
    assert response.status == 202
    await run_worker_once(settings)
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["status"] == "completed", job
    await still_answers(client)


async def test_a_csv_wider_than_excel_is_refused_quickly(client: TestClient) -> None:
    header = ",".join([*HEADER, *(["x"] * 40_000)]).encode()  # the required columns, then 40,000 more
    started = time.monotonic()
    response = await client.post("/upload", data=form("wide.csv", header + b"\n" + b",".join([b"v"] * 10) + b"\n"))
    elapsed = time.monotonic() - started
    assert response.status == 422 and "16,384" in (await response.json())["detail"], response.status
    assert elapsed < 1, elapsed
    await still_answers(client)


# -- multipart -----------------------------------------------------------------------------------


async def test_multipart_without_a_boundary_is_400(client: TestClient) -> None:
    # It once was a 500.
    body = multipart_body(csv_bytes(customers(1)))
    response = await client.post("/upload", data=body, headers={"Content-Type": "multipart/form-data"})
    assert response.status == 400 and response.content_type == PROBLEM
    assert "boundary" in (await response.json())["detail"]
    await still_answers(client)


CSV = csv_bytes(customers(2))
MALFORMED = [
    pytest.param("multipart/form-data; boundary=", multipart_body(CSV), id="empty boundary"),
    pytest.param("multipart/form-data; boundary=Other", multipart_body(CSV), id="wrong boundary"),
    pytest.param('multipart/form-data; boundary="a\\"b"', multipart_body(CSV), id="odd boundary"),
    pytest.param("multipart/form-data; boundary=RawBoundary", multipart_body(CSV)[:-40], id="body cut short"),
    pytest.param(
        "multipart/form-data; boundary=RawBoundary",
        multipart_body(CSV, disposition=b'form-data; name="file"; filename="a.csv"\r\nX-Pad: ' + b"a" * 200_000),
        id="200 KB part header",
    ),
    pytest.param(
        "multipart/form-data; boundary=RawBoundary",
        multipart_body(CSV, disposition=b'form-data; name="file"; filename="' + b"a" * 100_000 + b'.csv"'),
        id="100 KB filename",
    ),
    pytest.param(
        "multipart/form-data; boundary=RawBoundary",
        multipart_body(CSV, disposition=b'form-data; name="file"; filename="a\x00b.csv"'),
        id="NUL in filename",
    ),
]


@pytest.mark.parametrize(("content_type", "body"), MALFORMED)
async def test_malformed_multipart_is_400(
    client: TestClient, settings: Settings, content_type: str, body: bytes
) -> None:
    before = stored(settings)
    response = await client.post("/upload", data=body, headers={"Content-Type": content_type})
    assert response.status == 400, await response.text()
    assert "multipart body cannot be read" in (await response.json())["detail"]
    assert stored(settings) == before
    await still_answers(client)


async def test_non_utf8_part_names_and_filenames(client: TestClient, settings: Settings) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=RawBoundary"}
    body = multipart_body(CSV, disposition=b'form-data; name="fil\xe9"; filename="a.csv"')
    response = await client.post("/upload", data=body, headers=headers)
    assert response.status == 400 and (await response.json())["errors"][0]["field"] == "fil\ufffd"
    body = multipart_body(CSV, disposition=b'form-data; name="file"; filename="caf\xe9.csv"')
    response = await client.post("/upload", data=body, headers=headers)
    assert response.status == 202, await response.text()
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["filename"] == "caf\ufffd.csv"
    await still_answers(client)


def _written_outside(root: Path) -> list[Path]:
    return [*root.rglob("evil.csv"), *(p for p in [Path("/tmp/evil.csv"), Path("/etc/evil.csv")] if p.exists())]


@pytest.mark.parametrize(
    "disposition",
    [
        b'form-data; name="file"; filename="../../../../../../tmp/evil.csv"',
        b'form-data; name="file"; filename="..\\\\..\\\\evil.csv"',
        b'form-data; name="file"; filename="/etc/evil.csv"',
        b'form-data; name="file"; filename="a/b/c/evil.csv"',
        b"form-data; name=\"file\"; filename*=UTF-8''..%2F..%2Fevil.csv",
    ],
    ids=["dot-dot", "backslashes", "absolute", "separators", "RFC 5987 dot-dot"],
)
async def test_a_filename_is_a_label_never_a_path(client: TestClient, settings: Settings, disposition: bytes) -> None:
    before = stored(settings)
    body = multipart_body(CSV, disposition=disposition)
    response = await client.post(
        "/upload", data=body, headers={"Content-Type": "multipart/form-data; boundary=RawBoundary"}
    )
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    assert set(stored(settings)) - set(before) == {f"{job_id}.csv"}
    assert _written_outside(Path(settings.upload_dir).parent) == []
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["filename"].endswith("evil.csv")  # recorded as sent, shown as text
    await still_answers(client)


async def test_a_huge_request_header_is_refused(client: TestClient) -> None:
    head = b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n"
    status, _, _ = await exchange(client, head)
    assert status in (400, 431)
    await still_answers(client)


# -- JSON bodies ---------------------------------------------------------------------------------


async def post_json(client: TestClient, body: bytes) -> tuple[int, dict[str, Any]]:
    response = await client.post("/customers", data=body, headers={"Content-Type": "application/json"})
    return response.status, await response.json()


async def test_json_bodies_over_the_cap_or_of_the_wrong_shape(client: TestClient) -> None:
    status, problem = await post_json(client, b'{"first_name": "' + b"a" * (1024 * 1024) + b'", "email": "a@b.co"}')
    assert status == 413 and "1048576" in problem["detail"]
    status, problem = await post_json(
        client, json.dumps({"first_name": {"x": 1}, "email": 5, "phone": [1], "city": True}).encode()
    )
    assert status == 422
    assert {e["field"] for e in problem["errors"]} == {"first_name", "email", "phone", "city"}
    status, problem = await post_json(
        client, json.dumps({"first_name": "A", "email": "u@ex.com", "colour": 1}).encode()
    )
    assert status == 422 and problem["errors"] == [{"field": "colour", "message": "Unknown field."}]
    status, problem = await post_json(client, b"[1, 2]")
    assert status == 422 and "JSON object" in problem["detail"]
    status, problem = await post_json(client, json.dumps({"first_name": "a" * 900_000, "email": "s@ex.com"}).encode())
    assert status == 422 and problem["errors"][0]["field"] == "first_name"
    status, problem = await post_json(client, b'{"first_name": "\xff", "email": "x@ex.com"}')
    assert status == 400 and "not valid JSON" in problem["detail"]
    status, problem = await post_json(client, b'{"first_name": NaN, "email": "nan@ex.com"}')
    assert status in (400, 422)
    status, problem = await post_json(client, b'{"first_name": 1' + b"0" * 5000 + b', "email": "n@ex.com"}')
    assert status in (400, 422)
    await still_answers(client)


async def test_deeply_nested_json_is_400(client: TestClient) -> None:
    status, _ = await post_json(client, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    await still_answers(client)


async def test_a_lone_surrogate_in_json_is_refused(client: TestClient) -> None:
    status, _ = await post_json(client, b'{"first_name": "\\ud800", "email": "sur@ex.com"}')
    assert status in (400, 422)
    await still_answers(client)


# -- query values --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/customers", "/customers/cache", "/jobs"])
async def test_limits_and_cursors_that_make_no_sense(client: TestClient, path: str) -> None:
    for value in ("-1", "0", "9" * 40, "1e3", " ", "0x10", "2.5"):
        response = await client.get(path, params={"limit": value})
        assert response.status == 422, value
        assert (await response.json())["errors"][0]["field"] == "limit"
    for cursor in ("garbage", "A" * 6_000, "\x00", "eyJhZnRlciI6IC0xfQ", "eyJhZnRlciI6ICIxIE9SIDE9MSJ9", "%%%"):
        response = await client.get(path, params={"cursor": cursor})
        assert response.status == 400, cursor
        assert (await response.json())["errors"][0]["field"] == "cursor"
    await still_answers(client)


async def test_sql_and_redis_metacharacters_in_q_are_plain_text(client: TestClient) -> None:
    names = ["O'Brien", "100%", "a_b", "back\\slash", "star*", "[a-z]", "plain"]
    for i, name in enumerate(names):
        response = await client.post("/customers", json={"first_name": name, "email": f"m{i}@example.com"})
        assert response.status == 201
    for q, expected in [
        ("'", ["O'Brien"]),
        ("%", ["100%"]),
        ("_", ["a_b"]),
        ("\\", ["back\\slash"]),
        ("*", ["star*"]),
        ("[a-z]", ["[a-z]"]),
        ("?", []),
        ("' OR 1=1 --", []),
        ('"; DROP TABLE customers; --', []),
        ("\r\nFLUSHALL\r\n", []),
    ]:
        for _ in range(2):  # a miss, then the page as cached
            response = await client.get("/customers", params={"q": q})
            assert response.status == 200, q
            assert [c["first_name"] for c in (await response.json())["items"]] == expected, q
        export = await client.get("/customers/export", params={"q": q, "format": "csv"})
        assert export.status == 200
        assert len((await export.text()).strip().splitlines()) == 1 + len(expected), q
    assert len((await (await client.get("/customers")).json())["items"]) == len(names)
    await still_answers(client)


async def test_an_encoding_with_a_nul_is_422_not_500(client: TestClient) -> None:
    # Found by schemathesis (POST /jobs/{id}/start): codecs.lookup raises ValueError for a NUL.
    response = await client.post("/upload", params={"encoding": "utf-8\x00"}, data=form("a.csv", CSV))
    assert response.status == 422 and (await response.json())["errors"][0]["field"] == "encoding"
    response = await client.post("/upload?preview=true", data=form("a.csv", CSV))
    job_id = (await response.json())["job_id"]
    response = await client.post(f"/jobs/{job_id}/start", json={"encoding": "\x00"})
    assert response.status == 422 and (await response.json())["errors"][0]["field"] == "encoding"
    await still_answers(client)

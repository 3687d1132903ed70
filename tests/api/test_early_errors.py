"""Every answer aiohttp gives before the app's handlers and middleware is a problem document
(RFC 9457), like the app's own: raw bytes on a socket to the real app (gateway.app.create_app) served
on a local port, because an HTTP client library would not send most of these requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

PROBLEM = "application/problem+json"
HOST = b"Host: gateway.test\r\n"

CASES: dict[str, tuple[bytes, int, str]] = {
    # name: (request, status, a fragment of the detail)
    "raw UTF-8 in the query": (b"GET /customers?q=M\xc3\xbcller HTTP/1.1\r\n" + HOST + b"\r\n", 400, "percent-encoded"),
    "a byte that is not UTF-8 in the query": (b"GET /customers?q=\xff HTTP/1.1\r\n" + HOST + b"\r\n", 400, "percent"),
    "raw UTF-8 in the path": (b"GET /cust\xc3\xbcmers HTTP/1.1\r\n" + HOST + b"\r\n", 400, "path"),
    "a control character in the path": (b"GET /cus\x01tomers HTTP/1.1\r\n" + HOST + b"\r\n", 400, "path"),
    "not HTTP at all": (b"GARBAGE\r\n\r\n", 400, "HTTP method"),
    "a malformed method": (b"G@T /customers HTTP/1.1\r\n" + HOST + b"\r\n", 400, "HTTP method"),
    "an unknown HTTP version": (b"GET /customers HTTP/9.9\r\n" + HOST + b"\r\n", 400, "HTTP version"),
    "a request line too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "8190"),
    "a header too large": (b"GET /customers HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * 9000 + b"\r\n\r\n", 431, "header"),
    "too many headers": (
        b"GET /customers HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n",
        431,
        "too many header",
    ),
    "an invalid header name": (b"GET /customers HTTP/1.1\r\n" + HOST + b"Bad Header: a\r\n\r\n", 400, "header"),
    "a Content-Length that is not a number": (
        b"POST /customers HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n",
        400,
        "Content-Length",
    ),
    "Content-Length and Transfer-Encoding both": (
        b"POST /customers HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        "Transfer-Encoding",
    ),
    "an unknown Transfer-Encoding": (
        b"POST /customers HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n",
        400,
        "Transfer-Encoding",
    ),
    "a malformed chunk": (
        b"POST /customers HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "chunk",
    ),
    "an invalid absolute URL": (b"GET http://[bad/ HTTP/1.1\r\n" + HOST + b"\r\n", 400, "URL"),
    # Raised by the router's expect handler, before the middleware runs.
    "an Expect other than 100-continue": (
        b"POST /customers HTTP/1.1\r\n" + HOST + b"Expect: teapot\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        417,
        "teapot",
    ),
    "an Expect on a path that does not exist": (
        b"POST /nowhere HTTP/1.1\r\n" + HOST + b"Expect: teapot\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        417,
        "Expect",
    ),
}


async def exchange(client: TestClient, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes (each of these closes the connection)."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


@pytest.mark.parametrize("case", list(CASES))
async def test_an_answer_before_the_handlers_is_a_problem_document(client: TestClient, case: str) -> None:
    raw, status, fragment = CASES[case]
    got, headers, body = await exchange(client, raw)
    assert got == status, body
    assert headers["content-type"] == PROBLEM, (headers, body)
    doc: dict[str, Any] = json.loads(body)
    assert doc["status"] == status and doc["type"] == "about:blank" and doc["title"], doc
    assert fragment.lower() in doc["detail"].lower(), doc
    assert "\\x" not in doc["detail"] and len(doc["detail"]) <= 300, doc  # the request's bytes are not echoed


async def test_a_body_over_the_limit_is_a_problem_document(client: TestClient) -> None:
    too_big = b'{"first_name": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    raw = b"POST /customers HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
    raw += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(too_big) + too_big
    status, headers, body = await exchange(client, raw)
    assert status == 413 and headers["content-type"] == PROBLEM, body
    assert json.loads(body)["status"] == 413


async def test_a_well_formed_request_on_the_same_server_is_unchanged(client: TestClient) -> None:
    status, headers, body = await exchange(
        client, b"GET /customers?q=M%C3%BCller HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
    )
    assert status == 200 and headers["content-type"].startswith("application/json"), body
    assert json.loads(body)["items"] == []

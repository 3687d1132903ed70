"""Raw HTTP to an in-process app: requests aiohttp's client would not send (a body declared and never sent,
`Expect: 100-continue` answered by hand, malformed multipart bodies)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient


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

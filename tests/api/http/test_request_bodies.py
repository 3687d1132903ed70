"""Request bodies and headers the service must refuse cleanly: JSON over the 1 MB cap, of the wrong
shape, deeply nested, with a lone surrogate; a 100 KB request header."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.api import still_answers
from tests.support.rawhttp import exchange


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


async def test_a_huge_request_header_is_refused(client: TestClient) -> None:
    head = b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n"
    status, _, _ = await exchange(client, head)
    assert status in (400, 431)
    await still_answers(client)

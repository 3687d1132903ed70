"""What the fuzzer's data checks (negative_data_rejection, positive_data_acceptance: tests/system/
test_fuzz.py) found where the server and its OpenAPI document disagreed, one case each, in the app."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient

from gateway.openapi.operations import IF_MATCH

pytestmark = pytest.mark.usefixtures("clean")


async def created(client: TestClient) -> dict[str, Any]:
    response = await client.post("/customers", json={"email": "fuzz.finding@example.com"})
    assert response.status == 201, await response.text()
    doc: dict[str, Any] = await response.json()
    return doc


async def test_an_empty_limit_or_format_is_refused_as_the_document_says(client: TestClient) -> None:
    # `limit` is an integer and `format` an enum: an empty value is neither (it used to mean "absent").
    for path, field in (("/customers?limit=", "limit"), ("/jobs?limit=", "limit"), ("/template?format=", "format")):
        response = await client.get(path)
        assert response.status == 422, (path, await response.text())
        assert (await response.json())["errors"][0]["field"] == field


async def test_a_value_too_long_as_sent_is_refused_even_if_trimming_would_fit_it(client: TestClient) -> None:
    doc = await created(client)
    padded = "   " + "a" * 99  # 102 characters sent; 99 once trimmed; first_name holds 100
    for response in (
        await client.post("/customers", json={"email": "other@example.com", "first_name": padded}),
        await client.patch(f"/customers/{doc['id']}", json={"first_name": padded}),
    ):
        assert response.status == 422, await response.text()
        assert (await response.json())["errors"][0]["field"] == "first_name"


async def test_an_integral_number_is_a_whole_number_for_bulk_delete(client: TestClient) -> None:
    await created(client)
    response = await client.post("/customers/bulk-delete", json={"q": "fuzz.finding", "expected_count": 1.0})
    assert response.status == 202, await response.text()


def test_the_if_match_pattern_is_what_the_server_takes() -> None:
    pattern = re.compile(cast(dict[str, str], IF_MATCH["schema"])["pattern"])
    for value in ("*", '"v3"', 'W/"v3"', '"v1", W/"v2"', '"v1","v2"'):
        assert pattern.match(value), value
    for value in ("", "0", "v3", '"3"', "abc"):
        assert not pattern.match(value), value


async def test_a_header_the_pattern_refuses_is_a_400_and_one_it_takes_is_not(client: TestClient) -> None:
    doc = await created(client)
    url = f"/customers/{doc['id']}"
    assert (await client.patch(url, json={"city": "York"}, headers={"If-Match": "0"})).status == 400
    assert (await client.patch(url, json={"city": "York"}, headers={"If-Match": '"v1","v9"'})).status == 200

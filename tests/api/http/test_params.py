"""Query values that make no sense (gateway/http/params.py): limits and cursors on every paginated
endpoint."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.support.api import still_answers


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

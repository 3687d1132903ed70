"""One JSON encoder for every response: UTF-8 as is (`"Zürich"`, never `"Z\\u00fcrich"`)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

JSON = "application/json"


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None, content_type: str = JSON
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type=content_type)

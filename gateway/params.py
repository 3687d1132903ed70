"""Parsing and checking client input: query values, ids, JSON bodies, ETags."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from gateway.problems import Problem, field_problem


def limit_param(request: web.Request, *, default: int, maximum: int) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise field_problem(
            422, "Invalid query parameter", f"limit must be a whole number, got {raw!r}", "limit", "Not a whole number."
        ) from None
    if not 1 <= value <= maximum:
        raise field_problem(
            422,
            "Invalid query parameter",
            f"limit must be between 1 and {maximum}, got {value}",
            "limit",
            f"Must be between 1 and {maximum}.",
        )
    return value


def bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise field_problem(
        422, "Invalid query parameter", f"{name} must be true or false, got {raw!r}", name, "Must be true or false."
    )


def text_param(request: web.Request, name: str, *, max_length: int) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if len(value) > max_length:
        raise field_problem(
            422,
            "Invalid query parameter",
            f"{name} must be at most {max_length} characters",
            name,
            f"At most {max_length} characters.",
        )
    return value or None


def customer_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise field_problem(
            400,
            "Invalid id",
            f"customer id must be a positive whole number, got {raw!r}",
            "id",
            "Must be a positive whole number.",
        )
    return int(raw)


def job_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise field_problem(400, "Invalid id", f"job id must be a UUID, got {raw!r}", "id", "Must be a UUID.") from None


async def json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise Problem(400, "Missing body", "The request needs a JSON object body.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from None


def etag(version: int) -> str:
    return f'"v{version}"'


def if_match_version(request: web.Request) -> int | None:
    """The version an If-Match header asks for; None when absent or `*`. A malformed tag
    matches nothing (412), as RFC 9110 requires."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    tag = raw.split(",")[0].strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if tag.startswith("v") and tag[1:].isdigit():
        return int(tag[1:])
    return -1


def none_match(request: web.Request, version: int) -> bool:
    raw = request.headers.get("If-None-Match")
    if raw is None:
        return False
    if raw.strip() == "*":
        return True
    current = etag(version)
    return any(tag.strip().removeprefix("W/") == current for tag in raw.split(","))

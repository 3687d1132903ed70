"""Parsing and checking client input: query values, ids, JSON bodies, ETags."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from gateway.http.problems import Problem, field_problem

H = TypeVar("H", bound=Callable[..., Any])


def accepts(*names: str) -> Callable[[H], H]:
    """Declare the query parameters a handler takes; the middleware answers 400 to any other."""

    def mark(handler: H) -> H:
        handler.query_params = frozenset(names)  # type: ignore[attr-defined]
        return handler

    return mark


def check_query(request: web.Request) -> None:
    """400 naming the first query parameter the matched handler does not take."""
    if not request.query:
        return
    allowed: frozenset[str] = getattr(request.match_info.handler, "query_params", frozenset())
    for name in request.query:
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) or "none"
            raise field_problem(
                400,
                "Unknown query parameter",
                f"{name!r} is not a parameter of {request.method} {request.path} (it takes: {takes}).",
                name,
                "Not a parameter of this endpoint.",
            )


def limit_param(request: web.Request, *, default: int, maximum: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
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


def choice_param(request: web.Request, name: str, choices: tuple[str, ...], *, default: str) -> str:
    value = request.query.get(name, default).strip().lower()
    if value not in choices:
        allowed = " or ".join(choices)
        raise field_problem(
            422, "Invalid query parameter", f"{name} must be {allowed}, got {value!r}", name, f"Must be {allowed}."
        )
    return value


def cursor_param(request: web.Request) -> str | None:
    """The `cursor` a client passed back; empty means none (the first page)."""
    return request.query.get("cursor") or None


def bool_param(request: web.Request, name: str) -> bool:
    return parse_bool(name, request.query.get(name))


def parse_bool(name: str, raw: str | None) -> bool:
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
        # orjson: nesting past 1,024 levels and lone surrogate escapes are errors here, not a
        # RecursionError or a string MySQL cannot store later.
        return orjson.loads(raw)
    except ValueError as exc:
        raise Problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from None


def etag(version: int) -> str:
    return f'"v{version}"'


_ETAG = re.compile(r'^(W/)?"v(\d{1,18})"$')

# No customer has version 0 (they start at 1): the If-Match answer for "no tag can match".
NO_STRONG_MATCH = 0


def if_match_version(request: web.Request) -> int | None:
    """The version an If-Match header asks for; None when absent or `*`. A tag that is not one of
    ours (`"v<version>"`) is a 400 naming the header, not a silent mismatch. If-Match uses the strong
    comparison (RFC 9110 section 13.1.1): a weak tag (`W/"v4"`) never matches, so a list of weak tags
    only gives NO_STRONG_MATCH, which the service answers with 412."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    strong: list[int] = []
    for tag in raw.split(","):
        match = _ETAG.match(tag.strip())
        if match is None:
            raise field_problem(
                400,
                "Invalid If-Match header",
                f'If-Match must be an ETag this API sent, like "v3", got {raw[:100]!r}',
                "If-Match",
                'Not an ETag of the form "v<version>".',
            )
        if match.group(1) is None:
            strong.append(int(match.group(2)))
    return strong[0] if strong else NO_STRONG_MATCH


def none_match(request: web.Request, version: int) -> bool:
    raw = request.headers.get("If-None-Match")
    if raw is None:
        return False
    if raw.strip() == "*":
        return True
    current = etag(version)
    return any(tag.strip().removeprefix("W/") == current for tag in raw.split(","))

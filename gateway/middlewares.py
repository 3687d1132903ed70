"""Middlewares: request id and access log, problem documents for every error, API-key auth."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.keys import METRICS, SETTINGS
from gateway.problems import Problem, problem_response
from shared.db import DatabaseUnavailable
from shared.logs import request_id_var

log = logging.getLogger("gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[METRICS].observe(request.method, name, status, elapsed)
        if log.isEnabledFor(logging.INFO) and not (status < 400 and name in ("/healthz", "/metrics")):
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
        request_id_var.reset(token)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        response = problem_response(request, problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        response = problem_response(
            request,
            Problem(
                exc.status,
                exc.reason,
                exc.text if exc.text and not exc.text.startswith(str(exc.status)) else None,
                headers=headers,
            ),
        )
    except DatabaseUnavailable:
        log.warning("mysql unavailable")
        response = problem_response(
            request,
            Problem(
                503,
                "Service Unavailable",
                "The database is unavailable; try again shortly.",
                headers={"Retry-After": "2"},
            ),
        )
    except Exception:
        log.exception("unhandled error")
        response = problem_response(
            request, Problem(500, "Internal Server Error", "An unexpected error occurred; it has been logged.")
        )
    return response


@web.middleware
async def api_key_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    keys = request.app[SETTINGS].api_keys
    if not keys or request.path in PUBLIC_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() == "bearer" and supplied:
        supplied_bytes = supplied.strip().encode()
        # Compare against every key, always, so timing says nothing about which key nearly matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(supplied_bytes, key.encode())
        if matched:
            return await handler(request)
    raise Problem(
        401,
        "Unauthorized",
        "Send a valid API key as 'Authorization: Bearer <key>'.",
        headers={"WWW-Authenticate": 'Bearer realm="customer-import"'},
    )

"""The one middleware every request goes through: request id, API-key check, problem documents for
every error, metrics and the access log.

It is a single middleware rather than three on purpose: each aiohttp middleware layer costs a
coroutine and a call per request, which shows on the cached-read path (see tests/bench/read_bench.py).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.keys import METRICS, SETTINGS
from gateway.params import check_query
from gateway.problems import Problem, field_problem, problem_response
from shared.cursors import BadCursor
from shared.db import DatabaseUnavailable
from shared.logs import request_id_var

log = logging.getLogger("gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/postman.json",
        "/docs",
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/favicon-32x32.png",
        "/docs/init.js",
    }
)
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
SLOW_S = 0.5


def _authorize(request: web.Request, keys: tuple[bytes, ...]) -> None:
    if not keys or request.path in PUBLIC_PATHS:
        return
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and supplied:
        supplied_bytes = supplied.strip().encode()
        # Compare against every key, always, so timing says nothing about which key nearly matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(supplied_bytes, key)
        if matched:
            return
    raise Problem(
        401,
        "Unauthorized",
        "Send a valid API key as 'Authorization: Bearer <key>'.",
        headers={"WWW-Authenticate": 'Bearer realm="customer-import"'},
    )


def _problem_for(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, Problem):
        return problem_response(request, exc)
    if isinstance(exc, web.HTTPException):
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        detail = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else None
        return problem_response(request, Problem(exc.status, exc.reason, detail, headers=headers))
    if isinstance(exc, BadCursor):
        return problem_response(
            request,
            field_problem(
                400,
                "Invalid cursor",
                "cursor is not one this API issued: pass back the next_cursor of the previous page.",
                "cursor",
                "Not a cursor this API issued.",
            ),
        )
    if isinstance(exc, DatabaseUnavailable):
        log.warning("mysql unavailable", extra={"error": str(exc)})
        return problem_response(
            request,
            Problem(
                503,
                "Service Unavailable",
                "The database is unavailable; try again shortly.",
                headers={"Retry-After": "2"},
            ),
        )
    log.error("unhandled error", exc_info=exc)
    return problem_response(
        request, Problem(500, "Internal Server Error", "An unexpected error occurred; it has been logged.")
    )


@web.middleware
async def serve(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else secrets.token_hex(16)
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    status = 500
    try:
        try:
            _authorize(request, settings.api_key_bytes)
            if not isinstance(request.match_info.route.resource, web.StaticResource):
                check_query(request)
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _problem_for(request, exc)
        except Exception as exc:
            response = _problem_for(request, exc)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].observe(request.method, route, status, elapsed)
        # Every write, error and slow request is logged; successful fast reads are counted in
        # /metrics and logged only with ACCESS_LOG_READS (a log line costs ~20% of a cached read).
        if (
            status >= 400
            or elapsed >= SLOW_S
            or (request.method not in ("GET", "HEAD") and route not in QUIET_ROUTES)
            or (settings.access_log_reads and route not in QUIET_ROUTES)
        ) and log.isEnabledFor(logging.INFO):
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

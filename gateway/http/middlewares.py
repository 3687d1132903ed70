"""The one middleware every request goes through: request id, API-key check (gateway.http.auth), rate
limits (gateway.http.ratelimit), problem documents for every error, metrics and the access log.

It is a single middleware rather than three on purpose: each aiohttp middleware layer costs a
coroutine and a call per request, which shows on the cached-read path (see tests/bench/read_bench.py).
"""

from __future__ import annotations

import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.http import auth
from gateway.http.keys import METRICS, REDIS, SETTINGS
from gateway.http.params import check_query
from gateway.http.problems import Problem, field_problem, problem_response
from gateway.http.ratelimit import Decision, RateLimiter
from gateway.web import PUBLIC_PATHS as PAGE_PATHS
from shared.config import Settings
from shared.imports.service import JobConflict, JobNotFound
from shared.infra.cursors import BadCursor
from shared.infra.db import DatabaseUnavailable
from shared.infra.logs import request_id_var
from shared.spreadsheet.readers import Rejection, UploadRejected

log = logging.getLogger("gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/fields",  # the customer fields: what the page needs before a key is entered (no secret)
        "/postman.json",
        "/docs",
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/favicon-32x32.png",
        "/docs/init.js",
        *PAGE_PATHS,  # the web page and its files, declared with them (gateway/web.py)
    }
)
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
SLOW_S = 0.5
# What the API answers for each reason an upload is refused (shared.spreadsheet.readers.Rejection).
REJECTION_STATUS = {
    Rejection.EMPTY: 400,
    Rejection.TOO_LARGE: 413,
    Rejection.UNSUPPORTED: 415,
    Rejection.UNPROCESSABLE: 422,
}


# One limiter per app (its Redis client is the app's): made on the first request that needs it.
_LIMITERS: weakref.WeakKeyDictionary[web.Application, RateLimiter] = weakref.WeakKeyDictionary()


def _limiter(app: web.Application) -> RateLimiter:
    limiter = _LIMITERS.get(app)
    if limiter is None:
        limiter = _LIMITERS[app] = RateLimiter(app[REDIS], prefix=app[SETTINGS].redis_prefix)
    return limiter


async def _rate_limit(request: web.Request, settings: Settings, key_name: str | None) -> Decision | None:
    """Take the request from its bucket: POST /upload has its own, lower limit; everything else not
    public shares the API's. Per API key (its name), or per client address when keys are off.
    None: not limited (limit 0, or Redis unavailable: the limits fail open). Over the limit: 429."""
    upload = request.method == "POST" and request.path == "/upload"
    bucket, limit = ("upload", settings.upload_rate_limit_per_min) if upload else ("api", settings.rate_limit_per_min)
    if limit <= 0:
        return None
    identity = f"key:{key_name}" if key_name is not None else f"addr:{request.remote or 'unknown'}"
    decision = await _limiter(request.app).hit(bucket, identity, limit)
    if decision is not None and not decision.allowed:
        who = "this API key" if key_name is not None else "this client address"
        what = "uploads" if upload else "requests"
        raise Problem(
            429,
            "Too Many Requests",
            f"More than {limit} {what} a minute from {who}; try again in {decision.retry_after_s} s (Retry-After).",
            headers=decision.headers(),
        )
    return decision


def _service_problem(exc: Exception) -> Problem | None:
    """The problem document of a service's error (shared/ knows no HTTP statuses: they are given here)."""
    if isinstance(exc, JobNotFound):
        return Problem(404, "Not Found", str(exc))
    if isinstance(exc, JobConflict):
        return Problem(409, "Conflict", str(exc))
    if isinstance(exc, UploadRejected):
        return Problem(REJECTION_STATUS[exc.reason], exc.title, exc.detail, **exc.extra)
    return None


def _problem_for(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, Problem):
        return problem_response(request, exc)
    if (problem := _service_problem(exc)) is not None:
        return problem_response(request, problem)
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
    limits: Decision | None = None
    key_token = None
    try:
        try:
            # Before any routing decision: an unknown path is a 401 too (only public paths are open).
            if request.path not in PUBLIC_PATHS:
                key_name = auth.authenticate(request.headers, settings.keys)
                key_token = auth.current_key.set(key_name)
                limits = await _rate_limit(request, settings, key_name)
            # A path or method that does not exist is a 404/405 whatever the query says.
            match = request.match_info
            if match.http_exception is None and not isinstance(match.route.resource, web.StaticResource):
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
        if limits is not None:
            response.headers.update(limits.headers())
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
        if key_token is not None:
            auth.current_key.reset(key_token)

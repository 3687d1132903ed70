"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.http.keys import CACHE, DB_POOL, METRICS, REDIS, SETTINGS
from gateway.http.responses import json_response
from gateway.openapi import operations as api
from shared.infra.db import DatabaseUnavailable, connection, mysql_deadline
from shared.infra.prometheus import CONTENT_TYPE

routes = web.RouteTableDef()


@api.operation("healthz", "Liveness", "operations", {200: api.ok("Alive.", "Health")}, public=True)
@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _mysql_ok(request: web.Request) -> bool:
    try:
        async with mysql_deadline(2):
            async with connection(request.app[DB_POOL]) as conn, conn.cursor() as cur:
                await cur.execute("SELECT 1")
        return True
    except (DatabaseUnavailable, TimeoutError):
        return False


async def _redis_ok(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(2):
            return await request.app[CACHE].ping()
    except TimeoutError:
        return False


@api.operation(
    "readyz",
    "Readiness: MySQL and Redis both answer",
    "operations",
    {
        200: api.ok("Ready.", "Readiness"),
        503: api.ok("Not ready: `checks` names what is down.", "Readiness"),
    },
    public=True,
)
@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    mysql, redis = await asyncio.gather(_mysql_ok(request), _redis_ok(request))
    checks = {"mysql": "up" if mysql else "down", "redis": "up" if redis else "down"}
    ready = mysql and redis
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


@api.operation(
    "metrics",
    "Prometheus metrics",
    "operations",
    {200: api.ok("Prometheus text format.", api.TEXT, media="text/plain")},
    public=True,
)
@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    body = await app[METRICS].render(app[DB_POOL], app[REDIS], app[SETTINGS].queue_name)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"})

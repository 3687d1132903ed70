"""The application factory: pools live in cleanup contexts, everything else is passed down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.http import early_errors, keys, routing
from gateway.http.middlewares import serve
from gateway.http.request_metrics import Metrics
from gateway.openapi.document import routes as openapi_routes
from gateway.openapi.postman import routes as postman_routes
from gateway.routes.customers import routes as customer_routes
from gateway.routes.exports import routes as export_routes
from gateway.routes.fields import routes as field_routes
from gateway.routes.health import routes as health_routes
from gateway.routes.imports import routes as import_routes
from gateway.routes.mappings import routes as mapping_routes
from gateway.web import routes as web_routes
from shared.config import Settings
from shared.customers.cache import CacheUnavailable, CustomerCache
from shared.customers.service import CustomerService
from shared.imports.events import JobEvents
from shared.imports.mappings import MappingService
from shared.imports.service import JobService
from shared.infra.db import close_pool, open_database
from shared.infra.prometheus import mark_dead
from shared.infra.redis_clients import cache_redis, follow_primary, gateway_queue, shares_one_redis
from shared.infra.storage import open_store

log = logging.getLogger(__name__)

# Every route table, in the order the router tries them (/customers/export before /customers/{id}); the API
# document (gateway/openapi/document.py) lists their routes from their handlers' operations.
ROUTE_TABLES = (
    health_routes,
    openapi_routes,
    postman_routes,
    import_routes,
    field_routes,
    mapping_routes,
    export_routes,
    customer_routes,
    web_routes,
)


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = app[keys.STORE]
    await store.open()
    log.info("uploads are stored in %s", store)
    yield
    await store.close()


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    app[keys.DB_POOL] = await open_database(settings.mysql, settings.mysql_pool_size)
    yield
    await close_pool(app[keys.DB_POOL])


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    # No ping at start: the gateway serves from MySQL while Redis is down, and uploads queued then
    # are picked up by the workers' sweep. Short timeouts: a dead Redis must not hang a request.
    # The queue (arq, job events, rate limits) and the cache may be two Redis (docs/scaling.md).
    redis = gateway_queue(settings)
    app[keys.REDIS] = redis
    cache_client = (
        redis
        if shares_one_redis(settings)
        else cache_redis(settings, socket_timeout=1.0, socket_connect_timeout=1.0, max_connections=200)
    )
    cache = CustomerCache(cache_client, prefix=settings.redis_prefix, ttl_s=settings.cache_ttl_s)
    app[keys.CACHE] = cache
    app[keys.CUSTOMERS] = CustomerService(app[keys.DB_POOL], cache, db_timeout_s=settings.db_timeout_s)
    app[keys.EVENTS] = JobEvents(redis, settings.redis_prefix)
    app[keys.JOBS] = JobService(settings, app[keys.DB_POOL], redis, app[keys.STORE], app[keys.EVENTS])
    app[keys.MAPPINGS] = MappingService(app[keys.DB_POOL], db_timeout_s=settings.db_timeout_s)
    tasks = [asyncio.create_task(_replay_invalidations(cache)), asyncio.create_task(follow_primary(redis))]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await redis.aclose()
    if cache_client is not redis:
        await cache_client.aclose()


async def _replay_invalidations(cache: CustomerCache) -> None:
    """Invalidations that could not reach Redis are applied as soon as it answers again."""
    while True:
        await asyncio.sleep(0.5)
        if cache.pending:
            with contextlib.suppress(CacheUnavailable):
                await cache.flush_pending()


async def _metrics_cleanup(app: web.Application) -> None:
    """A gateway process that stops cleanly takes its live gauges out of the multiprocess folder."""
    mark_dead(app[keys.SETTINGS].prometheus_multiproc_dir)


def create_app(settings: Settings) -> web.Application:
    early_errors.install()  # aiohttp's own error answers (before the middleware) as problem documents
    app = web.Application(middlewares=[serve])
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = Metrics(settings.prometheus_multiproc_dir)
    store = open_store(settings)
    store.ensure()
    app[keys.STORE] = store
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_redis)
    app.on_cleanup.append(_metrics_cleanup)
    for table in ROUTE_TABLES:
        app.add_routes(table)
    routing.claim_literal_paths(app.router)  # last: a literal path's wrong method is its own 405
    if not settings.keys:
        log.warning("API_KEYS is not set: every endpoint is open to anyone who can reach this port")
    return app

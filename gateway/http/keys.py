"""Typed application keys: what the app factory puts in the app and handlers read."""

from __future__ import annotations

import aiomysql
from aiohttp import web
from arq.connections import ArqRedis

from gateway.http.request_metrics import Metrics
from shared.config import Settings
from shared.customers.cache import CustomerCache
from shared.customers.service import CustomerService
from shared.imports.events import JobEvents
from shared.imports.mappings import MappingService
from shared.imports.service import JobService
from shared.infra.storage import UploadStore

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", aiomysql.Pool)
REDIS = web.AppKey("redis", ArqRedis)
CACHE = web.AppKey("cache", CustomerCache)
CUSTOMERS = web.AppKey("customers", CustomerService)
STORE = web.AppKey("store", UploadStore)
METRICS = web.AppKey("metrics", Metrics)
EVENTS = web.AppKey("events", JobEvents)
JOBS = web.AppKey("jobs", JobService)
MAPPINGS = web.AppKey("mappings", MappingService)

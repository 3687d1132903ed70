"""A bare aiohttp app for the read benchmark's baselines, started as a process of its own.

    python -m tests.bench.baseline_server [--port P] [--redis-url URL] [--prefix PREFIX] [--loop uvloop|asyncio]

(defaults from the service's variables PORT, REDIS_URL, REDIS_PREFIX)

* `GET /const`: returns a constant JSON body (the ceiling of aiohttp itself on this machine).
* `GET /redis/{id}`: one redis-py asyncio `GET {prefix}{customer:{id}}` (the same key and client
  library, with hiredis, that the gateway uses) and returns the value; 404 when absent.

No middleware, no access log; the event loop is the gateway's (uvloop) unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

CONST = b'{"id":1,"version":1,"first_name":"Constant"}'
REDIS_KEY: web.AppKey[Redis] = web.AppKey("redis", Redis)


def create_app(redis_url: str, prefix: str) -> web.Application:
    app = web.Application()

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        app[REDIS_KEY] = Redis.from_url(redis_url, max_connections=None)
        yield
        await app[REDIS_KEY].aclose()

    app.cleanup_ctx.append(redis_ctx)

    async def const(request: web.Request) -> web.Response:
        return web.Response(body=CONST, content_type="application/json")

    async def from_redis(request: web.Request) -> web.Response:
        value = await request.app[REDIS_KEY].get(f"{prefix}{{customer:{request.match_info['id']}}}")
        if value is None:
            return web.Response(status=404)
        return web.Response(body=value, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/const", const)
    app.router.add_get("/redis/{id}", from_redis)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8081")))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--prefix", default=os.environ.get("REDIS_PREFIX", ""))
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(create_app(args.redis_url, args.prefix), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

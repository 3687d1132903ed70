"""A literal path answers 405 for the methods it does not take, instead of falling through to a
templated route that happens to match it.

aiohttp tries the resources of a path from the most literal one: `PUT /customers/cache` finds
`/customers/cache` (GET only), then `/customers/{id}`, which takes PUT, so the request reached the
customer handler with the id "cache" (a 400); and a 405 on `/customers/cache` listed in `Allow` the
methods of `/customers/{id}`. Every literal path therefore gets a catch-all route, added last and
tried before any template, which answers 405 with the methods of that path only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class _AnyName(frozenset[str]):
    """The query parameters the catch-all "takes": all of them (a wrong method is a 405 whatever the
    query says; the middleware checks parameters against the handler's `query_params`)."""

    def __contains__(self, name: object) -> bool:
        return True


def _not_allowed(methods: frozenset[str]) -> Any:
    allowed = sorted(methods)

    async def not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(
            request.method,
            allowed,
            text=f"{request.method} is not a method of {request.path} (it takes {', '.join(allowed)}).",
        )

    not_allowed.query_params = _AnyName()  # type: ignore[attr-defined]
    return not_allowed


def claim_literal_paths(router: web.UrlDispatcher) -> None:
    """After every route is added: a catch-all per literal path, answering 405 with its own methods."""
    methods: dict[str, set[str]] = {}
    for resource in router.resources():
        if isinstance(resource, web.PlainResource):
            methods.setdefault(resource.canonical, set()).update(route.method for route in resource)
    for path, taken in methods.items():
        if "*" not in taken:
            router.add_route("*", path, _not_allowed(frozenset(taken)))

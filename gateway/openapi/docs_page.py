"""The /docs page: Swagger UI served by the gateway itself, so it renders with no internet access.

Swagger UI's files come from the pinned `swagger-ui-py` package (its `swagger_ui/static` folder holds
swagger-ui-dist's build); only the few the page needs are served, read once per process, with a
gzip copy. The page and everything it loads come from this origin, and its Content-Security-Policy
says so to the browser too. Asset URLs carry a hash of their content (`?v=`): a URL with the current
hash may be cached for a year, any other answer is revalidated (ETag) on every use.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.http import params
from gateway.http.problems import Problem
from gateway.openapi import operations as api

SWAGGER_UI_PACKAGE = "swagger_ui"  # PyPI: swagger-ui-py
ASSET_PREFIX = "/docs/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Everything the page loads is on this origin. Swagger UI sets styles through the DOM (allowed) and
# draws icons from data: URIs in its stylesheet.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# Our own start-up script (the package's swagger-initializer.js points at a demo API elsewhere).
# Relative URLs, so the page also works behind a proxy that mounts the gateway under a prefix.
INIT_JS = """\
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    displayRequestDuration: true,
    validatorUrl: null
  });
});
"""


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None when gzip would not make it smaller
    content_type: str
    etag: str
    version: str


# name in the URL -> file in the package's static folder (None: INIT_JS), content type
_FILES: dict[str, tuple[str | None, str]] = {
    "swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "favicon-32x32.png": ("favicon-32x32.png", "image/png"),
    "init.js": (None, "text/javascript; charset=utf-8"),
}
ASSET_NAMES = tuple(_FILES)
# The exact paths that must be public when API_KEYS is set (gateway.http.middlewares.PUBLIC_PATHS).
ASSET_PATHS = tuple(ASSET_PREFIX + name for name in ASSET_NAMES)


def static_dir() -> Path:
    """swagger-ui-py's static folder, found without importing the package (its code is not needed)."""
    spec = importlib.util.find_spec(SWAGGER_UI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: `pip install swagger-ui-py` (a project dependency)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@functools.cache
def load_asset(name: str) -> Asset | None:
    if name not in _FILES:
        return None
    filename, content_type = _FILES[name]
    body = INIT_JS.encode() if filename is None else (static_dir() / filename).read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    packed = None if content_type.startswith("image/") else gzip.compress(body, compresslevel=9, mtime=0)
    return Asset(
        body=body,
        gzipped=packed if packed is not None and len(packed) < len(body) else None,
        content_type=content_type,
        etag=f'"{digest[:32]}"',
        version=digest[:16],
    )


def asset_url(name: str) -> str:
    """The page's (relative) link to an asset, with its content version."""
    asset = load_asset(name)
    assert asset is not None, name
    return f"docs/{name}?v={asset.version}"


@functools.cache
def page() -> bytes:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Customer import service API</title>
<link rel="icon" type="image/png" href="{asset_url("favicon-32x32.png")}">
<link rel="stylesheet" href="{asset_url("swagger-ui.css")}">
</head>
<body>
<div id="swagger-ui"></div>
<noscript>This page needs JavaScript. The OpenAPI document is at <a href="openapi.json">/openapi.json</a>.</noscript>
<script src="{asset_url("swagger-ui-bundle.js")}"></script>
<script src="{asset_url("init.js")}"></script>
</body>
</html>
""".encode()


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _accepts_gzip(request: web.Request) -> bool:
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, rest = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return rest.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@api.operation(
    "docsPage",
    "An interactive page for this document (Swagger UI, served from this origin)",
    "documentation",
    {200: api.ok("The page.", api.TEXT, "CacheControl", media="text/html")},
    public=True,
)
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(
        body=page(),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": REVALIDATE,
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@api.operation(
    "docsAsset",
    "A file the /docs page loads",
    "documentation",
    {
        200: {
            "description": "The file.",
            "headers": api.headers(*api.ASSET_HEADERS),
            "content": {
                "text/css": {"schema": api.TEXT},
                "text/javascript": {"schema": api.TEXT},
                "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
            },
        },
        304: api.empty("Not modified.", *api.ASSET_HEADERS),
        404: api.problem("No such asset."),
    },
    parameters=[api.asset_name(ASSET_NAMES), api.ASSET_QUERY, api.ASSET_NONE_MATCH],
    public=True,
)
@params.accepts("v")
async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    asset = load_asset(name)
    if asset is None:
        raise Problem(404, "Not Found", f"No documentation asset {name!r}.")
    headers = {
        "Cache-Control": IMMUTABLE if request.query.get("v") == asset.version else REVALIDATE,
        "X-Content-Type-Options": "nosniff",
    }
    return respond_asset(request, asset, headers)


def respond_asset(request: web.Request, asset: Asset, headers: dict[str, str]) -> web.Response:
    """The asset with its ETag (304 when the client has it), gzipped when the client takes it."""
    headers["ETag"] = asset.etag
    if asset.gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
    if _matches(request.headers.get("If-None-Match"), asset.etag):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and _accepts_gzip(request):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = asset.content_type
    return web.Response(body=body, headers=headers)

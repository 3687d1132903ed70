"""The import page at `/`: plain HTML, CSS and JavaScript modules from gateway/static/, no build step.

The page is for people who import spreadsheets; it talks to the same JSON API as every other client
(with the API key the person enters, kept in the tab's sessionStorage). Its files are served the way
/docs serves Swagger UI's (gateway/openapi/docs_page.py): read once per process, with a gzip copy and an ETag.
Asset URLs carry a hash of their content (`?v=`), so a URL with the current hash may be cached for a
year and any other answer is revalidated; the page itself is always revalidated. The hashes are put
into the links when the files are read: `static/<name>` in index.html and `"./<name>"` in a module's
`import` (a module's hash covers the hashes of the modules it imports, so a change anywhere reaches
the page). Everything the page loads comes from this origin, and its Content-Security-Policy says so.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
from pathlib import Path

from aiohttp import web

from gateway.http import params
from gateway.http.problems import Problem
from gateway.openapi import operations as api
from gateway.openapi.docs_page import IMMUTABLE, REVALIDATE, Asset, respond_asset

STATIC_DIR = Path(__file__).resolve().with_name("static")
PAGE_FILE = "index.html"
# name in the URL (and in gateway/static/) -> content type
_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "imports.js": "text/javascript; charset=utf-8",
    "customers.js": "text/javascript; charset=utf-8",
    "fields.js": "text/javascript; charset=utf-8",
    "changes.js": "text/javascript; charset=utf-8",
    "history.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
ASSET_NAMES = tuple(_TYPES)
ASSET_PREFIX = "/static/"
# The exact paths that must be public when API_KEYS is set (gateway.http.middlewares.PUBLIC_PATHS): the
# page asks for the key itself, so it and its files load without one.
PUBLIC_PATHS = ("/", *(ASSET_PREFIX + name for name in ASSET_NAMES))

# Only this origin: no inline script or style (the page has none), API calls to this origin only,
# downloads through blob: URLs the page makes, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# `from "./api.js"`, `import "./x.js"`, `import("./x.js")`: a relative module specifier.
_MODULE_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])\./([^"'?#]+)\2""")
# `href="static/style.css"`, `src="static/app.js"` in the page.
_PAGE_LINK = re.compile(r"""(\b(?:href|src)=)(["'])static/([^"'?#]+)\2""")


def _pack(body: bytes, content_type: str) -> Asset:
    digest = hashlib.sha256(body).hexdigest()
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    return Asset(
        body=body,
        gzipped=packed if len(packed) < len(body) else None,
        content_type=content_type,
        etag=f'"{digest[:32]}"',
        version=digest[:16],
    )


@functools.cache
def _build() -> dict[str, Asset]:
    """Every file, read once, links versioned; the page under PAGE_FILE."""
    built: dict[str, Asset] = {}

    def build(name: str, chain: tuple[str, ...]) -> Asset:
        if name in built:
            return built[name]
        if name in chain:
            raise RuntimeError(f"gateway/static: {' -> '.join((*chain, name))} is an import cycle")
        if name not in _TYPES and name != PAGE_FILE:
            raise RuntimeError(f"gateway/static: {chain[-1]} links to {name!r}, which gateway.web does not serve")

        def versioned(match: re.Match[str], prefix: str) -> str:
            lead, quote, target = match.groups()
            return f"{lead}{quote}{prefix}{target}?v={build(target, (*chain, name)).version}{quote}"

        try:
            text = (STATIC_DIR / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RuntimeError(
                f"{STATIC_DIR / name} is missing: the gateway package was installed without its static files"
            ) from None
        if name == PAGE_FILE:
            text = _PAGE_LINK.sub(lambda m: versioned(m, "static/"), text)
            content_type = "text/html; charset=utf-8"
        else:
            content_type = _TYPES[name]
            if name.endswith(".js"):
                text = _MODULE_IMPORT.sub(lambda m: versioned(m, "./"), text)
        built[name] = _pack(text.encode(), content_type)
        return built[name]

    for name in (PAGE_FILE, *ASSET_NAMES):
        build(name, ())
    return built


def load_asset(name: str) -> Asset | None:
    """One of the page's files (links versioned); None for a name it does not serve."""
    return _build()[name] if name in _TYPES else None


def page() -> Asset:
    return _build()[PAGE_FILE]


@api.operation(
    "webPage",
    "The import page: upload a file, map its columns, follow the import, edit customers",
    "page",
    {
        200: api.ok("The page.", api.TEXT, *api.ASSET_HEADERS, media="text/html"),
        304: api.empty("Not modified.", *api.ASSET_HEADERS),
    },
    parameters=[{**api.IF_NONE_MATCH, "description": "A 304 with no body when the page has this ETag."}],
    public=True,
)
async def index(request: web.Request) -> web.Response:
    return respond_asset(request, page(), {**PAGE_HEADERS, "Cache-Control": REVALIDATE})


@api.operation(
    "webAsset",
    "A file the import page loads",
    "page",
    {
        200: {
            "description": "The file.",
            "headers": api.headers(*api.ASSET_HEADERS),
            "content": {"text/css": {"schema": api.TEXT}, "text/javascript": {"schema": api.TEXT}},
        },
        304: api.empty("Not modified.", *api.ASSET_HEADERS),
        404: api.problem("No such file."),
    },
    parameters=[
        api.asset_name(ASSET_NAMES),
        api.ASSET_QUERY,
        api.ASSET_NONE_MATCH,
    ],
    public=True,
)
@params.accepts("v")
async def static_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    asset = load_asset(name)
    if asset is None:
        raise Problem(404, "Not Found", f"No file {name!r} of the import page.")
    cache = IMMUTABLE if request.query.get("v") == asset.version else REVALIDATE
    return respond_asset(request, asset, {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})


routes = web.RouteTableDef()
routes.get("/")(index)
routes.get(ASSET_PREFIX + "{name}")(static_asset)

"""Problem documents for the answers aiohttp gives before the app sees a request.

aiohttp answers some requests itself, in text/plain, without running the app's middleware:
- a request its HTTP parser refuses (web_protocol.RequestHandler.data_received -> handle_error(400)):
  a malformed request line or method, raw non-ASCII bytes in the path or query (`?q=Müller` sent
  unencoded), a header line or request line over 8,190 bytes, too many headers, an invalid header,
  Content-Length or Transfer-Encoding, a malformed chunk;
- an HTTPException raised outside the middleware (an `Expect:` other than 100-continue: 417, raised
  by the router's expect handler), handed to finish_response as is;
- an error escaping the middleware (500) or a handler timeout (504), through handle_error.

aiohttp has no hook for these, so create_app installs `install()`: the two RequestHandler methods
they all go through answer an RFC 9457 document instead (the app's own errors are problem documents
already: gateway.http.middlewares). Process-wide, once; nothing else in the gateway process serves HTTP.
"""

from __future__ import annotations

import logging
import traceback
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, InvalidURLError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.http.problems import PROBLEM_TYPE
from gateway.http.responses import dumps

log = logging.getLogger("gateway.access")
MAX_DETAIL = 300
_HINTS = {
    "Invalid char in url query": (
        "The query has a character that must be percent-encoded (UTF-8): for example q=M%C3%BCller for "
        "q=Müller (curl --get --data-urlencode 'q=Müller' does it)."
    ),
    "Invalid char in url path": "The path has a character that must be percent-encoded (UTF-8).",
}


def _frames(exc: BaseException) -> set[str]:
    return {frame.name.rsplit(".", 1)[-1] for frame in traceback.extract_tb(exc.__traceback__)}


def classify(exc: BaseException | None, status: int) -> tuple[int, str]:
    """(status, detail) for an error aiohttp met before the app: a parser error keeps its 400 unless it
    is about size (414 for the request line, 431 for headers); the detail is its first line, without
    the request's bytes aiohttp quotes after it."""
    if not isinstance(exc, HttpProcessingError):
        phrase = HTTPStatus(status).description if status in HTTPStatus._value2member_map_ else ""
        return status, phrase or "The request could not be handled."
    # aiohttp's message: a reason, maybe a sub-reason, then (after a blank line) the raw bytes it read,
    # which are not repeated back to the client.
    head = (exc.message or "").strip().split("\n\n", 1)[0]
    first = ": ".join(line.strip().rstrip(":") for line in head.splitlines() if line.strip())
    if isinstance(exc, LineTooLong):
        frames = _frames(exc)
        limit = exc.args[1] if len(exc.args) > 1 else "8190"
        if "cb_on_url" in frames:
            return 414, f"The request line is longer than {limit} bytes."
        if frames & {"cb_on_header_field", "cb_on_header_value", "parse_headers"}:
            return 431, f"A header line is longer than {limit} bytes."
        return 400, f"A line of the request is longer than {limit} bytes."
    if first == "Too many headers received":
        return 431, "The request has too many header lines."
    if isinstance(exc, BadHttpMethod):
        return 400, "The request line does not start with an HTTP method."
    if first in _HINTS:
        return 400, _HINTS[first]
    if isinstance(exc, InvalidURLError):
        return 400, f"The request target is not a valid URL: {first}"[:MAX_DETAIL]
    detail = first or "The request is not valid HTTP/1.1."
    return status if 400 <= status < 600 else 400, detail[:MAX_DETAIL]


def early_problem(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    return web.Response(body=dumps(body), status=status, content_type=PROBLEM_TYPE, headers=headers)


def _handle_error(
    self: RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """RequestHandler.handle_error, answering a problem document (same logging rules, same close)."""
    status, detail = classify(exc, status)
    if status >= 500:
        self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
    else:  # a client's malformed request: one structured line, no traceback
        log.info("malformed request", extra={"status": status, "error": detail, "remote": request.remote})
    if request.writer.output_size > 0:
        raise ConnectionError("Response is sent already, cannot send another response with the error message")
    response = early_problem(status, detail)
    response.force_close()
    return response


_finish_response = RequestHandler.finish_response


async def _finish(
    self: RequestHandler, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
) -> tuple[web.StreamResponse, bool]:
    # Only an HTTPException raised outside the middleware arrives here as one (the middleware turns
    # every other into a problem document): answer it as a document too.
    if isinstance(resp, web.HTTPException) and resp.status >= 400:
        text = resp.text or ""
        detail = text if text and not text.startswith(str(resp.status)) else HTTPStatus(resp.status).description
        headers = {k: v for k, v in resp.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        resp = early_problem(resp.status, detail[:MAX_DETAIL], headers)
    return await _finish_response(self, request, resp, start_time)


def install() -> None:
    """Make aiohttp's own error answers problem documents (idempotent)."""
    if getattr(RequestHandler, "_problem_documents", False):
        return
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
    RequestHandler.finish_response = _finish  # type: ignore[method-assign]
    RequestHandler._problem_documents = True  # type: ignore[attr-defined]

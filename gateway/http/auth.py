"""API keys: which configured key a request carries, compared in constant time.

Keys come from API_KEYS (parsed once by shared.config into `Settings.keys`): `name=key` or a bare key
(named `key1`, `key2`, ... by its position), each plain or `sha256:<hex>` (the SHA-256 of the key,
so a config file need not hold it in clear). A request sends its key as `Authorization: Bearer <key>`
or `X-API-Key: <key>`. The supplied key is hashed once and its digest compared with every configured
digest (hmac.compare_digest, no early exit), so the time taken says nothing about which key, or how
much of one, matched. Only the key's NAME goes further: into the job a key uploads and the rate
limiter's bucket; the key itself is never stored or logged.
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Mapping

from gateway.http.problems import Problem
from shared.config import ApiKey, digest_of

HOW = "Send a valid API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="customer-import"'}

# The name of the API key the request in hand was authenticated with (None: keys are off). Set by
# the middleware; read by handlers that record who did something (the uploader of a job).
current_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("api_key_name", default=None)


class KeyRing:
    """The configured keys, as (name, digest) pairs."""

    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def identify(self, supplied: str) -> str | None:
        """The name of the key `supplied` is, or None. Every configured digest is compared, always."""
        digest = digest_of(supplied)
        found: str | None = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key.name
        return found


def supplied_key(headers: Mapping[str, str]) -> str | None:
    """The key a request sends: `Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
    scheme, _, token = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("X-API-Key", "").strip() or None


def unauthorized(sent: bool) -> Problem:
    """The 401: the same for every path (it never says whether a resource exists)."""
    detail = ("The API key sent is not valid. " if sent else "No API key was sent. ") + HOW
    return Problem(401, "Unauthorized", detail, headers=dict(CHALLENGE))


def authenticate(headers: Mapping[str, str], keys: tuple[ApiKey, ...]) -> str | None:
    """The name of the key the request carries; None when no keys are configured (the API is open).
    Raises the 401 Problem when keys are configured and the request carries none of them."""
    if not keys:
        return None
    ring = KeyRing(keys)
    supplied = supplied_key(headers)
    name = ring.identify(supplied) if supplied is not None else None
    if name is None:
        raise unauthorized(supplied is not None)
    return name

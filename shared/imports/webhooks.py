"""Signed webhooks: when a job ends, its document is POSTed to the job's `callback_url`.

Headers: `X-Signature-256: sha256=<hex HMAC-SHA256 of the body under WEBHOOK_SECRET>`,
`X-Webhook-Id` (the delivery's id, the same on every attempt: a receiver can drop repeats) and
`X-Webhook-Timestamp` (Unix seconds of the attempt: a receiver can refuse old replays).

A non-2xx answer or none at all is retried with exponential back-off, each attempt an arq job of its
own, up to WEBHOOK_MAX_ATTEMPTS; every attempt is recorded on the job. The delivery is owed from the
moment the job's end is committed (same statement), so a worker that dies before it queued the first
attempt, or in the middle of one, leaves it to the sweep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.spreadsheet.mapping import OptionError

SIGNATURE_HEADER = "X-Signature-256"
ID_HEADER = "X-Webhook-Id"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
MAX_URL_LENGTH = 2048


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or str(address) in ("169.254.169.254", "fd00:ec2::254")  # cloud metadata services
    )


async def check_callback_url(url: str, *, allow_private: bool) -> str:
    """The URL, if it is http(s) and its host resolves to public addresses only (unless private ones
    are allowed). OptionError naming `callback_url` otherwise."""

    def refuse(why: str) -> OptionError:
        return OptionError([("callback_url", why)])

    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_LENGTH:
        raise refuse(f"An http(s) URL of at most {MAX_URL_LENGTH} characters.")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refuse("Only http:// and https:// URLs with a host are accepted.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise refuse("The URL's port is not a number from 1 to 65535.") from None
    if allow_private:
        return url.strip()
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError:
        raise refuse(f"The host {parts.hostname!r} does not resolve.") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _refused(address):
            raise refuse(
                f"{parts.hostname!r} resolves to {address}, a loopback, private, link-local or metadata address:"
                " such callbacks are refused (WEBHOOK_ALLOW_PRIVATE=true allows them)."
            )
    return url.strip()


async def attempt(
    session: aiohttp.ClientSession, url: str, body: bytes, *, secret: str, delivery_id: str, timeout_s: float
) -> dict[str, Any]:
    """One POST of the body. Returns the attempt's record: {at, status, error, ok}."""
    headers = {"Content-Type": "application/json", ID_HEADER: delivery_id, TIMESTAMP_HEADER: str(int(time.time()))}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    record: dict[str, Any] = {"at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")}
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False
        ) as response:
            await response.read()
            record.update(status=response.status, error=None if response.status < 300 else response.reason)
            record["ok"] = 200 <= response.status < 300
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        record.update(status=None, error=f"{type(exc).__name__}: {exc}"[:300], ok=False)
    return record


def backoff_s(attempts: int, base_s: float) -> float:
    """Delay before the next attempt after `attempts` failed ones: base, 2 base, 4 base ... (5 min at most)."""
    return float(min(base_s * 2 ** max(attempts - 1, 0), 300.0))

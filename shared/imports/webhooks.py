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

import datetime as dt
import hashlib
import hmac
import ipaddress
import socket
import ssl as ssl_module
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address
from aiohttp.resolver import ThreadedResolver

from shared.imports.options import OptionError

SIGNATURE_HEADER = "X-Signature-256"
ID_HEADER = "X-Webhook-Id"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
MAX_URL_LENGTH = 2048


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# Never a target, whatever WEBHOOK_ALLOW_PRIVATE says: the cloud metadata services (they hand out
# credentials) and the link-local ranges they live in.
_METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why a webhook may not go to this address, or None. WEBHOOK_ALLOW_PRIVATE opens the private and
    loopback ranges (a receiver in the same cluster), never metadata or link-local addresses."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA:
        return "a cloud metadata address"
    if any(address in network for network in _LINK_LOCAL) or address.is_link_local:
        return "a link-local address"
    if address.is_multicast or address.is_unspecified:
        return "a multicast or unspecified address"
    if allow_private:
        return None
    if address.is_loopback or address.is_private or address.is_reserved:
        return "a loopback, private or reserved address"
    return None


class RefusedAddress(OSError):
    """The callback host resolved to an address a webhook may not go to (an OSError, so that aiohttp
    reports it as a connection error of the attempt)."""


def _refuse_message(host: str, address: Address, why: str) -> str:
    return (
        f"{host!r} resolves to {address}, {why}: such callbacks are refused (WEBHOOK_ALLOW_PRIVATE=true allows"
        " private and loopback addresses, never metadata or link-local ones)."
    )


def _address(raw: str) -> Address:
    return ipaddress.ip_address(raw.split("%")[0])


class CheckedResolver(AbstractResolver):
    """Resolves a callback host once, checks every address, and hands aiohttp only checked ones: the
    connection goes to the address that was checked (no second lookup a rebinding DNS server could
    answer differently), while the URL keeps its name for the Host header and the TLS server name."""

    def __init__(self, *, allow_private: bool, resolver: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = resolver or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        for info in infos:
            address = _address(info["host"])
            why = refusal(address, allow_private=self.allow_private)
            if why is not None:
                raise RefusedAddress(_refuse_message(host, address, why))
        return infos

    async def close(self) -> None:
        await self._inner.close()


def webhook_session(
    *, allow_private: bool, resolver: AbstractResolver | None = None, ssl: ssl_module.SSLContext | bool = True
) -> aiohttp.ClientSession:
    """The session deliveries go through. No DNS cache: each connection resolves (once) and checks.
    `resolver` and `ssl` (the trusted certificates) are for tests; the defaults are the system's."""
    connector = aiohttp.TCPConnector(
        resolver=CheckedResolver(allow_private=allow_private, resolver=resolver), use_dns_cache=False, ssl=ssl
    )
    return aiohttp.ClientSession(connector=connector)


async def check_callback_url(url: str, *, allow_private: bool, resolver: AbstractResolver | None = None) -> str:
    """The URL, if it is http(s) and its host resolves to addresses a webhook may go to (see `refusal`).
    OptionError naming `callback_url` otherwise. The worker checks again when it delivers (the answer
    of a DNS server may change in between)."""

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
    checked = CheckedResolver(allow_private=allow_private, resolver=resolver)
    try:
        if is_ip_address(parts.hostname):
            address = _address(parts.hostname)
            why = refusal(address, allow_private=allow_private)
            if why is not None:
                raise RefusedAddress(_refuse_message(parts.hostname, address, why))
        else:
            await checked.resolve(parts.hostname, port, socket.AF_UNSPEC)
    except RefusedAddress as exc:
        raise refuse(str(exc)) from None
    except OSError:
        raise refuse(f"The host {parts.hostname!r} does not resolve.") from None
    finally:
        if resolver is None:
            await checked.close()
    return url.strip()


async def attempt(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    secret: str,
    delivery_id: str,
    timeout_s: float,
    allow_private: bool,
) -> dict[str, Any]:
    """One POST of the body through a `webhook_session` (which checks the addresses a host name resolves
    to). Returns the attempt's record: {at, status, error, ok}."""
    headers = {"Content-Type": "application/json", ID_HEADER: delivery_id, TIMESTAMP_HEADER: str(int(time.time()))}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    record: dict[str, Any] = {"at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")}
    try:
        # aiohttp connects to an address literal without asking the resolver: check it here.
        host = urlsplit(url).hostname or ""
        if is_ip_address(host):
            address = _address(host)
            why = refusal(address, allow_private=allow_private)
            if why is not None:
                raise RefusedAddress(_refuse_message(host, address, why))
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False
        ) as response:
            await response.read()
            record.update(status=response.status, error=None if response.status < 300 else response.reason)
            record["ok"] = 200 <= response.status < 300
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, RefusedAddress):
            exc = exc.os_error  # aiohttp's wrapper drops the reason
        record.update(status=None, error=f"{type(exc).__name__}: {exc}"[:300], ok=False)
    return record


def backoff_s(attempts: int, base_s: float) -> float:
    """Delay before the next attempt after `attempts` failed ones: base, 2 base, 4 base ... (5 min at most)."""
    return float(min(base_s * 2 ** max(attempts - 1, 0), 300.0))

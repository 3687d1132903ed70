"""Where a webhook may go: checked when the job is created AND when the worker delivers, through a DNS
resolver the test controls (it answers each lookup of a name with the next address of a script), so
a name can be rebound between the check and the delivery. The delivery runs the worker's real job
function against MariaDB; the receivers are real HTTP(S) servers on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis

from gateway.app import create_app
from shared.config import Settings
from shared.customers.cache import CustomerCache
from shared.imports.options import OptionError
from shared.imports.webhooks import check_callback_url, webhook_session
from shared.infra.db import connection
from shared.infra.storage import UploadStore
from tests.support.workbooks import csv_bytes, customers
from worker.pipeline.deps import WorkerDeps
from worker.webhook_delivery import deliver_webhook

pytestmark = pytest.mark.usefixtures("clean")
NAME = "hooks.example"
PUBLIC = "93.184.216.34"


class ScriptedResolver(AbstractResolver):
    """A DNS server the test controls: the n-th lookup of a name answers its n-th address (the last repeats)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        script = self.answers[host]
        address = script[min(self.calls.count(host), len(script) - 1)]
        self.calls.append(host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


class Receiver:
    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        self.deliveries.append({"host": request.headers.get("Host"), "document": await request.json()})
        return web.Response(status=204)


async def serve(receiver: Receiver, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(receiver.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def certificate_for(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `name` only (not for 127.0.0.1): a TLS handshake that does not
    send and check the name fails."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
async def arq_free_settings(settings: Settings) -> AsyncIterator[Settings]:
    # One attempt: the delivery job then never queues a retry (no arq needed to run it here).
    yield replace(settings, webhook_max_attempts=1, webhook_timeout_s=2.0, webhook_secret="")


async def owe_webhook(client: TestClient, pool: Any, url: str) -> str:
    """A job that ended with a delivery to `url` owed, as the worker leaves it."""
    fd = aiohttp.FormData()
    fd.add_field("file", csv_bytes(customers(1)), filename="c.csv", content_type="text/csv")
    response = await client.post("/upload", data=fd)
    assert response.status == 202, await response.text()
    job_id: str = (await response.json())["job_id"]
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE import_jobs SET status = 'completed', finished_at = NOW(6), callback_url = %s, webhook = %s"
            " WHERE id = %s",
            (url, json.dumps({"status": "pending", "delivery_id": "d-1", "attempts": []}), job_id),
        )
    return job_id


async def deliver(settings: Settings, pool: Any, job_id: str, session: aiohttp.ClientSession) -> dict[str, Any]:
    redis = Redis.from_url(settings.redis_url)
    deps = WorkerDeps(settings, pool, CustomerCache(redis, prefix=settings.redis_prefix), UploadStore("unused"))
    try:
        outcome = await deliver_webhook({"deps": deps, "http": session, "redis": None}, job_id)
    finally:
        await session.close()
        await redis.aclose()
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("SELECT webhook FROM import_jobs WHERE id = %s", (job_id,))
        (raw,) = await cur.fetchone()
    state: dict[str, Any] = json.loads(raw)
    assert state["status"] == outcome
    return state


@pytest.mark.parametrize(
    ("allow_private", "rebound_to", "why"),
    [(False, "127.0.0.1", "loopback"), (False, "10.0.0.7", "private"), (True, "169.254.169.254", "metadata")],
)
async def test_a_name_rebound_after_the_check_gets_no_post(
    aiohttp_client: Any, arq_free_settings: Settings, pool: Any, allow_private: bool, rebound_to: str, why: str
) -> None:
    receiver = Receiver()
    runner, port = await serve(receiver)
    try:
        s = replace(arq_free_settings, webhook_allow_private=allow_private)
        client: TestClient = await aiohttp_client(create_app(s))
        url = f"http://{NAME}:{port}/hook"
        dns = ScriptedResolver({NAME: [PUBLIC, rebound_to]})
        assert await check_callback_url(url, allow_private=allow_private, resolver=dns) == url  # at upload: public
        job_id = await owe_webhook(client, pool, url)
        # At delivery the name answers the other address. Before the fix, the worker looked the name up
        # again unchecked and POSTed to it (the receiver on 127.0.0.1 got the job's document).
        state = await deliver(s, pool, job_id, webhook_session(allow_private=allow_private, resolver=dns))
        assert receiver.deliveries == []
        assert state["status"] == "failed"
        error = state["attempts"][0]["error"]
        assert rebound_to in error and why in error, error
        assert dns.calls == [NAME, NAME]  # once at the check, once at the delivery
    finally:
        await runner.cleanup()


async def test_the_delivery_connects_to_the_checked_address_with_the_name_as_host_and_tls_server_name(
    aiohttp_client: Any, arq_free_settings: Settings, pool: Any, tmp_path: Path
) -> None:
    """HTTPS to a certificate for the name only, on 127.0.0.1 (private receivers allowed): the
    handshake succeeds only if the name is sent as the TLS server name and checked against the
    certificate; Host is the name. The name's NEXT answer is a public address with nothing behind it:
    a second lookup at connect time would send the POST there and fail."""
    cert, key = certificate_for(NAME, tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    receiver = Receiver()
    runner, port = await serve(receiver, server_tls)
    try:
        s = replace(arq_free_settings, webhook_allow_private=True)
        client: TestClient = await aiohttp_client(create_app(s))
        url = f"https://{NAME}:{port}/hook"
        dns = ScriptedResolver({NAME: ["127.0.0.1", "127.0.0.1", "192.0.2.1"]})
        await check_callback_url(url, allow_private=True, resolver=dns)
        job_id = await owe_webhook(client, pool, url)
        trusted = ssl.create_default_context(cafile=str(cert))
        state = await deliver(s, pool, job_id, webhook_session(allow_private=True, resolver=dns, ssl=trusted))
        assert state["status"] == "delivered", state
        assert [d["host"] for d in receiver.deliveries] == [f"{NAME}:{port}"]
        assert receiver.deliveries[0]["document"]["job_id"] == job_id
        assert dns.calls == [NAME, NAME]
    finally:
        await runner.cleanup()


METADATA_AND_LINK_LOCAL = [
    "http://169.254.169.254/latest/meta-data",
    "http://[fd00:ec2::254]/latest/meta-data",
    "http://[::ffff:169.254.169.254]/",
    "http://169.254.10.1/hook",
    "http://[fe80::1]/hook",
    "http://[febf::ffff]/hook",
]


@pytest.mark.parametrize("url", METADATA_AND_LINK_LOCAL)
async def test_metadata_and_link_local_addresses_are_refused_even_when_private_ones_are_allowed(
    aiohttp_client: Any, settings: Settings, url: str
) -> None:
    client: TestClient = await aiohttp_client(create_app(replace(settings, webhook_allow_private=True)))
    fd = aiohttp.FormData()
    fd.add_field("file", csv_bytes(customers(1)), filename="c.csv", content_type="text/csv")
    fd.add_field("callback_url", url)
    response = await client.post("/upload", data=fd)
    assert response.status == 422, await response.text()
    error = (await response.json())["errors"][0]
    assert error["field"] == "callback_url"
    assert "metadata" in error["message"] or "link-local" in error["message"], error


async def test_private_and_loopback_receivers_are_allowed_when_asked(aiohttp_client: Any, settings: Settings) -> None:
    client: TestClient = await aiohttp_client(create_app(replace(settings, webhook_allow_private=True)))
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[fd12::1]/hook", "http://localhost/h"):
        fd = aiohttp.FormData()
        fd.add_field("file", csv_bytes(customers(1)), filename="c.csv", content_type="text/csv")
        fd.add_field("callback_url", url)
        assert (await client.post("/upload", data=fd)).status == 202, url


@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_name_that_resolves_to_metadata_is_refused_at_the_check(allow_private: bool) -> None:
    dns = ScriptedResolver({NAME: ["169.254.169.254"]})
    with pytest.raises(OptionError, match="metadata"):
        await check_callback_url(f"http://{NAME}/h", allow_private=allow_private, resolver=dns)


async def test_an_address_literal_stored_earlier_is_checked_again_at_delivery(
    aiohttp_client: Any, arq_free_settings: Settings, pool: Any
) -> None:
    """A literal never reaches the resolver in aiohttp: the attempt checks it itself."""
    s = replace(arq_free_settings, webhook_allow_private=True)
    client: TestClient = await aiohttp_client(create_app(s))
    job_id = await owe_webhook(client, pool, "http://169.254.169.254/latest/meta-data")
    state = await deliver(s, pool, job_id, webhook_session(allow_private=True))
    assert state["status"] == "failed" and "metadata" in state["attempts"][0]["error"]

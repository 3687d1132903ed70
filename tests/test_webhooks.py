"""Signed webhooks to a real receiver (an aiohttp app on a local port), retried by real arq jobs."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.settings import Settings
from tests.support.jobs import run_burst_worker
from tests.support.workbooks import csv_bytes, customers

pytestmark = pytest.mark.usefixtures("clean")
SECRET = "s3cret-for-tests"
DELIVERY_ID = "5a0c6f2e-8d4b-4a43-9a4e-3f1f2b7c9d10"


class Receiver:
    """Checks each delivery's signature; answers 500 to the first `failures`, then 204."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.deliveries: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        self.deliveries.append(
            {
                "valid": hmac.compare_digest(expected, request.headers.get("X-Signature-256", "")),
                "id": request.headers.get("X-Webhook-Id"),
                "timestamp": request.headers.get("X-Webhook-Timestamp"),
                "document": json.loads(body),
            }
        )
        if len(self.deliveries) <= self.failures:
            return web.Response(status=500, text="not now")
        return web.Response(status=204)


def hooked(settings: Settings) -> Settings:
    return replace(
        settings,
        webhook_secret=SECRET,
        webhook_allow_private=True,
        webhook_backoff_s=0.2,
        webhook_timeout_s=1.0,
        webhook_max_attempts=5,
    )


def form(data: bytes, **fields: str) -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field("file", data, filename="c.csv", content_type="text/csv")
    for name, value in fields.items():
        fd.add_field(name, value)
    return fd


async def test_a_signed_delivery_is_retried_until_it_is_received(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    receiver = Receiver(failures=2)
    async with TestServer(receiver.app) as server:
        s = hooked(settings)
        client: TestClient = await aiohttp_client(create_app(s))
        url = str(server.make_url("/hook"))
        response = await client.post("/upload", data=form(csv_bytes(customers(5)), callback_url=url))
        assert response.status == 202, await response.text()
        job_id = (await response.json())["job_id"]
        await run_burst_worker(s)  # the import, then each delivery attempt as an arq job of its own
        assert len(receiver.deliveries) == 3
        assert all(d["valid"] for d in receiver.deliveries)
        assert len({d["id"] for d in receiver.deliveries}) == 1  # one delivery id: receivers can drop repeats
        assert all(d["timestamp"] and d["timestamp"].isdigit() for d in receiver.deliveries)
        delivered = receiver.deliveries[-1]["document"]
        assert delivered["job_id"] == job_id and delivered["status"] == "completed"
        assert delivered["rows_inserted"] == 5
        job = await (await client.get(f"/jobs/{job_id}")).json()
        webhook = job["webhook"]
        assert webhook["status"] == "delivered"
        assert [a["status"] for a in webhook["attempts"]] == [500, 500, 204]
        assert job["callback_url"] == url


async def test_a_receiver_that_never_answers_well_is_given_up_on(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    receiver = Receiver(failures=99)
    async with TestServer(receiver.app) as server:
        s = replace(hooked(settings), webhook_max_attempts=3)
        client: TestClient = await aiohttp_client(create_app(s))
        response = await client.post(
            "/upload", data=form(csv_bytes(customers(2)), callback_url=str(server.make_url("/hook")))
        )
        job_id = (await response.json())["job_id"]
        await run_burst_worker(s)
        job = await (await client.get(f"/jobs/{job_id}")).json()
        assert job["webhook"]["status"] == "failed" and len(job["webhook"]["attempts"]) == 3
        assert len(receiver.deliveries) == 3


async def test_a_delivery_owed_when_a_worker_died_is_sent_by_the_sweep(
    aiohttp_client: Any, settings: Settings, pool: Any, clean: None
) -> None:
    from arq import create_pool

    from shared.cache import CustomerCache
    from shared.db import connection
    from shared.storage import UploadStore
    from worker.importer import WorkerDeps
    from worker.settings import redis_settings
    from worker.sweeper import sweep_jobs

    receiver = Receiver(failures=0)
    async with TestServer(receiver.app) as server:
        s = hooked(settings)
        client: TestClient = await aiohttp_client(create_app(s))
        response = await client.post(
            "/upload", data=form(csv_bytes(customers(2)), callback_url=str(server.make_url("/hook")))
        )
        job_id = (await response.json())["job_id"]
        # The job ended, its delivery owed, but the worker died before it queued the attempt.
        async with connection(pool) as conn, conn.cursor() as cur:
            await cur.execute(
                "UPDATE import_jobs SET status = 'completed', finished_at = NOW(6), webhook = %s,"
                " webhook_due_at = NOW(6) - INTERVAL 1 HOUR WHERE id = %s",
                (json.dumps({"status": "pending", "delivery_id": DELIVERY_ID, "attempts": []}), job_id),
            )
            await cur.execute("DELETE FROM import_jobs WHERE id <> %s", (job_id,))
        arq = await create_pool(redis_settings(s), default_queue_name=s.queue_name)
        try:
            await arq.delete(s.queue_name)  # the import's own queue entry: not needed here
            deps = WorkerDeps(s, pool, CustomerCache(arq, prefix=s.redis_prefix), UploadStore(s.upload_dir))
            await sweep_jobs({"deps": deps, "redis": arq})
        finally:
            await arq.aclose()
        await run_burst_worker(s)
        assert [d["id"] for d in receiver.deliveries] == [DELIVERY_ID]
        job = await (await client.get(f"/jobs/{job_id}")).json()
        assert job["webhook"]["status"] == "delivered"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/hook", "http"),
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[::1]/hook", "loopback"),
        ("not a url", "http"),
    ],
)
async def test_callback_urls_to_private_addresses_are_refused(client: TestClient, url: str, fragment: str) -> None:
    response = await client.post("/upload", data=form(csv_bytes(customers(1)), callback_url=url))
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["errors"][0]["field"] == "callback_url" and fragment in body["errors"][0]["message"]
    preview = await (await client.post("/upload?preview=true", data=form(csv_bytes(customers(1))))).json()
    response = await client.post(f"/jobs/{preview['job_id']}/start", json={"callback_url": url})
    assert response.status == 422


async def test_a_public_address_is_accepted(client: TestClient) -> None:
    response = await client.post(
        "/upload", data=form(csv_bytes(customers(1)), callback_url="https://93.184.216.34/hooks/import")
    )
    assert response.status == 202, await response.text()

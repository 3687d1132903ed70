"""Signed webhooks to a real receiver (an aiohttp app on a local port), retried by real arq jobs."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.config import Settings
from tests.support.api import form
from tests.support.jobs import run_burst_worker
from tests.support.procs import Service, free_port, get_json, http, service_env, upload, wait_http_ready
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


async def test_a_signed_delivery_is_retried_until_it_is_received(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    receiver = Receiver(failures=2)
    async with TestServer(receiver.app) as server:
        s = hooked(settings)
        client: TestClient = await aiohttp_client(create_app(s))
        url = str(server.make_url("/hook"))
        response = await client.post("/upload", data=form("c.csv", csv_bytes(customers(5)), callback_url=url))
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
            "/upload", data=form("c.csv", csv_bytes(customers(2)), callback_url=str(server.make_url("/hook")))
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

    from shared.customers.cache import CustomerCache
    from shared.infra.db import connection
    from shared.infra.storage import UploadStore
    from worker.importer import WorkerDeps
    from worker.settings import redis_settings
    from worker.sweeper import sweep_jobs

    receiver = Receiver(failures=0)
    async with TestServer(receiver.app) as server:
        s = hooked(settings)
        client: TestClient = await aiohttp_client(create_app(s))
        response = await client.post(
            "/upload", data=form("c.csv", csv_bytes(customers(2)), callback_url=str(server.make_url("/hook")))
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
    response = await client.post("/upload", data=form("c.csv", csv_bytes(customers(1)), callback_url=url))
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["errors"][0]["field"] == "callback_url" and fragment in body["errors"][0]["message"]
    preview = await (await client.post("/upload?preview=true", data=form("c.csv", csv_bytes(customers(1))))).json()
    response = await client.post(f"/jobs/{preview['job_id']}/start", json={"callback_url": url})
    assert response.status == 422


async def test_a_public_address_is_accepted(client: TestClient) -> None:
    response = await client.post(
        "/upload", data=form("c.csv", csv_bytes(customers(1)), callback_url="https://93.184.216.34/hooks/import")
    )
    assert response.status == 202, await response.text()


class ThreadedReceiver:
    """The same receiver as a plain HTTP server in a thread, for real gateway and worker processes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.deliveries: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                receiver.deliveries.append(
                    {
                        "valid": hmac.compare_digest(expected, self.headers.get("X-Signature-256", "")),
                        "id": self.headers.get("X-Webhook-Id"),
                        "document": json.loads(body),
                    }
                )
                self.send_response(500 if len(receiver.deliveries) <= receiver.failures else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_delivery_survives_its_worker_being_killed_between_attempts(settings: Settings, tmp_path: Path) -> None:
    """Real `python -m gateway` / `python -m worker` processes: the callback_url is given when a
    previewed job is started; the receiver fails the first two deliveries; the worker is SIGKILLed
    after the first; another worker delivers the rest."""
    receiver = ThreadedReceiver(failures=2)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(
        replace(settings, sweep_interval_s=1),
        PORT=port,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_ALLOW_PRIVATE="true",
        WEBHOOK_BACKOFF_S=3,
        WEBHOOK_TIMEOUT_S=2,
    )
    services = [Service("gateway", env, tmp_path, "gateway")]
    try:
        wait_http_ready(base, services[0])
        services.append(Service("worker", env, tmp_path, "doomed"))
        status, previewed = upload(base, "c.csv", csv_bytes(customers(5)), "?preview=true")
        assert status == 201, previewed
        status, _, raw = http(
            "POST",
            f"{base}/jobs/{previewed['job_id']}/start",
            json.dumps({"callback_url": receiver.url}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 202, raw
        job_id = previewed["job_id"]
        deadline = time.monotonic() + 60
        while not (get_json(f"{base}/jobs/{job_id}")[1].get("webhook") or {}).get("attempts"):
            assert time.monotonic() < deadline, services[1].output()[-3000:]
            time.sleep(0.1)
        services[1].signal(signal.SIGKILL)  # the first attempt failed and is recorded; the next is owed
        services[1].proc.wait(10)
        services.append(Service("worker", env, tmp_path, "survivor"))
        while len(receiver.deliveries) < 3 or get_json(f"{base}/jobs/{job_id}")[1]["webhook"]["status"] != "delivered":
            assert time.monotonic() < deadline, "\n".join(s.output()[-3000:] for s in services)
            time.sleep(0.2)
        assert all(d["valid"] for d in receiver.deliveries)
        assert len({d["id"] for d in receiver.deliveries}) == 1
        assert receiver.deliveries[-1]["document"]["status"] == "completed"
        assert receiver.deliveries[-1]["document"]["rows_inserted"] == 5
        _, job = get_json(f"{base}/jobs/{job_id}")
        assert job["callback_url"] == receiver.url
        assert [a["status"] for a in job["webhook"]["attempts"]][-1] == 204
    finally:
        for service in services:
            service.stop()
        receiver.close()

"""Prometheus metrics: the gateway's /metrics and the worker's WORKER_METRICS_PORT, scraped from real
`python -m gateway` / `python -m worker` processes while an import runs; two gateway processes on one
port (multiprocess mode) never show a counter going back; the Grafana dashboard asks only for series
the services export."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from shared.config import Settings, SettingsError, load_settings
from tests.conftest import truncate_all
from tests.support.procs import Service, free_port, get_json, http, service_env, upload, wait_http_ready, wait_job
from tests.support.workbooks import csv_bytes, customers
from worker.job_metrics import WorkerMetrics, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "customer-import.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode())


def series_names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def wait_scrape(url: str, service: Service, timeout: float = 30) -> Samples:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited:\n{service.output()}")
        try:
            return scrape(url)
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer:\n{service.output()}")


class Procs:
    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.services: list[Service] = []

    def start(self, module: str, name: str, **env: object) -> Service:
        service = Service(module, service_env(self.settings, PORT=self.port, **env), self.log_dir, name)
        self.services.append(service)
        return service

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.output()[-4000:]}" for s in self.services)


@pytest.fixture
def procs(settings: Settings, tmp_path: Path, pool: object) -> Iterator[Procs]:
    truncate_all(settings)
    p = Procs(settings, tmp_path)
    try:
        yield p
    finally:
        p.stop()


@pytest.mark.e2e
def test_gateway_and_worker_metrics_move_as_jobs_run(procs: Procs) -> None:
    metrics_port = free_port()
    gateway = procs.start("gateway", "gateway")
    wait_http_ready(procs.base, gateway)
    worker = procs.start("worker", "worker", WORKER_METRICS_PORT=metrics_port)
    gateway_url, worker_url = f"{procs.base}/metrics", f"http://127.0.0.1:{metrics_port}/metrics"
    worker_before = wait_scrape(worker_url, worker)
    gateway_before = scrape(gateway_url)

    rows = 1200  # 3 batches of 500 (the tests' IMPORT_BATCH_SIZE)
    good = csv_bytes(customers(rows))
    status, body = upload(procs.base, "good.csv", good)
    assert status == 202, body
    job = wait_job(procs.base, body["job_id"], timeout=60)
    assert job["status"] == "completed" and job["rows_inserted"] == rows, procs.logs()
    # A file that fails part-way: a quote opened after the first rows and never closed.
    broken = csv_bytes(customers(300, start=rows)) + b'"First,Last,Co,1 Road,Leeds,WY,LS1,0113,open@x.example,web\n'
    broken += csv_bytes(customers(3, start=rows + 300), header=None)
    status, body = upload(procs.base, "broken.csv", broken)
    assert status == 202, body
    failed = wait_job(procs.base, body["job_id"], timeout=60)
    assert failed["status"] == "failed", failed
    # Reads through the cache: a miss fills it, the next read hits.
    _, page = get_json(f"{procs.base}/customers?limit=1")
    customer = page["items"][0]["id"]
    for _ in range(2):
        assert http("GET", f"{procs.base}/customers/{customer}")[0] == 200

    # The job's row says "completed" a moment before the worker's attempt returns and is timed.
    deadline = time.monotonic() + 10
    while True:
        worker_after = scrape(worker_url)
        ended = sum(
            value(worker_after, "import_job_duration_seconds_count", status=s)
            - value(worker_before, "import_job_duration_seconds_count", status=s)
            for s in ("completed", "failed")
        )
        if ended >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    gateway_after = scrape(gateway_url)

    def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Worker: rows by outcome, batches, the job's duration, the failure and its reason.
    w = (worker_before, worker_after)
    assert moved(*w, "import_rows_total", outcome="inserted") == rows + failed["rows_inserted"]
    assert moved(*w, "import_rows_total", outcome="updated") == 0
    assert moved(*w, "import_batch_duration_seconds_count") == 3 + (1 if failed["rows_read"] else 0)
    assert moved(*w, "import_batch_duration_seconds_sum") > 0
    assert moved(*w, "import_job_duration_seconds_count", status="completed") == 1
    assert moved(*w, "import_job_duration_seconds_count", status="failed") == 1
    assert moved(*w, "import_job_duration_seconds_sum", status="completed") > 0
    assert moved(*w, "import_failures_total", reason="invalid_file") == 1
    assert moved(*w, "import_failures_total", reason="crashed") == 0
    assert value(worker_after, "import_jobs_running") == 0
    assert ("sweep_takeovers_total", ()) in worker_after

    # Gateway: requests by route and status with latency, uploads and their bytes, cache outcomes.
    g = (gateway_before, gateway_after)
    assert moved(*g, "http_requests_total", method="POST", route="/upload", status="202") == 2
    assert moved(*g, "http_request_duration_seconds_count", method="POST", route="/upload") == 2
    assert moved(*g, "http_requests_total", method="GET", route="/jobs/{id}", status="200") >= 2
    assert moved(*g, "uploads_total", outcome="accepted") == 2
    assert moved(*g, "upload_bytes_total") == len(good) + len(broken)
    assert moved(*g, "customer_cache_total", result="miss") >= 1
    assert moved(*g, "customer_cache_total", result="hit") >= 1
    # Read at scrape time: nothing is left in flight. The workers' sweep is an arq cron job, queued
    # when due and ready there until the worker's next poll: a scrape at that moment counts it, so the
    # depth is read again until it is 0 (an import left in the queue would stay).
    deadline = time.monotonic() + 10
    while value(gateway_after, "job_queue_depth", state="ready") and time.monotonic() < deadline:
        time.sleep(0.1)
        gateway_after = scrape(gateway_url)
    assert value(gateway_after, "job_queue_depth", state="ready") == 0
    for state in ("uploaded", "queued", "running"):
        assert ("import_jobs", (("status", state),)) in gateway_after
        assert value(gateway_after, "import_jobs", status=state) == 0

    # The dashboard's expressions name only series these two processes export.
    unknown = dashboard_series() - series_names(gateway_after) - series_names(worker_after)
    assert not unknown, f"the dashboard asks for series nobody exports: {sorted(unknown)}"


@pytest.mark.e2e
def test_scrape_time_gauges_see_jobs_waiting(procs: Procs) -> None:
    """No worker: an upload stays queued, and the gateway's gauges say so."""
    gateway = procs.start("gateway", "gateway")
    wait_http_ready(procs.base, gateway)
    status, body = upload(procs.base, "a.csv", csv_bytes(customers(5)))
    assert status == 202, body
    status, preview = upload(procs.base, "b.csv", csv_bytes(customers(5)), "?preview=true")
    assert status == 201, preview
    after = scrape(f"{procs.base}/metrics")
    assert value(after, "import_jobs", status="queued") == 1
    assert value(after, "import_jobs", status="uploaded") == 1
    assert value(after, "job_queue_depth", state="ready") == 1


@pytest.mark.e2e
def test_two_gateway_processes_on_one_port_never_reset_counters(procs: Procs, tmp_path: Path) -> None:
    """GATEWAY_PROCESSES=2 as deploy/run.sh runs it: both on one port (SO_REUSEPORT), one
    PROMETHEUS_MULTIPROC_DIR. Whichever process answers, a scrape counts every request so far."""
    folder = tmp_path / "prom"
    folder.mkdir()
    gateways = [procs.start("gateway", f"gateway{i}", PROMETHEUS_MULTIPROC_DIR=folder) for i in (1, 2)]
    for gateway in gateways:
        wait_http_ready(procs.base, gateway)
    url = f"{procs.base}/metrics"
    key = ("http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    sent = 0
    seen: list[float] = []
    for _ in range(6):
        for _ in range(20):  # a new connection each: the kernel spreads them over both processes
            assert http("GET", f"{procs.base}/healthz")[0] == 200
            sent += 1
        for _ in range(4):
            count = scrape(url).get(key, 0.0)
            assert count >= sent, f"a scrape saw {count} of {sent} requests"
            seen.append(count)
    assert seen == sorted(seen), seen
    assert seen[-1] == sent

    # Both processes served some of them, and the scrape is their sum: each process's own files,
    # read apart, hold a part.
    parts = []
    for gateway in gateways:
        own = tmp_path / f"own-{gateway.proc.pid}"
        own.mkdir()
        for file in folder.glob(f"*_{gateway.proc.pid}.db"):
            shutil.copy(file, own)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(own))
        parts.append(registry.get_sample_value("http_requests_total", dict(key[1])) or 0.0)
    assert all(part > 0 for part in parts), parts
    assert sum(parts) == sent

    # One process stops: its counts stay in the total, the other one answers them.
    gateways[0].stop()
    assert scrape(url).get(key, 0.0) >= sent


async def test_gateway_metrics_in_process(client: TestClient) -> None:
    """Each app has a registry of its own (many apps in one test process), every series is there from
    the start, and /metrics stays public when keys are on."""
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status == 200
    samples = parse(await response.text())
    assert value(samples, "http_requests_total", method="GET", route="/healthz", status="200") == 1
    for result in ("hit", "miss", "bypass"):
        assert ("customer_cache_total", (("result", result),)) in samples
    for outcome in ("accepted", "rejected", "too_large"):
        assert ("uploads_total", (("outcome", outcome),)) in samples
    assert ("job_queue_depth", (("state", "ready"),)) in samples


def test_dashboard_is_grafana_json_over_exported_series() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"] and isinstance(board["panels"], list)
    panels = [p for p in board["panels"] if p.get("type") != "row"]
    assert len(panels) >= 12
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
    # Every metric the worker exports is defined up front (the gateway's are checked live above).
    worker = parse(WorkerMetrics().render().decode())
    asked = dashboard_series()
    for name in ("import_rows_total", "import_batch_duration_seconds_bucket", "import_job_duration_seconds_bucket"):
        assert name in asked and name in series_names(worker)


PROMQL_WORDS = {
    "sum",
    "rate",
    "irate",
    "increase",
    "by",
    "without",
    "histogram_quantile",
    "le",
    "max",
    "min",
    "avg",
    "clamp_min",
    "or",
    "and",
    "on",
    "vector",
    "topk",
    "count",
}


def dashboard_series() -> set[str]:
    """The metric names the dashboard's expressions select."""
    board = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\{[^}]*\}", "", target["expr"])  # label matchers
            expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
            expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
            expr = re.sub(r'"[^"]*"', "", expr)
            expr = re.sub(r"(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][-+]?\d+)?", "", expr)  # numbers
            for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
                if word not in PROMQL_WORDS and not word.startswith("$"):
                    names.add(word)
    return names


def test_worker_metrics_port_setting() -> None:
    assert load_settings({}).worker_metrics_port == 9101
    assert load_settings({"WORKER_METRICS_PORT": "0"}).worker_metrics_port == 0
    with pytest.raises(SettingsError, match="WORKER_METRICS_PORT"):
        load_settings({"WORKER_METRICS_PORT": "70000"})
    with pytest.raises(SettingsError, match="WORKER_METRICS_PORT"):
        load_settings({"WORKER_METRICS_PORT": "-1"})


async def test_worker_metrics_port_taken_is_a_warning(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A worker whose metrics port is taken still works (it logs why it serves no metrics); port 0 is off."""
    from dataclasses import replace

    metrics = WorkerMetrics()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        runner = await start_server(metrics, replace(settings, host="127.0.0.1", worker_metrics_port=taken))
        assert runner is None
        assert "port is taken" in caplog.text
    assert await start_server(metrics, replace(settings, worker_metrics_port=0)) is None
    port = free_port()
    runner = await start_server(metrics, replace(settings, host="127.0.0.1", worker_metrics_port=port))
    assert runner is not None
    try:
        metrics.batch(False, 3, 2, 1, 4, 0.01)
        samples = parse((await _get(f"http://127.0.0.1:{port}/metrics")).decode())
        assert value(samples, "import_rows_total", outcome="inserted") == 3
        assert value(samples, "import_rows_total", outcome="invalid") == 4
        assert value(samples, "import_batch_duration_seconds_count") == 1
    finally:
        await stop_server(runner, settings)


async def _get(url: str) -> bytes:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()

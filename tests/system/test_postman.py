"""The Postman collection, generated from the OpenAPI document, run by newman against a live stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.openapi.document import build_spec
from gateway.openapi.postman import build_collection
from shared.config import Settings
from tests.support.procs import REPO, Service, free_port, http, service_env, wait_http_ready

NEWMAN_VERSION = "6.2.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "customer-import-tests" / "newman"


def test_every_operation_is_a_request_with_its_status_tested() -> None:
    spec = build_spec()
    collection = build_collection(spec, "http://example.test")
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    operations = sum(
        1 for item in spec["paths"].values() for method in item if method in ("get", "post", "put", "patch", "delete")
    )
    names = [item["request"]["method"] + " " + item["request"]["url"]["raw"] for item in collection["item"]]
    assert len(names) == operations + 2  # and the upload twice more: a preview started, one discarded
    assert names[-1].startswith("DELETE {{baseUrl}}/customers/{{customerId}}")
    assert names[-2] == "DELETE {{baseUrl}}/jobs/{{discardJobId}}"
    upload = next(item for item in collection["item"] if item["request"]["url"]["raw"] == "{{baseUrl}}/upload")
    assert upload["request"]["body"]["formdata"][0] == {"key": "file", "type": "file", "src": "customers.xlsx"}
    assert {"key": "apiKey", "value": ""} in collection["variable"]
    assert collection["auth"]["bearer"][0]["value"] == "{{apiKey}}"
    for item in collection["item"]:
        # Its status (a cancel: 200, or 409 when the job ended first).
        assert any("to.have.status" in line or "oneOf" in line for line in item["event"][0]["script"]["exec"])


def _newman() -> Path | None:
    if shutil.which("npx") is None or shutil.which("npm") is None:
        return None
    binary = CACHE / "node_modules" / ".bin" / "newman"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), f"newman@{NEWMAN_VERSION}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"newman could not be installed from npm: {done.stderr[-500:]}")
    return binary


@pytest.fixture
def live(settings: Settings, tmp_path: Path, pool: object) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(settings, PORT=port, API_KEYS="postman-key")
    gateway = Service("gateway", env, tmp_path, "gateway")
    worker = Service("worker", env, tmp_path, "worker")
    try:
        wait_http_ready(base, gateway)
        yield base
    finally:
        gateway.stop()
        worker.stop()


@pytest.mark.e2e
def test_newman_runs_the_collection_green(live: str, tmp_path: Path) -> None:
    newman = _newman()
    if newman is None:
        pytest.skip("npx is not available: install Node.js and npm to run the Postman collection with newman")
    status, _, raw = http("GET", f"{live}/postman.json")
    assert status == 200
    collection = tmp_path / "collection.json"
    collection.write_bytes(raw)
    assert json.loads(raw)["variable"][0] == {"key": "baseUrl", "value": live}
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            str(newman),
            "run",
            str(collection),
            "--working-dir",
            str(REPO / "examples"),
            "--env-var",
            "apiKey=postman-key",
            "--timeout-request",
            "30000",
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    run = json.loads(report.read_text())["run"]
    assert run["stats"]["assertions"]["failed"] == 0
    assert run["stats"]["requests"]["total"] == len(json.loads(raw)["item"])

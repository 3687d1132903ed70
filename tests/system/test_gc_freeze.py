"""`python -m gateway` freezes what it made at start-up (gc.freeze), so that a full collection under
load walks only what requests made since (~2 ms of CPU instead of ~50: tests/bench/gc_pauses.py,
docs/benchmarks.md "Read tail"). A real gateway process reports it in /metrics."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from shared.config import Settings
from tests.support.procs import Service, free_port, service_env, wait_http_ready


def test_the_gateway_process_freezes_its_start_up_objects(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    gateway = Service("gateway", service_env(settings, PORT=port), tmp_path, "gateway")
    try:
        wait_http_ready(f"http://127.0.0.1:{port}", gateway)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        gateway.stop()
    match = re.search(r"^gc_frozen_objects (\S+)$", text, re.M)
    assert match, text[:2000]
    assert float(match.group(1)) > 10_000  # modules, schemas, the OpenAPI document, pools

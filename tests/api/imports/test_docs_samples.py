"""The docs' two sample files hold the same 500 customers: examples/customers.xlsx (the Try-it upload)
and tests/data/uk-500.csv (no header row, mapped by letter in the docs). Run one after the other with
the mapping the docs print, the second changes nothing, so "uploaded again: 2,000 unchanged" stays
true. Real app, real worker, real MariaDB and Redis."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.conftest import DATA, REPO
from tests.support.jobs import run_burst_worker

pytestmark = pytest.mark.usefixtures("clean")
# A mapping object as the docs print it, on one line or several (no nested braces).
_MAPPING = re.compile(r'\{[^{}]*"first_name":\s*"A"[^{}]*\}')


def docs_mappings() -> dict[str, dict[str, str]]:
    """Every by-letter mapping of uk-500.csv in the docs and the README, by where it is."""
    found: dict[str, dict[str, str]] = {}
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for n, match in enumerate(_MAPPING.finditer(page.read_text())):
            if "..." not in match.group(0):  # an abridged one (`{"first_name": "A", ...}`)
                found[f"{page.relative_to(REPO)}#{n}"] = json.loads(match.group(0))
    return found


async def imported(client: TestClient, settings: Settings, path_name: str, data: bytes, **fields: str) -> Any:
    fd = aiohttp.FormData()
    fd.add_field("file", data, filename=path_name, content_type="application/octet-stream")
    for name, value in fields.items():
        fd.add_field(name, value)
    response = await client.post("/upload", data=fd)
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    await run_burst_worker(settings)
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed", job
    return job


def counters(job: dict[str, Any]) -> tuple[int, int, int, int]:
    return job["rows_read"], job["rows_inserted"], job["rows_updated"], job["rows_unchanged"]


async def test_the_two_samples_agree_so_the_second_upload_changes_nothing(
    client: TestClient, settings: Settings
) -> None:
    mappings = docs_mappings()
    assert len(mappings) >= 3, mappings  # getting started, importing, the API and the CLI pages show one
    distinct = {json.dumps(m, sort_keys=True) for m in mappings.values()}
    assert len(distinct) == 1, mappings
    mapping = next(iter(mappings.values()))

    xlsx = (REPO / "examples" / "customers.xlsx").read_bytes()
    first = await imported(client, settings, "customers.xlsx", xlsx)
    assert counters(first) == (2000, 500, 0, 1500)
    csv = await imported(client, settings, "uk-500.csv", (DATA / "uk-500.csv").read_bytes(),
                         header_row="0", mapping=json.dumps(mapping))  # fmt: skip
    assert counters(csv) == (1500, 0, 0, 1500), csv  # the same customers, the same values
    again = await imported(client, settings, "customers.xlsx", xlsx)
    assert counters(again) == (2000, 0, 0, 2000)  # the docs' "uploaded again: 2,000 unchanged"

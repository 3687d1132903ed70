"""Mappings (shared/spreadsheet/mapping.py): columns named by letter, by header text, or as the preview
suggests them; a mapping that does not fit the file is a 422 naming the field. Real app, real worker, MariaDB
and Redis."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.conftest import DATA
from tests.support.api import UK_500_BY_LETTER, counters, finished, form, queued_arq_jobs, upload_and_import
from tests.support.workbooks import HEADER, csv_bytes, customers

pytestmark = pytest.mark.usefixtures("clean")


async def test_uk_500_imports_in_one_call_with_a_mapping_by_letters(client: TestClient, settings: Settings) -> None:
    job = await upload_and_import(
        client,
        settings,
        "uk-500.csv",
        (DATA / "uk-500.csv").read_bytes(),
        header_row="0",
        mapping=json.dumps(UK_500_BY_LETTER),
    )
    assert job["status"] == "completed", job
    assert counters(job) == (1500, 500, 0, 1000, 0)
    assert job["header_row"] == 0 and job["mapping"] == UK_500_BY_LETTER
    found = await (await client.get("/customers", params={"q": "atomkiewicz@hotmail.com"})).json()
    assert found["items"][0]["phone"] == "01835-703597"  # phone1, not phone2


@pytest.mark.parametrize(
    ("mapping", "field", "fragment"),
    [
        ({**UK_500_BY_LETTER, "phone": "Z"}, "mapping.phone", "does not exist"),
        ({**UK_500_BY_LETTER, "phone": "J"}, "mapping.email", "already mapped to phone"),
        ({**UK_500_BY_LETTER, "email": None}, "mapping.email", "Required"),  # only the email is required
        ({**UK_500_BY_LETTER, "age": "L"}, "mapping.age", "Not a customer field"),
    ],
)
async def test_a_mapping_that_does_not_fit_is_422_naming_the_field(
    client: TestClient, settings: Settings, mapping: dict[str, str], field: str, fragment: str
) -> None:
    data = (DATA / "uk-500.csv").read_bytes()
    response = await client.post("/upload", data=form("uk.csv", data, header_row="0", mapping=json.dumps(mapping)))
    assert response.status == 422, await response.text()
    body = await response.json()
    assert any(e["field"] == field and fragment in e["message"] for e in body["errors"]), body["errors"]
    assert await queued_arq_jobs(client, settings) == 0
    # The same through a preview's start.
    job = await (await client.post("/upload?preview=true", data=form("uk.csv", data))).json()
    response = await client.post(f"/jobs/{job['job_id']}/start", json={"header_row": 0, "mapping": mapping})
    assert response.status == 422
    assert any(e["field"] == field for e in (await response.json())["errors"])


async def test_a_header_mapping_by_text(client: TestClient, settings: Settings) -> None:
    header = [*HEADER[:7], "Reach me on", *HEADER[8:]]
    data = csv_bytes(customers(5), header)
    response = await client.post("/upload?preview=true", data=form("c.csv", data))
    columns = (await response.json())["preview"]["columns"]
    # No rule names the header; its values are phone numbers.
    assert (columns[7]["header"], columns[7]["suggested_field"], columns[7]["reason"]) == (
        "Reach me on",
        "phone",
        "values",
    )
    job = await upload_and_import(client, settings, "c.csv", data, mapping=json.dumps({"phone": "Reach me on"}))
    assert counters(job) == (5, 5, 0, 0, 0) and job["warnings"] == []


async def test_a_headerless_file_imports_as_suggested_from_its_first_row(
    client: TestClient, settings: Settings
) -> None:
    """Issue 18 defect 3: uk-500.csv has no header row; uploaded as it is, its first row is data (an email in
    it) and every row imports, the first customer too."""
    job = await upload_and_import(client, settings, "uk-500.csv", (DATA / "uk-500.csv").read_bytes())
    assert job["status"] == "completed", job
    assert job["header_row"] == 0
    assert counters(job) == (1500, 500, 0, 1000, 0)
    found = await (await client.get("/customers", params={"q": "atomkiewicz@hotmail.com"})).json()
    assert found["items"][0]["phone"] == "01835-703597" and found["items"][0]["postal"] == "CT2 7PP"
    # Previewed, then started as suggested (no options): the same rows, the first one too.
    response = await client.post("/upload?preview=true", data=form("uk-500.csv", (DATA / "uk-500.csv").read_bytes()))
    job = await response.json()
    assert job["preview"]["header_row"] == 0 and job["preview"]["rows"][0]["row"] == 1
    started = await client.post(f"/jobs/{job['job_id']}/start", json={})
    assert started.status == 202, await started.text()
    job = await finished(client, settings, job["job_id"])
    assert job["status"] == "completed" and counters(job) == (1500, 0, 0, 1500, 0), job

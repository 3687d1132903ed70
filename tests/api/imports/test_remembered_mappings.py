"""Remembered mappings (issue 18): the mapping an import was started with is suggested for the next file with
the same header; GET /mappings lists them, DELETE /mappings/{id} forgets one. Real app, MariaDB and Redis."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.support.api import form
from tests.support.jobs import run_burst_worker

HEADER = "Kontakt-ID,Wer,Mail,Kundennummer\r\n"


def crm_file(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\r\n" for row in rows)).encode()


async def preview(client: TestClient, filename: str, data: bytes) -> dict[str, Any]:
    response = await client.post("/upload?preview=true", data=form(filename, data))
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_a_mapping_used_once_is_suggested_for_the_same_header(client: TestClient, settings: Settings) -> None:
    first = await preview(client, "crm-march.csv", crm_file("1,Ada Lovelace,ada@example.com,K-1"))
    assert first["preview"]["remembered"] is None
    mapping = {"full_name": "Wer", "email": "Mail", "attributes.customer_no": "Kundennummer"}
    started = await client.post(f"/jobs/{first['job_id']}/start", json={"mapping": mapping})
    assert started.status == 202, await started.text()
    await run_burst_worker(settings)

    # The next export of the same tool: same header (spelt with other case and spaces), other rows.
    other = b"kontakt-id,WER,mail,Kundennummer\r\n2,Grace Hopper,grace@example.com,K-2\r\n"
    second = await preview(client, "crm-april.csv", other)
    remembered = second["preview"]["remembered"]
    assert remembered is not None and remembered["filename"] == "crm-march.csv"
    assert remembered["last_used"].endswith("Z")
    by_header = {c["header"]: c for c in second["preview"]["columns"]}
    assert (by_header["WER"]["suggested_field"], by_header["WER"]["reason"]) == ("full_name", "remembered")
    assert by_header["Kundennummer"]["suggested_field"] == "attributes.customer_no"
    assert by_header["Kundennummer"]["reason"] == "remembered"
    assert second["preview"]["mapping"]["attributes.customer_no"] == "Kundennummer"
    # Started without a mapping, the import uses the remembered one.
    started = await client.post(f"/jobs/{second['job_id']}/start", json={})
    assert started.status == 202, await started.text()
    await run_burst_worker(settings)
    page = await (await client.get("/customers", params={"q": "grace@example.com"})).json()
    (grace,) = page["items"]
    assert (grace["first_name"], grace["last_name"], grace["attributes"]) == ("Grace", "Hopper", {"customer_no": "K-2"})

    listed = await (await client.get("/mappings?limit=500")).json()
    (item,) = [i for i in listed["items"] if i["header"] == ["kontakt_id", "wer", "mail", "kundennummer"]]
    assert item["filename"] == "crm-april.csv"  # the last import started with it
    # As remembered (a header text matches its column however the case and spaces are written).
    assert item["mapping"]["full_name"] == "Wer" and item["mapping"]["attributes.customer_no"] == "Kundennummer"

    # Forgotten: the next file gets no remembered mapping; forgetting again is a 404.
    assert (await client.delete(f"/mappings/{item['id']}")).status == 204
    assert (await client.delete(f"/mappings/{item['id']}")).status == 404
    assert (await client.delete("/mappings/abc")).status == 400
    third = await preview(client, "crm-may.csv", crm_file("3,Alan Turing,alan@example.com,K-3"))
    assert third["preview"]["remembered"] is None


async def test_mappings_are_paginated_most_recent_first(client: TestClient, settings: Settings) -> None:
    # (Other tests remember mappings in the same database: these headers are this test's own.)
    for n in range(3):
        header = ",".join(["email", *(f"paged{i}" for i in range(n + 1))])
        data = f"{header}\r\np{n}@example.com,{','.join('x' * (n + 1))}\r\n".encode()
        fd = form(f"file{n}.csv", data)
        fd.add_field("mapping", json.dumps({"email": "email"}))
        response = await client.post("/upload", data=fd)
        assert response.status == 202, await response.text()
    first = await (await client.get("/mappings?limit=2")).json()
    assert [item["filename"] for item in first["items"]] == ["file2.csv", "file1.csv"]  # the latest first
    assert first["next_cursor"]
    rest = await (await client.get(f"/mappings?limit=2&cursor={first['next_cursor']}")).json()
    assert rest["items"][0]["filename"] == "file0.csv"
    seen = [item["id"] for item in first["items"] + rest["items"]]
    assert len(seen) == len(set(seen))  # no mapping twice across pages
    assert (await client.get("/mappings?cursor=nonsense")).status == 400

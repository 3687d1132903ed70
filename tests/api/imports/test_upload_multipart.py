"""The multipart body of POST /upload: no file, two files, no or a wrong boundary, bodies cut short,
huge part headers and filenames, names that are not UTF-8, filenames that look like paths."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.support.api import PROBLEM, form, queued_arq_jobs, still_answers, stored
from tests.support.rawhttp import multipart_body
from tests.support.workbooks import csv_bytes, customers


async def test_missing_field_and_wrong_content_type(client: TestClient, settings: Settings) -> None:
    before = stored(settings)
    response = await client.post("/upload", data=form("a.csv", csv_bytes(customers(1)), field="document"))
    assert response.status == 400
    assert "'file'" in (await response.json())["detail"]
    assert (await response.json())["errors"][0]["field"] == "document"
    fd = aiohttp.FormData()
    fd.add_field("dry_run", "true")
    response = await client.post("/upload", data=fd)
    assert response.status in (400, 415)
    response = await client.post("/upload", data=b"email\na@b.c", headers={"Content-Type": "text/csv"})
    assert response.status == 415
    assert "multipart/form-data" in (await response.json())["detail"]
    response = await client.post("/upload?dry_run=maybe", data=form("a.csv", b"x"))
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "dry_run"
    assert stored(settings) == before
    await still_answers(client)


async def test_one_file_per_upload(client: TestClient, settings: Settings) -> None:
    before = stored(settings)
    fd = form("a.csv", csv_bytes(customers(2)))
    fd.add_field("file", csv_bytes(customers(2, start=5)), filename="b.csv", content_type="text/csv")
    response = await client.post("/upload", data=fd)
    assert response.status == 400
    assert "one file per upload" in (await response.json())["detail"]
    assert await queued_arq_jobs(client, settings) == 0
    assert stored(settings) == before
    await still_answers(client)


async def test_multipart_without_a_boundary_is_400(client: TestClient) -> None:
    # It once was a 500.
    body = multipart_body(csv_bytes(customers(1)))
    response = await client.post("/upload", data=body, headers={"Content-Type": "multipart/form-data"})
    assert response.status == 400 and response.content_type == PROBLEM
    assert "boundary" in (await response.json())["detail"]
    await still_answers(client)


CSV = csv_bytes(customers(2))


MALFORMED = [
    pytest.param("multipart/form-data; boundary=", multipart_body(CSV), id="empty boundary"),
    pytest.param("multipart/form-data; boundary=Other", multipart_body(CSV), id="wrong boundary"),
    pytest.param('multipart/form-data; boundary="a\\"b"', multipart_body(CSV), id="odd boundary"),
    pytest.param("multipart/form-data; boundary=RawBoundary", multipart_body(CSV)[:-40], id="body cut short"),
    pytest.param(
        "multipart/form-data; boundary=RawBoundary",
        multipart_body(CSV, disposition=b'form-data; name="file"; filename="a.csv"\r\nX-Pad: ' + b"a" * 200_000),
        id="200 KB part header",
    ),
    pytest.param(
        "multipart/form-data; boundary=RawBoundary",
        multipart_body(CSV, disposition=b'form-data; name="file"; filename="' + b"a" * 100_000 + b'.csv"'),
        id="100 KB filename",
    ),
    pytest.param(
        "multipart/form-data; boundary=RawBoundary",
        multipart_body(CSV, disposition=b'form-data; name="file"; filename="a\x00b.csv"'),
        id="NUL in filename",
    ),
]


@pytest.mark.parametrize(("content_type", "body"), MALFORMED)
async def test_malformed_multipart_is_400(
    client: TestClient, settings: Settings, content_type: str, body: bytes
) -> None:
    before = stored(settings)
    response = await client.post("/upload", data=body, headers={"Content-Type": content_type})
    assert response.status == 400, await response.text()
    assert "multipart body cannot be read" in (await response.json())["detail"]
    assert stored(settings) == before
    await still_answers(client)


async def test_non_utf8_part_names_and_filenames(client: TestClient, settings: Settings) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=RawBoundary"}
    body = multipart_body(CSV, disposition=b'form-data; name="fil\xe9"; filename="a.csv"')
    response = await client.post("/upload", data=body, headers=headers)
    assert response.status == 400 and (await response.json())["errors"][0]["field"] == "fil\ufffd"
    body = multipart_body(CSV, disposition=b'form-data; name="file"; filename="caf\xe9.csv"')
    response = await client.post("/upload", data=body, headers=headers)
    assert response.status == 202, await response.text()
    job = await (await client.get(f"/jobs/{(await response.json())['job_id']}")).json()
    assert job["filename"] == "caf\ufffd.csv"
    await still_answers(client)


def _written_outside(root: Path) -> list[Path]:
    return [*root.rglob("evil.csv"), *(p for p in [Path("/tmp/evil.csv"), Path("/etc/evil.csv")] if p.exists())]


@pytest.mark.parametrize(
    "disposition",
    [
        b'form-data; name="file"; filename="../../../../../../tmp/evil.csv"',
        b'form-data; name="file"; filename="..\\\\..\\\\evil.csv"',
        b'form-data; name="file"; filename="/etc/evil.csv"',
        b'form-data; name="file"; filename="a/b/c/evil.csv"',
        b"form-data; name=\"file\"; filename*=UTF-8''..%2F..%2Fevil.csv",
    ],
    ids=["dot-dot", "backslashes", "absolute", "separators", "RFC 5987 dot-dot"],
)
async def test_a_filename_is_a_label_never_a_path(client: TestClient, settings: Settings, disposition: bytes) -> None:
    before = stored(settings)
    body = multipart_body(CSV, disposition=disposition)
    response = await client.post(
        "/upload", data=body, headers={"Content-Type": "multipart/form-data; boundary=RawBoundary"}
    )
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    assert set(stored(settings)) - set(before) == {f"{job_id}.csv"}
    assert _written_outside(Path(settings.upload_dir).parent) == []
    job = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["filename"].endswith("evil.csv")  # recorded as sent, shown as text
    await still_answers(client)

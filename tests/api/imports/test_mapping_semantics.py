"""Issue 18, the data model and the mapping's semantics, through the real app, worker, MariaDB and Redis:
only the email is required, lists of columns joined, `full_name` split, null leaves a field out, a
partial mapping merged with the suggestions (defect 1), a file of three columns (defect 2), columns kept
as `attributes.<name>`, errors in the user's words (defect 6), the ignored-column warning of a
headerless file (defect 7)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import aiomysql
from aiohttp.test_utils import TestClient

from shared.config import Settings
from tests.support.api import form
from tests.support.jobs import run_burst_worker


def csv_text(header: list[str] | None, rows: list[list[Any]], *, delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


async def upload(
    client: TestClient, filename: str, data: bytes, *, mapping: dict[str, Any] | None = None, **fields: str
) -> Any:
    fd = form(filename, data)
    if mapping is not None:
        fd.add_field("mapping", json.dumps(mapping))
    for name, value in fields.items():
        fd.add_field(name, value)
    return await client.post("/upload", data=fd)


async def imported(client: TestClient, settings: Settings, response: Any) -> dict[str, Any]:
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    await run_burst_worker(settings)
    job: dict[str, Any] = await (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed", job
    return job


async def customer(client: TestClient, email: str) -> dict[str, Any]:
    page = await (await client.get("/customers", params={"q": email})).json()
    (found,) = [c for c in page["items"] if c["email"] == email]
    return found  # type: ignore[no-any-return]


# -- defects 1 and 2 --------------------------------------------------------------------------------


async def test_a_partial_mapping_is_merged_with_the_suggestions(client: TestClient, settings: Settings) -> None:
    """Defect 1: a cp1252 `;` CSV with German headers and a mapping for some of them was refused with
    422 "mapping.first_name: Required" though the preview in that answer mapped first_name."""
    header = ["Vorname", "Nachname", "Firma", "Straße", "Ort", "PLZ", "Telefon", "E-Mail", "Webseite"]
    rows = [
        ["Jürgen", "Größe", "Müller GmbH", "Hauptstraße 1", "München", "80331", "089 1234", "jg@example.de", "x.de"],
        ["Änne", "Weiß", "Bäcker AG", "Ringstraße 9", "Köln", "50667", "0221 999", "aw@example.de", "y.de"],
    ]
    data = csv_text(header, rows, delimiter=";").encode("cp1252")
    given = {"company_name": "Firma", "address": "Straße", "city": "Ort", "postal": "PLZ", "email": "E-Mail"}
    job = await imported(client, settings, await upload(client, "kontakte.csv", data, mapping=given))
    assert job["rows_inserted"] == 2 and job["rows_invalid"] == 0
    # The fields the mapping names come from it, the others from the suggestions.
    assert job["mapping"]["first_name"] == "Vorname" and job["mapping"]["last_name"] == "Nachname"
    stored = await customer(client, "jg@example.de")
    assert (stored["first_name"], stored["last_name"], stored["company_name"], stored["city"]) == (
        "Jürgen",
        "Größe",
        "Müller GmbH",
        "München",
    )


async def test_a_file_of_names_and_emails_imports(client: TestClient, settings: Settings) -> None:
    """Defect 2: first_name,last_name,email was refused (7 columns missing) though POST /customers takes it."""
    data = csv_text(["first_name", "last_name", "email"], [["Ada", "Lovelace", "ada@example.com"]]).encode()
    preview = await upload(client, "three.csv", data, preview="true")
    assert preview.status == 201, await preview.text()
    assert (await preview.json())["preview"]["unmapped_required"] == []
    job = await imported(client, settings, await upload(client, "three.csv", data))
    assert job["rows_inserted"] == 1
    stored = await customer(client, "ada@example.com")
    assert stored["company_name"] is None and stored["country"] is None and stored["attributes"] == {}
    # An email-only contact is a customer too (HubSpot exports many).
    response = await client.post("/customers", json={"email": "only@example.com"})
    assert response.status == 201, await response.text()


# -- lists, full_name, null ------------------------------------------------------------------------


async def test_lists_full_name_and_null(client: TestClient, settings: Settings) -> None:
    header = ["Name", "Address1", "Address2", "Email", "Phone", "Country"]
    rows = [
        ["Ada Lovelace", "12 St James's Square", "Flat 2", "ada@example.com", "+44 20 7946 0000", "UK"],
        ["Lovelace, Byron", "1 Piccadilly", "", "byron@example.com", "+44 20 7946 0001", "UK"],
        ["Ludwig van Beethoven", "Bonngasse 20", "", "lvb@example.com", "0228 981750", "DE"],
        ["Cher", "", "", "cher@example.com", "", ""],
    ]
    mapping = {"full_name": "Name", "address": ["Address1", "Address2"], "phone": None}
    job = await imported(
        client, settings, await upload(client, "names.csv", csv_text(header, rows).encode(), mapping=mapping)
    )
    assert job["rows_inserted"] == 4 and job["rows_invalid"] == 0
    ada = await customer(client, "ada@example.com")
    assert (ada["first_name"], ada["last_name"]) == ("Ada", "Lovelace")
    assert ada["address"] == "12 St James's Square, Flat 2"  # joined in order, ", " for an address
    assert ada["phone"] is None  # mapped to null: left out, though the header says Phone
    assert ada["country"] == "UK"
    byron = await customer(client, "byron@example.com")
    assert (byron["first_name"], byron["last_name"], byron["address"]) == ("Byron", "Lovelace", "1 Piccadilly")
    lvb = await customer(client, "lvb@example.com")
    assert (lvb["first_name"], lvb["last_name"]) == ("Ludwig", "van Beethoven")
    cher = await customer(client, "cher@example.com")
    assert (cher["first_name"], cher["last_name"], cher["address"]) == ("Cher", None, None)


async def test_a_mapping_that_does_not_fit_names_the_target(client: TestClient) -> None:
    data = csv_text(["email", "a", "b"], [["x@example.com", "1", "2"]]).encode()
    for mapping, field in (
        ({"address": ["a", "nope"]}, "mapping.address"),
        ({"email": ["a", "b"]}, "mapping.email"),
        ({"attributes.": "a"}, "mapping.attributes."),
        ({"shoe_size": "a"}, "mapping.shoe_size"),
        ({"email": None}, "mapping.email"),
    ):
        response = await upload(client, "bad.csv", data, mapping=mapping)
        assert response.status == 422, (mapping, await response.text())
        assert field in [e["field"] for e in (await response.json())["errors"]], mapping


# -- attributes ------------------------------------------------------------------------------------


async def test_attributes_are_kept_exported_and_round_trip(
    client: TestClient, settings: Settings, pool: aiomysql.Pool
) -> None:
    header = ["email", "first_name", "Lifecycle Stage", "Lead Source", "Notes"]
    rows = [
        ["ada@example.com", "Ada", "customer", "web", "n1"],
        ["grace@example.com", "Grace", "lead", "", "n2"],
    ]
    mapping = {"attributes.stage": "Lifecycle Stage", "attributes.source": "Lead Source"}
    job = await imported(
        client, settings, await upload(client, "hubspot.csv", csv_text(header, rows).encode(), mapping=mapping)
    )
    assert job["rows_inserted"] == 2
    assert job["warnings"][0] == "ignored unknown column(s): Notes"
    ada = await customer(client, "ada@example.com")
    assert ada["attributes"] == {"stage": "customer", "source": "web"}
    grace = await customer(client, "grace@example.com")
    assert grace["attributes"] == {"stage": "lead"}  # an empty cell is no attribute
    # The API document, the cache document: the same (the import warmed the cache).
    one = await client.get(f"/customers/{ada['id']}")
    assert one.headers["X-Cache"] == "hit"
    assert (await one.json())["attributes"] == {"stage": "customer", "source": "web"}

    # The export: one column a name, which an import reads back as that attribute.
    export = await (await client.get("/customers/export?format=csv")).text()
    exported = list(csv.reader(io.StringIO(export.lstrip("\ufeff"))))
    assert "attributes.source" in exported[0] and "attributes.stage" in exported[0]
    job = await imported(client, settings, await upload(client, "export.csv", export.encode()))
    assert (job["rows_unchanged"], job["rows_updated"], job["rows_inserted"]) == (2, 0, 0)

    # A changed attribute is an update; the same file again writes nothing.
    at = exported[0].index("attributes.stage")
    email_at = exported[0].index("email")
    for row in exported[1:]:
        if row[email_at] == "grace@example.com":
            row[at] = "customer"
    changed = csv_text(exported[0], exported[1:]).encode()
    job = await imported(client, settings, await upload(client, "changed.csv", changed))
    assert (job["rows_updated"], job["rows_unchanged"]) == (1, 1)
    assert (await customer(client, "grace@example.com"))["attributes"] == {"stage": "customer"}
    again = await (await client.get("/customers/export?format=csv")).text()
    job = await imported(client, settings, await upload(client, "again.csv", again.encode()))
    assert (job["rows_updated"], job["rows_unchanged"]) == (0, 2)


async def test_attributes_through_the_api(client: TestClient) -> None:
    response = await client.post(
        "/customers", json={"email": "api@example.com", "country": "NZ", "attributes": {"tier": "gold", "vip": "yes"}}
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["attributes"] == {"tier": "gold", "vip": "yes"} and created["country"] == "NZ"
    # PATCH merges (null removes a name); PUT replaces.
    patched = await client.patch(f"/customers/{created['id']}", json={"attributes": {"vip": None, "since": "2020"}})
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["attributes"] == {"tier": "gold", "since": "2020"}
    put = await client.put(f"/customers/{created['id']}", json={"email": "api@example.com", "attributes": {"a": "1"}})
    assert (await put.json())["attributes"] == {"a": "1"}
    bad = await client.post("/customers", json={"email": "b@example.com", "attributes": {"x": "y" * 1001}})
    assert bad.status == 422
    assert any(e["field"].startswith("attributes") for e in (await bad.json())["errors"])


# -- errors in the user's words (defect 6), headerless warning (defect 7) ------------------------------


async def test_row_errors_name_the_files_column_the_field_and_the_value(client: TestClient, settings: Settings) -> None:
    """Defect 6: errors said `company_name: Longer than 100 characters` and never showed the value;
    the user's file calls the column `Firma`."""
    header = ["Vorname", "Firma", "E-Mail"]
    long_name = "Sehr lange Firma " * 8
    rows = [["Anna", long_name, "anna@example.de"], ["Bernd", "B AG", "kein-email"], ["Carl", "C AG", "c@example.de"]]
    mapping = {"first_name": "Vorname", "company_name": "Firma", "email": "E-Mail"}
    job = await imported(
        client, settings, await upload(client, "firmen.csv", csv_text(header, rows).encode(), mapping=mapping)
    )
    assert job["rows_invalid"] == 2
    first = {e["row"]: e for e in job["errors"]}
    assert first[2] == {
        "row": 2,
        "column": "Firma",
        "field": "company_name",
        "value": long_name[:100],
        "message": "Longer than 100 characters",
    }
    assert (first[3]["column"], first[3]["field"], first[3]["value"]) == ("E-Mail", "email", "kein-email")
    page = await (await client.get(f"/jobs/{job['job_id']}/errors")).json()
    assert [e["column"] for e in page["items"]] == ["Firma", "E-Mail"]
    rejected = await (await client.get(f"/jobs/{job['job_id']}/rejected?format=csv")).text()
    assert "Firma: Longer than 100 characters" in rejected


async def test_a_headerless_files_unmapped_columns_are_warned(client: TestClient, settings: Settings) -> None:
    """Defect 7: an unmapped column of a headerless file was dropped without the warning a header gets."""
    rows = [["ada@example.com", "Ada", "ignored-1", "x"], ["bob@example.com", "Bob", "ignored-2", "y"]]
    data = csv_text(None, rows).encode()
    job = await imported(
        client,
        settings,
        await upload(client, "plain.csv", data, mapping={"email": "A", "first_name": "B"}, header_row="0"),
    )
    assert job["rows_inserted"] == 2
    assert job["warnings"] == ["ignored unknown column(s): C, D"]

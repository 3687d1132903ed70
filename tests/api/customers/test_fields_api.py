"""GET /fields: the customer fields as shared/customers/fields.py declares them, and the web page taking
them from there (gateway/static/fields.js) instead of a copy of its own."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.app import create_app
from shared.config import Settings
from shared.customers.fields import ATTRIBUTE_PREFIX, FIELDS, FULL_NAME, FULL_NAME_LABEL

STATIC = Path(__file__).resolve().parents[3] / "gateway" / "static"


async def test_the_fields_are_the_registrys_in_its_order(client: TestClient) -> None:
    response = await client.get("/fields")
    assert response.status == 200
    answer = await response.json()
    assert [item["name"] for item in answer["items"]] == [field.name for field in FIELDS]
    for item, field in zip(answer["items"], FIELDS, strict=True):
        assert item == {
            "name": field.name,
            "label": field.title,
            "description": field.description,
            "max_length": field.max_length,
            "required": field.required,
            "aliases": list(field.aliases),
        }
    assert answer["full_name"] == {"name": FULL_NAME, "label": FULL_NAME_LABEL}
    assert answer["attribute_prefix"] == ATTRIBUTE_PREFIX
    labels = {item["name"]: item["label"] for item in answer["items"]}
    assert (labels["first_name"], labels["company_name"], labels["postal"]) == ("First name", "Company", "Postcode")


async def test_the_page_reads_them_before_a_key_is_entered(
    aiohttp_client: Any, settings: Settings, clean: None
) -> None:
    keyed: TestClient = await aiohttp_client(create_app(replace(settings, api_keys=("ci=some-secret-key",))))
    assert (await keyed.get("/jobs")).status == 401
    response = await keyed.get("/fields")  # public, like /openapi.json: no secret in it
    assert response.status == 200
    assert [item["name"] for item in (await response.json())["items"]] == [field.name for field in FIELDS]


def test_the_page_keeps_no_copy_of_the_fields() -> None:
    """The only place the page learns the fields is GET /fields (fields.js); no module lists them."""
    loader = (STATIC / "fields.js").read_text()
    assert re.search(r'getJSON\("fields"\)', loader)
    for path in sorted(STATIC.glob("*.js")):
        source = path.read_text()
        for field in FIELDS:
            # A [name, label] pair, or a label written next to its field's name, is a copy.
            assert not re.search(rf"""["']{field.name}["']\s*[,:]\s*["']{re.escape(field.title)}["']""", source), (
                path.name,
                field.name,
            )
        assert not re.search(r"(?:FIELDS|REQUIRED)\s*=\s*\[\s*[\[\"']", source), path.name
    imports = (STATIC / "imports.js").read_text()
    assert re.search(r'import \{[^}]*\bFIELDS\b[^}]*\} from "\./fields\.js"', imports)
    assert re.search(r'import \{[^}]*\bFIELDS\b[^}]*\} from "\./fields\.js"', (STATIC / "customers.js").read_text())

"""The customer's fields are declared once (shared.customers.fields): the table, the schema, the header rules,
the staging table and the API document must all say the same."""

from __future__ import annotations

import aiomysql
import pytest
from aiohttp.test_utils import TestClient
from marshmallow import validate

from shared.config import Settings
from shared.customers import customer_repo
from shared.customers.fields import ATTRIBUTES, FIELD_LENGTHS, FIELDS, REQUIRED_FIELDS, STORED_FIELDS
from shared.customers.schemas import CustomerInSchema, CustomerSchema, RowSchema
from shared.infra.db import connection
from shared.spreadsheet.rules import ALIASES, CUSTOMER_FIELDS, fold_header, map_header

# Columns of `customers` that are not customer fields.
BOOKKEEPING = {"id", "version", "created_at", "updated_at", "row_hash"}


def _length(field: object) -> int | None:
    lengths = [v.max for v in getattr(field, "validators", []) if isinstance(v, validate.Length)]
    return lengths[0] if lengths else None


async def test_the_table_holds_the_declared_fields(settings: Settings, pool: aiomysql.Pool) -> None:
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'customers' ORDER BY ORDINAL_POSITION",
            (settings.mysql.database,),
        )
        columns = [row for row in await cur.fetchall() if row[0] not in BOOKKEEPING]
    assert [c[0] for c in columns] == list(STORED_FIELDS)
    for (name, kind, length, nullable), field in zip(columns, FIELDS, strict=False):
        assert (kind.lower(), int(length), nullable == "NO") == ("varchar", field.max_length, field.required), name
    # The attributes: JSON text in a text column (portable: MariaDB's JSON is LONGTEXT, MySQL's binary).
    assert columns[-1][0] == ATTRIBUTES and columns[-1][1].lower() == "mediumtext" and columns[-1][3] == "YES"


def test_only_the_email_is_required_and_the_limits_fit_real_data() -> None:
    assert REQUIRED_FIELDS == ("email",)
    assert {name: FIELD_LENGTHS[name] for name in ("phone", "email", "web", "country")} == {
        "phone": 50,
        "email": 254,
        "web": 255,
        "country": 100,
    }


@pytest.mark.parametrize("schema", [CustomerSchema(), CustomerInSchema(), RowSchema()], ids=lambda s: type(s).__name__)
def test_the_schema_declares_the_fields(schema: CustomerSchema) -> None:
    declared = [(name, f.required, _length(f)) for name, f in schema.fields.items() if name in CUSTOMER_FIELDS]
    assert declared == [(f.name, f.required, f.max_length) for f in FIELDS]
    assert list(schema.fields)[: len(FIELDS)] == list(CUSTOMER_FIELDS)


def test_the_header_rules_know_every_field_and_alias() -> None:
    assert map_header(list(CUSTOMER_FIELDS)).positions == {name: i for i, name in enumerate(CUSTOMER_FIELDS)}
    for field in FIELDS:
        assert all(ALIASES[alias] == field.name and fold_header(alias) == alias for alias in field.aliases)
        renamed = [field.aliases[0] if name == field.name and field.aliases else name for name in CUSTOMER_FIELDS]
        assert map_header(renamed).positions[field.name] == CUSTOMER_FIELDS.index(field.name)
    assert set(ALIASES.values()) <= set(CUSTOMER_FIELDS)


def test_the_staging_table_and_statements_follow_the_fields() -> None:
    for field in FIELDS:
        assert f"{field.name} VARCHAR({field.max_length})" in customer_repo._STAGE_DDL
        assert field.name in customer_repo.UPSERT_SQL and field.name in customer_repo._STAGE_LOAD
    assert ATTRIBUTES in customer_repo.UPSERT_SQL and ATTRIBUTES in customer_repo._STAGE_LOAD
    assert customer_repo.COLUMNS[2:-2] == STORED_FIELDS


async def test_the_api_document_describes_the_fields(client: TestClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    components = (await response.json())["components"]["schemas"]
    for name in ("Customer", "CustomerIn", "CachedCustomer"):
        properties = components[name]["properties"]
        for field in FIELDS:
            prop = properties[field.name]
            assert prop.get("maxLength") == field.max_length, (name, field.name, prop)
            assert prop.get("description") == field.description, (name, field.name, prop)
    assert set(components["CustomerIn"].get("required", [])) >= {f.name for f in FIELDS if f.required}

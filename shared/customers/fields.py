"""The customer's fields, declared once.

Everything else derives from this table: the spreadsheet header rules (names and aliases), the
marshmallow schema (lengths, the required email), the staging table and the SQL column lists of
shared.customers.customer_repo, the API document's Customer schemas (descriptions, maxLength), the import
template's notes. Adding a field is one entry here plus a migration adding its column (shared.infra.db);
tests/unit/customers/test_fields.py fails while the table, the schema, the header rules or GET /openapi.json disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CustomerField:
    name: str
    max_length: int  # characters; the column is VARCHAR(max_length)
    description: str  # for the API document
    aliases: tuple[str, ...] = ()  # other header texts that mean this field (folded: lower-case, `_`)
    required: bool = False  # a value in every row (the column is NOT NULL)


FIELDS: tuple[CustomerField, ...] = (
    CustomerField(
        "first_name",
        100,
        "Given name. A customer needs a first_name or a last_name (or both).",
        ("firstname", "first", "given_name", "forename"),
    ),
    CustomerField(
        "last_name",
        100,
        "Family name. A customer needs a first_name or a last_name (or both).",
        ("lastname", "last", "surname", "family_name"),
    ),
    CustomerField(
        "company_name", 100, "Company or organisation.", ("company", "companyname", "organisation", "organization")
    ),
    CustomerField("address", 255, "Street address.", ("address1", "address_1", "street", "street_address")),
    CustomerField("city", 100, "Town or city.", ("town",)),
    CustomerField("county", 100, "County, state, region or province.", ("state", "region", "province")),
    CustomerField(
        "postal",
        20,
        "Postcode or ZIP code, as text (a number is taken as its digits).",
        ("postcode", "post_code", "postal_code", "zip", "zip_code", "zipcode"),
    ),
    CustomerField(
        "phone",
        20,
        "Phone number, as text (a number is taken as its digits).",
        ("phone1", "phone_1", "telephone", "tel", "phone_number", "mobile"),
    ),
    CustomerField(
        "email",
        100,
        "Email address: unique, stored lower-case; an import updates the customer holding it.",
        ("e_mail", "email_address", "mail"),
        required=True,
    ),
    CustomerField("web", 100, "Website (not checked).", ("website", "url", "www", "homepage")),
)

CUSTOMER_FIELDS: tuple[str, ...] = tuple(field.name for field in FIELDS)
FIELD_LENGTHS: dict[str, int] = {field.name: field.max_length for field in FIELDS}
ALIASES: dict[str, str] = {alias: field.name for field in FIELDS for alias in field.aliases}
BY_NAME: dict[str, CustomerField] = {field.name: field for field in FIELDS}


def column_definition(field: CustomerField) -> str:
    """The field's column as CREATE TABLE writes it (the customers table, the staging table)."""
    return f"{field.name} VARCHAR({field.max_length}) {'NOT NULL' if field.required else 'NULL'}"

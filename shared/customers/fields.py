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
    label: str = ""  # how people see it (the web page, via GET /fields); empty: the name in words

    @property
    def title(self) -> str:
        """The field's label: `label`, else its name in words (`first_name`: First name)."""
        return self.label or self.name.replace("_", " ").capitalize()


FIELDS: tuple[CustomerField, ...] = (
    CustomerField(
        "first_name",
        100,
        "Given name.",
        ("firstname", "first", "given_name", "forename"),
    ),
    CustomerField(
        "last_name",
        100,
        "Family name.",
        ("lastname", "last", "surname", "family_name"),
    ),
    CustomerField(
        "company_name",
        100,
        "Company or organisation.",
        ("company", "companyname", "organisation", "organization"),
        label="Company",
    ),
    CustomerField("address", 255, "Street address.", ("address1", "address_1", "street", "street_address")),
    CustomerField("city", 100, "Town or city.", ("town",)),
    CustomerField("county", 100, "County, state, region or province.", ("state", "region", "province")),
    CustomerField(
        "postal",
        20,
        "Postcode or ZIP code, as text (a number is taken as its digits).",
        ("postcode", "post_code", "postal_code", "zip", "zip_code", "zipcode"),
        label="Postcode",
    ),
    CustomerField("country", 100, "Country, as the file or the client writes it (not checked).", ("nation",)),
    CustomerField(
        "phone",
        50,
        "Phone number, as text (a number is taken as its digits); room for an extension.",
        ("phone1", "phone_1", "telephone", "tel", "phone_number", "mobile"),
    ),
    CustomerField(
        "email",
        254,
        "Email address: unique, stored lower-case; an import updates the customer holding it.",
        ("e_mail", "email_address", "mail"),
        required=True,
    ),
    CustomerField("web", 255, "Website (not checked).", ("website", "url", "www", "homepage"), label="Website"),
)

CUSTOMER_FIELDS: tuple[str, ...] = tuple(field.name for field in FIELDS)
FIELD_LENGTHS: dict[str, int] = {field.name: field.max_length for field in FIELDS}
ALIASES: dict[str, str] = {alias: field.name for field in FIELDS for alias in field.aliases}
BY_NAME: dict[str, CustomerField] = {field.name: field for field in FIELDS}

# `attributes`: what a file held that has no field, kept on the customer as a JSON object of name -> text
# (a mapping's target `attributes.<name>`). Stored as canonical JSON text (keys sorted, NULL when there
# are none) after the fields, so the row hash, the upsert's comparison and the history treat it as one
# more value. Held in a MEDIUMTEXT column: MariaDB's JSON is LONGTEXT with a check, MySQL's a binary
# type; text is portable.
ATTRIBUTES = "attributes"
ATTRIBUTE_PREFIX = ATTRIBUTES + "."
ATTRIBUTES_DESCRIPTION = (
    "What a file held that has no field: name -> text (an import keeps a column here when its mapping says "
    "`attributes.<name>`). An export writes one `attributes.<name>` column per name."
)
MAX_ATTRIBUTE_NAME = 64
MAX_ATTRIBUTE_VALUE = 1000
MAX_ATTRIBUTES = 50
# The values a customer row stores, in this order: the fields, then the attributes' JSON text.
STORED_FIELDS: tuple[str, ...] = (*CUSTOMER_FIELDS, ATTRIBUTES)
# A mapping target that is no field: one column holding the whole name, split into first and last name.
FULL_NAME = "full_name"
FULL_NAME_LABEL = "Full name"
# The fields a file must have a column for (DESIGN "Spreadsheet rules": only the email).
REQUIRED_FIELDS: tuple[str, ...] = tuple(field.name for field in FIELDS if field.required)


def column_definition(field: CustomerField) -> str:
    """The field's column as CREATE TABLE writes it (the customers table, the staging table)."""
    return f"{field.name} VARCHAR({field.max_length}) {'NOT NULL' if field.required else 'NULL'}"


ATTRIBUTES_COLUMN = f"{ATTRIBUTES} MEDIUMTEXT NULL"

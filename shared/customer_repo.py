"""SQL for the `customers` table. Plain parameterised queries; column names come from fixed lists."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import aiomysql
import pymysql

from shared.spreadsheet import CUSTOMER_FIELDS

COLUMNS = ("id", *CUSTOMER_FIELDS, "version", "created_at", "updated_at")
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM customers"
_INSERT_COLUMNS = ", ".join(CUSTOMER_FIELDS)
_PLACEHOLDERS = ", ".join(["%s"] * len(CUSTOMER_FIELDS))
# VALUES(col) rather than the MySQL-only row alias, so the statement runs on MariaDB too. Every
# upsert bumps the version, so an updated row always counts 2 in the affected rows.
UPSERT_SQL = (
    f"INSERT INTO customers ({_INSERT_COLUMNS}) VALUES ({_PLACEHOLDERS}) ON DUPLICATE KEY UPDATE "
    + ", ".join(f"{name} = VALUES({name})" for name in CUSTOMER_FIELDS if name != "email")
    + ", version = version + 1"
)
_DUPLICATE_ENTRY = 1062


class EmailTaken(Exception):
    def __init__(self, email: str) -> None:
        super().__init__(f"a customer with email {email!r} already exists")
        self.email = email


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def to_document(row: Sequence[Any]) -> dict[str, Any]:
    """The customer as the API returns it and as the cache holds it."""
    doc = dict(zip(COLUMNS, row, strict=True))
    doc["created_at"] = _iso(doc["created_at"])
    doc["updated_at"] = _iso(doc["updated_at"])
    return doc


async def get(cur: aiomysql.Cursor, customer_id: int, *, for_update: bool = False) -> dict[str, Any] | None:
    await cur.execute(_SELECT + " WHERE id = %s" + (" FOR UPDATE" if for_update else ""), (customer_id,))
    row = await cur.fetchone()
    return to_document(row) if row else None


async def list_page(cur: aiomysql.Cursor, *, after_id: int, limit: int, search: str | None) -> list[dict[str, Any]]:
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        await cur.execute(
            _SELECT + " WHERE id > %s AND (first_name LIKE %s OR last_name LIKE %s OR email LIKE %s"
            " OR company_name LIKE %s) ORDER BY id LIMIT %s",
            (after_id, pattern, pattern, pattern, pattern, limit),
        )
    else:
        await cur.execute(_SELECT + " WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))
    return [to_document(row) for row in await cur.fetchall()]


async def insert(cur: aiomysql.Cursor, data: Mapping[str, Any]) -> int:
    try:
        await cur.execute(
            f"INSERT INTO customers ({_INSERT_COLUMNS}) VALUES ({_PLACEHOLDERS})",
            [data.get(name) for name in CUSTOMER_FIELDS],
        )
    except pymysql.err.IntegrityError as exc:
        if exc.args and exc.args[0] == _DUPLICATE_ENTRY:
            raise EmailTaken(str(data.get("email"))) from None
        raise
    return int(cur.lastrowid)


async def update(cur: aiomysql.Cursor, customer_id: int, data: Mapping[str, Any], expected_version: int | None) -> bool:
    """Write every customer field and bump the version; False when the id (or version) did not match."""
    assignments = ", ".join(f"{name} = %s" for name in CUSTOMER_FIELDS)
    params: list[Any] = [data.get(name) for name in CUSTOMER_FIELDS]
    sql = f"UPDATE customers SET {assignments}, version = version + 1 WHERE id = %s"
    params.append(customer_id)
    if expected_version is not None:
        sql += " AND version = %s"
        params.append(expected_version)
    try:
        await cur.execute(sql, params)
    except pymysql.err.IntegrityError as exc:
        if exc.args and exc.args[0] == _DUPLICATE_ENTRY:
            raise EmailTaken(str(data.get("email"))) from None
        raise
    return bool(cur.rowcount)


async def delete(cur: aiomysql.Cursor, customer_id: int) -> bool:
    await cur.execute("DELETE FROM customers WHERE id = %s", (customer_id,))
    return bool(cur.rowcount)


async def upsert_many(cur: aiomysql.Cursor, rows: Sequence[Sequence[Any]]) -> tuple[int, int]:
    """Upsert on email. Returns (inserted, updated): a new row counts 1 in the affected rows and an
    updated one 2 (the version always changes), also when both are in the same batch."""
    if not rows:
        return 0, 0
    await cur.executemany(UPSERT_SQL, rows)
    affected = cur.rowcount
    updated = affected - len(rows)
    return len(rows) - updated, updated


async def by_emails(cur: aiomysql.Cursor, emails: Sequence[str]) -> list[dict[str, Any]]:
    if not emails:
        return []
    marks = ", ".join(["%s"] * len(emails))
    await cur.execute(_SELECT + f" WHERE email IN ({marks})", list(emails))
    return [to_document(row) for row in await cur.fetchall()]


async def existing_emails(cur: aiomysql.Cursor, emails: Sequence[str]) -> set[str]:
    if not emails:
        return set()
    marks = ", ".join(["%s"] * len(emails))
    await cur.execute(f"SELECT email FROM customers WHERE email IN ({marks})", list(emails))
    return {row[0].lower() for row in await cur.fetchall()}

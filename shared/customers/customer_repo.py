"""SQL for the `customers` table. Plain parameterised queries; column names come from fixed lists."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiomysql
import orjson
import pymysql
from pymysql.converters import escape_string

from shared.customers.fields import (
    ATTRIBUTES,
    ATTRIBUTES_COLUMN,
    CUSTOMER_FIELDS,
    FIELDS,
    STORED_FIELDS,
    column_definition,
)

# id and version first: the order cache documents need (shared.customers.cache.encode_document), so no copy.
COLUMNS = ("id", "version", *STORED_FIELDS, "created_at", "updated_at")
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM customers"
_INSERT_COLUMNS = ", ".join(STORED_FIELDS)
_PLACEHOLDERS = ", ".join(["%s"] * len(STORED_FIELDS))
# VALUES(col) rather than the MySQL-only row alias, so the statement runs on MariaDB too. The version
# goes first: assignments run left to right, so it compares the stored values with the new ones
# before they are overwritten (byte for byte: the collation would call 'smith' equal to 'Smith').
# A row whose values are all the same is left as it is: no version bump, no updated_at change, and
# it counts 0 in the affected rows (new rows count 1, changed rows 2).
_UNCHANGED = " AND ".join(
    f"CAST(customers.{name} AS BINARY) <=> CAST(VALUES({name}) AS BINARY)" for name in STORED_FIELDS if name != "email"
)


# The upsert counts the rows that met an existing email in this session variable (reset before each
# upsert, read after it): rows - duplicates is then exactly how many it inserted, whatever another
# import committed since this transaction last read the table (a count taken before the upsert is
# not: two imports of one new email at once both counted it as new). `LEAST(..., 0)` adds 0.
_DUPLICATES = "@customer_upsert_duplicates"


def _on_duplicate(new_hash: str) -> str:
    """The upsert's update clause. Qualified names: in INSERT ... SELECT the staging table has the
    same columns. `row_hash` is assigned before the values are overwritten (the comparison needs the
    old ones): kept when nothing changes (so an unchanged row stays at 0 affected rows), else
    `new_hash` (the new digest, or NULL: "not known", never a stale one)."""
    return (
        f" ON DUPLICATE KEY UPDATE customers.version = customers.version + IF({_UNCHANGED}, 0, 1)"
        f" + LEAST({_DUPLICATES} := COALESCE({_DUPLICATES}, 0) + 1, 0), "
        f"customers.row_hash = IF({_UNCHANGED}, customers.row_hash, {new_hash}), "
        + ", ".join(f"customers.{name} = VALUES({name})" for name in STORED_FIELDS if name != "email")
    )


# Rows of STORED_FIELDS values; a changed row's row_hash becomes NULL (compared by value next time).
UPSERT_SQL = f"INSERT INTO customers ({_INSERT_COLUMNS}) VALUES ({_PLACEHOLDERS})" + _on_duplicate("NULL")
# The same with the row's hash (row_hash_hex(row)) as one more value: what the import's fallback path
# sends. (Hashes travel as hex: aiomysql cannot escape bytes with the PyMySQL this project pins.)
UPSERT_HASHED_SQL = (
    f"INSERT INTO customers ({_INSERT_COLUMNS}, row_hash) VALUES ({_PLACEHOLDERS}, UNHEX(%s))"
    + _on_duplicate("VALUES(row_hash)")
)
_DUPLICATE_ENTRY = 1062


class EmailTaken(Exception):
    def __init__(self, email: str) -> None:
        super().__init__(f"a customer with email {email!r} already exists")
        self.email = email


def _iso(value: Any) -> Any:
    # The same shape as DATE_FORMAT(..., '%Y-%m-%dT%H:%i:%s.%fZ') in the bulk path.
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def encode_attributes(attributes: Mapping[str, Any] | None) -> str | None:
    """The attributes as the row stores them: canonical JSON text (keys sorted, no spaces), so equal
    attributes are equal bytes (the row hash, the upsert's comparison); names without a value are left
    out, and no attributes at all is NULL."""
    if not attributes:
        return None
    kept = {name: value for name, value in attributes.items() if value is not None and value != ""}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode() if kept else None


def decode_attributes(text: str | bytes | None) -> dict[str, str]:
    return orjson.loads(text) if text else {}


def stored_values(data: Mapping[str, Any]) -> list[str | None]:
    """A customer's values in STORED_FIELDS order: the fields, then its attributes' JSON text."""
    return [*(data.get(name) for name in CUSTOMER_FIELDS), encode_attributes(data.get(ATTRIBUTES))]


def to_document(row: Sequence[Any]) -> dict[str, Any]:
    """The customer as the API returns it and as the cache holds it."""
    doc = dict(zip(COLUMNS, row, strict=True))
    doc[ATTRIBUTES] = decode_attributes(doc[ATTRIBUTES])
    doc["created_at"] = _iso(doc["created_at"])
    doc["updated_at"] = _iso(doc["updated_at"])
    return doc


async def get(cur: aiomysql.Cursor, customer_id: int, *, for_update: bool = False) -> dict[str, Any] | None:
    await cur.execute(_SELECT + " WHERE id = %s" + (" FOR UPDATE" if for_update else ""), (customer_id,))
    row = await cur.fetchone()
    return to_document(row) if row else None


def _like_pattern(search: str) -> str:
    """`search` as a LIKE pattern matching it anywhere, its wildcards taken literally."""
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def _page_after(cur: aiomysql.Cursor, select: str, *, after_id: int, limit: int, search: str | None) -> None:
    """Run `select` for the keyset page after `after_id`: names, email and company matching `search`
    (LIKE wildcards in it taken literally), by id. The caller fetches the rows."""
    if search:
        pattern = _like_pattern(search)
        await cur.execute(
            select + " WHERE id > %s AND (first_name LIKE %s OR last_name LIKE %s OR email LIKE %s"
            " OR company_name LIKE %s) ORDER BY id LIMIT %s",
            (after_id, pattern, pattern, pattern, pattern, limit),
        )
    else:
        await cur.execute(select + " WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))


async def list_page(cur: aiomysql.Cursor, *, after_id: int, limit: int, search: str | None) -> list[dict[str, Any]]:
    await _page_after(cur, _SELECT, after_id=after_id, limit=limit, search=search)
    return [to_document(row) for row in await cur.fetchall()]


# What GET /customers sorts by (`sort`, `-` for descending): a fixed list, so a client's name never
# reaches the SQL. The attributes (a JSON text) are not sortable.
SORT_KEYS: tuple[str, ...] = ("id", *CUSTOMER_FIELDS, "created_at", "updated_at")
_SEARCH = "(first_name LIKE %s OR last_name LIKE %s OR email LIKE %s OR company_name LIKE %s)"


def _keyset(key: str, descending: bool, after: tuple[Any, int] | None) -> tuple[str, list[Any]]:
    """The WHERE condition of the page after `after` (the last row's (value, id)) in the order
    (key, id), both ascending or both descending. NULL sorts as the smallest value: first when
    ascending, last when descending (as MySQL and MariaDB order them)."""
    if after is None:
        return "", []
    value, last_id = after
    if key == "id":
        return ("id < %s" if descending else "id > %s"), [last_id]
    if value is None:
        if descending:
            return f"({key} IS NULL AND id < %s)", [last_id]
        return f"(({key} IS NULL AND id > %s) OR {key} IS NOT NULL)", [last_id]
    if descending:
        return f"({key} < %s OR ({key} = %s AND id < %s) OR {key} IS NULL)", [value, value, last_id]
    return f"({key} > %s OR ({key} = %s AND id > %s))", [value, value, last_id]


async def sorted_page(
    cur: aiomysql.Cursor,
    *,
    key: str,
    descending: bool,
    after: tuple[Any, int] | None,
    limit: int,
    search: str | None,
) -> list[tuple[dict[str, Any], Any]]:
    """A keyset page of customers ordered by (key, id) (SORT_KEYS; both descending when asked) after
    the row `after` = (its key value, its id), matching `search` as list_page does: (document, the
    row's key value as the next cursor carries it) each. Rows inserted or deleted between pages never
    make a page repeat or skip a row that stayed."""
    if key not in SORT_KEYS:
        raise ValueError(f"not a sort key: {key!r}")
    conditions: list[str] = []
    args: list[Any] = []
    keyset, keyset_args = _keyset(key, descending, after)
    if keyset:
        conditions.append(keyset)
        args.extend(keyset_args)
    if search:
        conditions.append(_SEARCH)
        args.extend([_like_pattern(search)] * 4)
    direction = " DESC" if descending else ""
    order = f" ORDER BY id{direction}" if key == "id" else f" ORDER BY {key}{direction}, id{direction}"
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    # The key's raw value rides along (a timestamp as stored, not as the document writes it).
    await cur.execute(
        f"{_SELECT.replace(' FROM customers', '')}, {key} FROM customers{where}{order} LIMIT %s", [*args, limit]
    )
    return [(to_document(row[:-1]), row[-1]) for row in await cur.fetchall()]


async def count(cur: aiomysql.Cursor, *, search: str | None) -> int:
    """How many customers match `search` (all of them without one)."""
    if search:
        await cur.execute(f"SELECT COUNT(*) FROM customers WHERE {_SEARCH}", [_like_pattern(search)] * 4)
    else:
        await cur.execute("SELECT COUNT(*) FROM customers")
    (total,) = await cur.fetchone()
    return int(total)


async def insert(cur: aiomysql.Cursor, data: Mapping[str, Any]) -> int:
    values = stored_values(data)
    try:
        await cur.execute(
            f"INSERT INTO customers ({_INSERT_COLUMNS}, row_hash) VALUES ({_PLACEHOLDERS}, UNHEX(%s))",
            [*values, row_hash_hex(values)],
        )
    except pymysql.err.IntegrityError as exc:
        if exc.args and exc.args[0] == _DUPLICATE_ENTRY:
            raise EmailTaken(str(data.get("email"))) from None
        raise
    return int(cur.lastrowid)


async def update(cur: aiomysql.Cursor, customer_id: int, data: Mapping[str, Any], expected_version: int | None) -> bool:
    """Write every customer field and bump the version; False when the id (or version) did not match.
    The caller skips this when no value changes (the version bumps only on a change)."""
    assignments = ", ".join(f"{name} = %s" for name in STORED_FIELDS)
    params: list[Any] = stored_values(data)
    sql = f"UPDATE customers SET {assignments}, row_hash = UNHEX(%s), version = version + 1 WHERE id = %s"
    params.append(row_hash_hex(params))
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


async def _reset_duplicates(cur: aiomysql.Cursor) -> None:
    await cur.execute(f"SET {_DUPLICATES} = 0")


async def _new_rows(cur: aiomysql.Cursor, rows: int) -> int:
    """How many of the `rows` just upserted were inserted: those that met no existing email."""
    await cur.execute(f"SELECT {_DUPLICATES}")
    (duplicates,) = await cur.fetchone()
    return rows - int(duplicates or 0)


def split_outcomes(rows: int, new_emails: int, affected: int) -> tuple[int, int, int]:
    """(inserted, updated, unchanged) of an upsert of `rows` rows, `new_emails` of whose distinct
    emails were not in the table before it, from its affected-rows count (1 a new row, 2 a changed
    one, 0 an unchanged one). A repeated email counts as inserted once, then as updated or unchanged."""
    inserted = min(new_emails, rows)
    updated = max((affected - inserted) // 2, 0)
    return inserted, updated, max(rows - inserted - updated, 0)


async def upsert_many(
    cur: aiomysql.Cursor, rows: Sequence[Sequence[Any]], *, new_emails: int | None = None
) -> tuple[int, int, int]:
    """Upsert on email (rows in STORED_FIELDS order), storing each row's hash. Returns (inserted,
    updated, unchanged), counted by the upsert itself. `new_emails` is not used: a count the caller
    took before the upsert may be stale by then (see _DUPLICATES)."""
    if not rows:
        return 0, 0, 0
    await _reset_duplicates(cur)
    await cur.executemany(UPSERT_HASHED_SQL, [(*row, row_hash_hex(row)) for row in rows])
    affected = cur.rowcount
    return split_outcomes(len(rows), await _new_rows(cur, len(rows)), affected)


async def by_emails(cur: aiomysql.Cursor, emails: Sequence[str]) -> list[dict[str, Any]]:
    if not emails:
        return []
    marks = ", ".join(["%s"] * len(emails))
    await cur.execute(_SELECT + f" WHERE email IN ({marks})", list(emails))
    return [to_document(row) for row in await cur.fetchall()]


async def stamps_by_email(cur: aiomysql.Cursor, emails: Sequence[str]) -> list[tuple[str, int, int, str, str]]:
    """(email, id, version, created_at, updated_at) of the given emails, timestamps already as the API
    writes them: the import builds cache documents from these and the values it just wrote."""
    rows = await _stamps(cur, "email", emails)
    return [(row[0], int(row[1]), int(row[2]), row[3], row[4]) for row in rows]


async def update_many_by_id(cur: aiomysql.Cursor, rows: Sequence[tuple[int, Sequence[str | None], str]]) -> None:
    """(id, values in STORED_FIELDS order, their row hash hex) each: the customer's values replaced
    (its email too) and its version bumped, one statement a row, in the order given (an import
    matching on id: a later row may take an email an earlier one gave up)."""
    assignments = ", ".join(f"{name} = %s" for name in STORED_FIELDS)
    await cur.executemany(
        f"UPDATE customers SET {assignments}, row_hash = UNHEX(%s), version = version + 1 WHERE id = %s",
        [(*values, digest, customer_id) for customer_id, values, digest in rows],
    )


async def stamps_by_id(cur: aiomysql.Cursor, ids: Sequence[int]) -> list[tuple[int, int, str, str]]:
    """(id, version, created_at, updated_at) of the given customers, as stamps_by_email writes them."""
    return [(int(row[1]), int(row[2]), row[3], row[4]) for row in await _stamps(cur, "id", ids)]


async def _stamps(cur: aiomysql.Cursor, key: str, values: Sequence[Any]) -> Sequence[Sequence[Any]]:
    """(email, id, version, created_at, updated_at) rows of the customers whose `key` (email or id) is
    one of `values`: a locking read (see _LOCKING_READ)."""
    if not values:
        return []
    marks = ", ".join(["%s"] * len(values))
    await cur.execute(
        f"SELECT email, id, version, DATE_FORMAT(created_at, {_TIMESTAMP_ARG}),"
        f" DATE_FORMAT(updated_at, {_TIMESTAMP_ARG}) FROM customers WHERE {key} IN ({marks})" + _LOCKING_READ,
        list(values),
    )
    return list(await cur.fetchall())


async def existing_emails(cur: aiomysql.Cursor, emails: Sequence[str]) -> set[str]:
    if not emails:
        return set()
    marks = ", ".join(["%s"] * len(emails))
    await cur.execute(f"SELECT email FROM customers WHERE email IN ({marks})", list(emails))
    return {row[0].lower() for row in await cur.fetchall()}


# -- bulk import through a staging table ------------------------------------------------------------
# LOAD DATA LOCAL INFILE into a per-connection temporary table, then one INSERT ... SELECT upsert:
# about twice the rows/s of a multi-row INSERT, and no per-value escaping in Python. Servers that
# refuse LOCAL INFILE (MySQL 8 ships with local_infile=OFF) get the executemany path instead.
_STAGE_COLUMNS = ", ".join(STORED_FIELDS)
_STAGE_DDL = (
    "CREATE TEMPORARY TABLE customer_stage (seq INT UNSIGNED NOT NULL PRIMARY KEY, "
    + ", ".join([*(column_definition(field) for field in FIELDS), ATTRIBUTES_COLUMN])
    + ", row_hash BINARY(16) NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
)
_STAGE_DROP = "DROP TEMPORARY TABLE IF EXISTS customer_stage"
_STAGE_LOAD = (
    "LOAD DATA LOCAL INFILE %s INTO TABLE customer_stage CHARACTER SET utf8mb4"
    " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
    f" (seq, {_STAGE_COLUMNS}, @row_hash) SET row_hash = UNHEX(@row_hash)"
)
_STAGE_UPSERT = (
    f"INSERT INTO customers ({_INSERT_COLUMNS}, row_hash) SELECT {_STAGE_COLUMNS}, row_hash"
    " FROM customer_stage ORDER BY seq" + _on_duplicate("VALUES(row_hash)")
)
# Reading back what an upsert wrote: a locking read, which sees the rows as they are now. A plain read
# sees the transaction's snapshot, taken at its first read: a row another import committed after it,
# which the upsert then met and left unchanged, is not in it ("read back 0 of 1 staged rows"), and a
# row it left alone may show an older version. The upsert holds these rows' locks already.
_LOCKING_READ = " LOCK IN SHARE MODE"
_TIMESTAMP = "'%Y-%m-%dT%H:%i:%s.%fZ'"
_TIMESTAMP_ARG = _TIMESTAMP.replace("%", "%%")  # in a statement with parameters, % is doubled
# One row holding every stamp: parsing 2,000 result rows in pure Python costs more than the query.
# The join order and index are forced: with stale statistics (say, right after the table was emptied)
# MariaDB would scan `customers` once per staged row, a 10-16 s stall on a 100k-row table.
# The pool sets group_concat_max_len high enough for a batch (MySQL's default is 1 KB).
_STAGE_STAMPS = (
    "SELECT GROUP_CONCAT(CONCAT_WS(',', s.seq, c.id, c.version,"
    f" DATE_FORMAT(c.created_at, {_TIMESTAMP}), DATE_FORMAT(c.updated_at, {_TIMESTAMP})) SEPARATOR ';')"
    f", {_DUPLICATES} FROM customer_stage s STRAIGHT_JOIN customers c FORCE INDEX (uq_customers_email)"
    " ON c.email = s.email" + _LOCKING_READ
)
_LOCAL_INFILE_REFUSED = {1148, 2068, 3948, 3950, 4166}
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


# aiomysql sends a LOCAL file in packets of up to 16 MB, which a server refuses beyond its
# max_allowed_packet (MariaDB's default is 16 MB, older servers' 4 MB): a batch's staging file goes in
# pieces below that (one piece for any batch of ordinary rows).
LOAD_PIECE_BYTES = 4 * 1024 * 1024


def load_pieces(data: bytes, limit: int = LOAD_PIECE_BYTES) -> list[bytes]:
    """A staging file's contents cut at line ends into pieces of at most `limit` bytes (a longer line
    is a piece of its own)."""
    pieces, start = [], 0
    while len(data) - start > limit:
        end = data.rfind(b"\n", start, start + limit)
        if end < start:
            end = data.index(b"\n", start + limit)
        pieces.append(data[start : end + 1])
        start = end + 1
    if start < len(data):
        pieces.append(data[start:])
    return pieces


class LocalInfileRefused(Exception):
    """The server does not accept LOAD DATA LOCAL INFILE."""


_TSV_SPECIAL = "\\\t\n\r\0"
EMAIL_AT = STORED_FIELDS.index("email")


def _holds_any(text: str, characters: str) -> bool:
    # A substring test per character (a memchr-like scan) is ~40x faster than a character-class regex.
    return any(character in text for character in characters)


def needs_tsv_escape(text: str) -> bool:
    return _holds_any(text, _TSV_SPECIAL)


def tsv_escape(value: str) -> str:
    return value.translate(_TSV_ESCAPES)


def tsv_values(row: Sequence[str | None]) -> str:
    """A row's values as one line of the staging file, without the sequence number and the hash:
    tab-separated, `\\N` for NULL, MySQL's escapes. Also what the row's hash digests (an unambiguous
    encoding: a NULL and the text `\\N` differ)."""
    # Escape only the rare row that needs it: one search a row instead of a translate a value.
    if needs_tsv_escape("".join(value for value in row if value is not None)):
        return "\t".join("\\N" if value is None else value.translate(_TSV_ESCAPES) for value in row)
    return "\t".join("\\N" if value is None else value for value in row)


def hash_of_tsv(values: str) -> str:
    """The row hash (hex) of a row whose tsv_values are `values`."""
    return hashlib.blake2b(values.encode("utf-8"), digest_size=16).hexdigest()


def row_hash_hex(row: Sequence[str | None]) -> str:
    """The one definition of a row's hash: 128 bits of BLAKE2b over its staging-file encoding, as
    lower-case hex. `customers.row_hash` holds its bytes for every row written since migration 7
    (NULL: not known, so compared by value)."""
    return hash_of_tsv(tsv_values(row))


def stage_line(seq: int, row: Sequence[str | None]) -> tuple[str, str]:
    """(the staging file's line for this row, without its newline; its hash in hex)."""
    values = tsv_values(row)
    digest = hash_of_tsv(values)
    return f"{seq}\t{values}\t{digest}", digest


def stage_text(rows: Sequence[Sequence[str | None]]) -> str:
    """The staging file's contents for these rows (pure: an import builds it in its parser process)."""
    return "".join(stage_line(seq, row)[0] + "\n" for seq, row in enumerate(rows))


def values_of_line(line: str) -> list[str | None]:
    """The values a staging line holds (stage_line's inverse): what the cache documents of the rows
    an import wrote are built from."""
    fields = line[line.index("\t") + 1 : line.rindex("\t")].split("\t")
    if "\\" not in line:
        return [None if f == "\\N" else f for f in fields]
    return [None if f == "\\N" else _unescape(f) if "\\" in f else f for f in fields]


_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "0": "\0"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _UNESCAPES.get(m.group(1), m.group(1)), text)


# -- what the table holds of a batch's emails ------------------------------------------------------
# One row of JSON for the whole batch (pure-Python result rows cost more than the query); the values
# only for rows without a hash, which are compared by value.
_KNOWN_SELECT = (
    "SELECT JSON_ARRAYAGG(JSON_ARRAY(email, id, version, LOWER(HEX(row_hash)), IF(row_hash IS NULL, JSON_ARRAY("
    + _STAGE_COLUMNS
    + "), NULL))) FROM customers"
)
# The same with every row's values (an import keeping stored values for its empty cells needs them).
_KNOWN_SELECT_VALUES = (
    "SELECT JSON_ARRAYAGG(JSON_ARRAY(email, id, version, LOWER(HEX(row_hash)), JSON_ARRAY("
    + _STAGE_COLUMNS
    + "))) FROM customers"
)
_BY_EMAIL = " WHERE email IN ("


def known_query(emails: Sequence[str], *, ids: Sequence[int] = (), with_values: bool = False) -> str:
    """The statement known() runs for these emails (and customer ids: an import matching on id),
    escaped here (pure: an import's parser process builds it, so the event loop does not quote
    thousands of values)."""
    select = _KNOWN_SELECT_VALUES if with_values else _KNOWN_SELECT
    query = select + _by_email(emails)
    if ids:
        query += " OR id IN (" + ", ".join(str(int(i)) for i in ids) + ")"
    return query


# What escape_string changes; a batch's emails rarely hold any (a quote is allowed before the @).
_SQL_SPECIAL = "'\"\\\0\n\r\x1a"


def _by_email(emails: Sequence[str]) -> str:
    if emails and not _holds_any("".join(emails), _SQL_SPECIAL):
        # Nothing to escape in any of them: one join (escaping each was ~0.35 us a row of the parser).
        return _BY_EMAIL + "'" + "', '".join(emails) + "')"
    return _BY_EMAIL + ", ".join("'" + escape_string(email) + "'" for email in emails) + ")"


# A row of known()'s answer: (email, id, version, row_hash hex or None, stored values or None).
KnownRow = tuple[str, int, int, str | None, list[str | None] | None]
KnownRows = list[KnownRow]


async def known(cur: aiomysql.Cursor, query: str) -> KnownRows:
    """(email, id, version, row_hash hex or None, values when the hash is None) of each stored
    customer that `query` (from known_query) names."""
    await cur.execute(query)
    (packed,) = await cur.fetchone()
    if not packed:
        return []
    found: KnownRows = orjson.loads(packed)
    return found


async def known_by_id_range(
    cur: aiomysql.Cursor, query: str, emails: Sequence[str], hashes: Sequence[str], first: int, last: int
) -> KnownRows:
    """known(query) for a batch (its rows' emails and hashes) whose customers are likely those with
    ids first .. last (a file imported again in the order it created them): the rows of that id
    range are read (one scan of the primary key instead of an index dive per email under the
    email's collation, about half the server's CPU), the ones with the batch's emails kept, and only
    the emails not met there asked by email. The same rows as known(query), an email met byte for
    byte being the row the unique index holds for it; but for one thing: where known_query asked for
    every row's stored values (blank_cells=keep), a row whose hash is each of its email's rows' in
    the batch comes without them (unchanged, nothing is merged into it: the range is read without
    the values, ~400 bytes of JSON a row, and the others asked again with them). `query` is
    known_query's by email alone (no ids)."""
    select = query[: query.index(_BY_EMAIL)]
    found = await known(cur, f"{_KNOWN_SELECT} WHERE id BETWEEN {int(first)} AND {int(last)}")
    wanted = set(emails)
    found = [row for row in found if row[0] in wanted]
    if select != _KNOWN_SELECT:
        stored = {row[0]: row[3] for row in found}
        changed = {email for email, digest in zip(emails, hashes, strict=True) if stored.get(email) != digest}
        found = [row for row in found if row[0] not in changed]
    if len(found) < len(wanted):
        met = {row[0] for row in found}
        found += await known(cur, select + _by_email([email for email in wanted if email not in met]))
    return found


async def store_hashes(cur: aiomysql.Cursor, hashes: Sequence[tuple[int, str]]) -> None:
    """Record (id, hash hex) for rows found equal by value; updated_at stays as it is."""
    await cur.executemany(
        "UPDATE customers SET row_hash = UNHEX(%s), updated_at = updated_at WHERE id = %s AND row_hash IS NULL",
        [(digest, customer_id) for customer_id, digest in hashes],
    )


async def bulk_upsert(
    cur: aiomysql.Cursor, rows: Sequence[Sequence[str | None]], staged: str | None = None
) -> tuple[tuple[int, int, int], dict[int, tuple[int, int, str, str]]]:
    """Upsert rows (STORED_FIELDS order) inside the caller's transaction. Returns ((inserted,
    updated, unchanged), {row index: (id, version, created_at, updated_at)}) for building cache documents: read
    in the same transaction, while the upsert holds the rows' locks. `staged` is stage_text(rows)
    when the caller already built it."""
    if not rows:
        return (0, 0, 0), {}
    data = stage_text(rows) if staged is None else staged
    return await upsert_staged(cur, data.encode("utf-8"), len(rows))


async def load_stage(cur: aiomysql.Cursor, data: bytes, count: int) -> None:
    """The staging table `customer_stage` (the connection's own, temporary) emptied and filled with a
    staging file's contents (`count` lines from stage_line). Also outside a transaction: the next
    batch's rows are loaded so while the one before it commits (upsert_staged's `preloaded`)."""
    fd, path = tempfile.mkstemp(prefix="customer-stage-", suffix=".tsv")
    os.close(fd)
    try:
        # Made anew rather than emptied: DELETE costs ~1.3 us of mysqld a row and leaves the rows it
        # marks for the next LOAD DATA to step over (~1 us a row more); dropping and creating a
        # TEMPORARY table costs ~0.3 ms a batch and, unlike TRUNCATE, never commits the transaction.
        await cur.execute(_STAGE_DROP)
        await cur.execute(_STAGE_DDL)  # the table lives as long as the connection, or until the next load
        loaded = 0
        for piece in load_pieces(data):
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
                fh.write(piece)
            try:
                await cur.execute(_STAGE_LOAD, (path,))
            except pymysql.err.MySQLError as exc:
                if exc.args and exc.args[0] in _LOCAL_INFILE_REFUSED:
                    raise LocalInfileRefused(str(exc)) from exc
                raise
            loaded += cur.rowcount
    finally:
        os.unlink(path)
    if loaded != count:
        raise RuntimeError(f"staging loaded {loaded} of {count} rows")


async def upsert_staged(
    cur: aiomysql.Cursor,
    data: bytes,
    count: int,
    *,
    new_emails: int | None = None,
    before_upsert: Callable[[aiomysql.Cursor], Awaitable[object]] | None = None,
    read_stamps: bool = True,
    preloaded: bool = False,
) -> tuple[tuple[int, int, int], dict[int, tuple[int, int, str, str]]]:
    """bulk_upsert of a staging file's contents already built (`count` lines from stage_line, any
    sequence numbers). The outcomes are counted by the upsert itself; `new_emails` is not used (a
    count taken before the upsert may be stale by then: see _DUPLICATES). Stamps are keyed by the
    lines' numbers (none without `read_stamps`: ~5 us of mysqld a row less). `before_upsert` runs
    once the staging table `customer_stage` holds the rows. `preloaded`: load_stage put exactly
    these lines there already, on this connection."""
    if not count:
        return (0, 0, 0), {}
    if not preloaded:
        await load_stage(cur, data, count)
    if before_upsert is not None:
        await before_upsert(cur)
    await _reset_duplicates(cur)
    await cur.execute(_STAGE_UPSERT)
    affected = cur.rowcount
    if not read_stamps:
        return split_outcomes(count, await _new_rows(cur, count), affected), {}
    await cur.execute(_STAGE_STAMPS)
    (packed, duplicates) = await cur.fetchone()
    outcomes = split_outcomes(count, count - int(duplicates or 0), affected)
    stamps = {}
    for record in packed.split(";") if packed else ():
        seq, customer_id, version, created_at, updated_at = record.split(",")
        stamps[int(seq)] = (int(customer_id), int(version), created_at, updated_at)
    if len(stamps) != count:
        raise RuntimeError(f"read back {len(stamps)} of {count} staged rows")
    return outcomes, stamps


async def first_id_if_numbered_consecutively(cur: aiomysql.Cursor) -> int | None:
    """The id the connection's last INSERT gave its first new row, if the server numbers the rows of
    one INSERT ... SELECT consecutively (else None): InnoDB holds the table's AUTO-INC lock for the
    whole statement in lock modes 0 and 1 (MariaDB's default is 1; MySQL 8's is 2, "interleaved",
    where the rows of concurrent inserts mix), counting by 1 (a Galera cluster counts by its size).
    Asked with the id, so a server restarted with other settings is seen at once."""
    await cur.execute("SELECT LAST_INSERT_ID(), @@innodb_autoinc_lock_mode, @@auto_increment_increment")
    first, mode, increment = await cur.fetchone()
    return int(first) if int(mode) <= 1 and int(increment) == 1 else None


# -- export ---------------------------------------------------------------------------------------
# The columns of an export file: the customer's fields as an import reads them, then the read-only
# ones. Rows come back as tuples in this order, the timestamps already as the API writes them, and
# one more value: the attributes' JSON text (shared.customers.exports spreads it into a column a name).
EXPORT_COLUMNS = (*CUSTOMER_FIELDS, "id", "version", "created_at", "updated_at")
EXPORT_ID_INDEX = EXPORT_COLUMNS.index("id")
_EXPORT_SELECT = (
    "SELECT "
    + ", ".join(CUSTOMER_FIELDS)
    + f", id, version, DATE_FORMAT(created_at, {_TIMESTAMP_ARG}), DATE_FORMAT(updated_at, {_TIMESTAMP_ARG}),"
    f" {ATTRIBUTES} FROM customers"
)


async def export_page(
    cur: aiomysql.Cursor, *, after_id: int, limit: int, search: str | None
) -> Sequence[tuple[Any, ...]]:
    """One keyset page of an export: the customers with id > after_id, by id, at most `limit`, matching
    `search` exactly as list_page does. Plain tuples in EXPORT_COLUMNS order (no dicts, no datetime
    objects: an export reads every row, and these are the cheapest shape to read and write)."""
    await _page_after(cur, _EXPORT_SELECT, after_id=after_id, limit=limit, search=search)
    rows: Sequence[tuple[Any, ...]] = await cur.fetchall()
    return rows


async def attribute_names(cur: aiomysql.Cursor, *, search: str | None) -> list[str]:
    """Every attribute name the customers matching `search` hold, sorted: an export's columns. One
    row per distinct set of names (few), not one per customer."""
    select = f"SELECT DISTINCT JSON_KEYS({ATTRIBUTES}) AS names FROM customers"
    if search:
        pattern = _like_pattern(search)
        await cur.execute(
            select + f" WHERE {ATTRIBUTES} IS NOT NULL AND (first_name LIKE %s OR last_name LIKE %s"
            " OR email LIKE %s OR company_name LIKE %s)",
            (pattern, pattern, pattern, pattern),
        )
    else:
        await cur.execute(select + f" WHERE {ATTRIBUTES} IS NOT NULL")
    names: set[str] = set()
    for (packed,) in await cur.fetchall():
        if packed:
            names.update(orjson.loads(packed))
    return sorted(names)


# -- a revert's and a bulk delete's batches ---------------------------------------------------------
async def get_many(cur: aiomysql.Cursor, ids: Sequence[int], *, for_update: bool = False) -> dict[int, dict[str, Any]]:
    """The stored customers of these ids (those that exist), by id; locked for the transaction."""
    if not ids:
        return {}
    marks = ", ".join(["%s"] * len(ids))
    await cur.execute(
        _SELECT + f" WHERE id IN ({marks}) ORDER BY id" + (" FOR UPDATE" if for_update else ""), list(ids)
    )
    return {int(row[0]): to_document(row) for row in await cur.fetchall()}


async def delete_many(cur: aiomysql.Cursor, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    marks = ", ".join(["%s"] * len(ids))
    await cur.execute(f"DELETE FROM customers WHERE id IN ({marks})", list(ids))
    return int(cur.rowcount)


async def insert_with_id(cur: aiomysql.Cursor, customer_id: int, version: int, data: Mapping[str, Any]) -> None:
    """Put a deleted customer back under its own id, at `version` (a revert of a bulk delete). Raises
    EmailTaken when another customer holds its email now."""
    new_id = await insert(cur, data)
    await cur.execute("UPDATE customers SET id = %s, version = %s WHERE id = %s", (customer_id, version, new_id))


def _matching(search: str | None) -> tuple[str, list[Any]]:
    """The WHERE condition of a search (as GET /customers?q= matches), and its parameters."""
    if not search:
        return "TRUE", []
    pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return (
        "(first_name LIKE %s OR last_name LIKE %s OR email LIKE %s OR company_name LIKE %s)",
        [pattern, pattern, pattern, pattern],
    )


async def count_matching(cur: aiomysql.Cursor, search: str | None) -> int:
    condition, args = _matching(search)
    await cur.execute(f"SELECT COUNT(*) FROM customers WHERE {condition}", args)
    (count,) = await cur.fetchone()
    return int(count)


async def matching_for_update(
    cur: aiomysql.Cursor, search: str | None, *, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """The next `limit` customers matching `search` with id > after_id, by id, locked."""
    condition, args = _matching(search)
    await cur.execute(
        _SELECT + f" WHERE id > %s AND {condition} ORDER BY id LIMIT %s FOR UPDATE", [after_id, *args, limit]
    )
    return [to_document(row) for row in await cur.fetchall()]


async def emails_of(cur: aiomysql.Cursor, ids: Sequence[int]) -> dict[int, str]:
    """The stored email of each of these ids that exists."""
    if not ids:
        return {}
    marks = ", ".join(["%s"] * len(ids))
    await cur.execute(f"SELECT id, email FROM customers WHERE id IN ({marks})", list(ids))
    return {int(row[0]): row[1] for row in await cur.fetchall()}

"""The import's bulk upsert (customer_repo.bulk_upsert: LOAD DATA LOCAL into the staging table, then one
INSERT ... SELECT) against the real MariaDB."""

from __future__ import annotations

import aiomysql

from shared.customers import customer_repo
from shared.infra.db import connection, transaction


def test_a_staging_file_is_cut_at_line_ends_into_pieces_below_the_limit() -> None:
    data = b"".join(b"%d\t%s\n" % (i, b"v" * (i % 7)) for i in range(1000))
    pieces = customer_repo.load_pieces(data, limit=100)
    assert b"".join(pieces) == data
    assert all(len(piece) <= 100 and piece.endswith(b"\n") for piece in pieces)
    assert customer_repo.load_pieces(b"a\n" + b"x" * 300 + b"\nb\n", limit=100) == [b"a\n", b"x" * 300 + b"\n", b"b\n"]
    assert customer_repo.load_pieces(data) == [data]  # an ordinary batch: one piece


async def test_a_batch_bigger_than_a_packet_is_upserted_whole(pool: aiomysql.Pool, clean: None) -> None:
    """~18 MB of rows (a long attribute each): more than MariaDB's default max_allowed_packet (16 MB),
    which a staging file sent whole would exceed (the server drops the connection)."""
    notes = "n" * 60_000
    rows = [
        customer_repo.stored_values(
            {"email": f"big{i}@example.com", "first_name": f"Big{i}", "attributes": {"notes": notes}}
        )
        for i in range(300)
    ]
    async with transaction(pool) as cur:
        outcomes, stamps = await customer_repo.bulk_upsert(cur, rows)
    assert outcomes == (300, 0, 0) and len(stamps) == 300
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("SELECT COUNT(*), MIN(LENGTH(attributes)) FROM customers WHERE email LIKE 'big%%'")
        count, shortest = await cur.fetchone()
    assert count == 300 and shortest > 60_000

"""Reading the test database directly, to check what an import or a request left there."""

from __future__ import annotations

import aiomysql

from shared.infra.db import connection


async def scalar(pool: aiomysql.Pool, sql: str, *args: object) -> object:
    """The first column of the first row of a query."""
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute(sql, args)
        row = await cur.fetchone()
    return row[0]

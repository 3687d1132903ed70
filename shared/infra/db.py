"""MySQL connection pool, database creation and migrations (applied at start-up under a lock)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import aiomysql
import pymysql

from shared.config import MySQLConfig

log = logging.getLogger(__name__)

# Notes the server sends that are not worth a line: "Table '…' already exists" for the CREATE … IF NOT
# EXISTS this code repeats on purpose (the snapshot table lives as long as its connection), "Unknown
# table" for the DROP … IF EXISTS before a connection's first staging table, and the note that a
# savepoint's rollback could not undo a temporary table's changes (the staging tables are made anew or
# emptied before each use). Filtered here, once: warnings.catch_warnings() around an `await` is not
# safe with other tasks (one leaving it restores the filters while another's statement runs).
QUIET_SERVER_NOTES = (
    r"Table '\w+' already exists",
    r"Unknown table '[^']+'",
    r"Some non-transactional changed tables couldn't be rolled back",
)
for _note in QUIET_SERVER_NOTES:
    warnings.filterwarnings("ignore", message=_note, category=pymysql.Warning)
T = TypeVar("T")

# Errors that mean "the server or the connection is gone", as opposed to a bad statement.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pymysql.err.OperationalError,
    pymysql.err.InterfaceError,
    ConnectionError,
    OSError,
)


class DatabaseUnavailable(Exception):
    """MySQL could not be reached or the connection broke mid-statement."""


class OutcomeUnknown(DatabaseUnavailable):
    """MySQL stopped answering after a COMMIT was sent (or while a bounded call waited): the
    transaction may or may not have been applied."""


MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "customers, import_jobs, import_errors",
        [
            """
            CREATE TABLE IF NOT EXISTS customers (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                first_name VARCHAR(100) NULL,
                last_name VARCHAR(100) NULL,
                company_name VARCHAR(100) NULL,
                address VARCHAR(255) NULL,
                city VARCHAR(100) NULL,
                county VARCHAR(100) NULL,
                postal VARCHAR(20) NULL,
                phone VARCHAR(20) NULL,
                email VARCHAR(100) NOT NULL,
                web VARCHAR(100) NULL,
                version INT UNSIGNED NOT NULL DEFAULT 1,
                created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
                UNIQUE KEY uq_customers_email (email)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """,
            """
            CREATE TABLE IF NOT EXISTS import_jobs (
                id CHAR(36) NOT NULL PRIMARY KEY,
                filename VARCHAR(255) NOT NULL,
                file_kind VARCHAR(8) NOT NULL,
                size_bytes BIGINT UNSIGNED NOT NULL,
                sha256 CHAR(64) NOT NULL,
                dry_run TINYINT(1) NOT NULL DEFAULT 0,
                status VARCHAR(16) NOT NULL,
                rows_read BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_inserted BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_updated BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_invalid BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_total_estimate BIGINT UNSIGNED NULL,
                checkpoint_row BIGINT UNSIGNED NOT NULL DEFAULT 0,
                errors_stored INT UNSIGNED NOT NULL DEFAULT 0,
                reader VARCHAR(16) NULL,
                warnings TEXT NULL,
                error TEXT NULL,
                attempts INT UNSIGNED NOT NULL DEFAULT 0,
                lease_owner VARCHAR(64) NULL,
                lease_expires_at TIMESTAMP(6) NULL,
                created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                started_at TIMESTAMP(6) NULL,
                finished_at TIMESTAMP(6) NULL,
                updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
                KEY ix_import_jobs_created (created_at, id),
                KEY ix_import_jobs_status (status, lease_expires_at)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """,
            """
            CREATE TABLE IF NOT EXISTS import_errors (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                job_id CHAR(36) NOT NULL,
                excel_row BIGINT UNSIGNED NOT NULL,
                column_name VARCHAR(64) NULL,
                message VARCHAR(512) NOT NULL,
                KEY ix_import_errors_job (job_id, id),
                CONSTRAINT fk_import_errors_job FOREIGN KEY (job_id) REFERENCES import_jobs (id)
                    ON DELETE CASCADE
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """,
        ],
    ),
    (
        2,
        "rows_unchanged, request_id, error_rows_stored on import_jobs",
        [
            """
            ALTER TABLE import_jobs
                ADD COLUMN rows_unchanged BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER rows_updated,
                ADD COLUMN error_rows_stored INT UNSIGNED NOT NULL DEFAULT 0 AFTER errors_stored,
                ADD COLUMN request_id VARCHAR(128) NULL AFTER attempts
            """,
        ],
    ),
    (
        3,
        "import options, the sheet/encoding/header used, rejected rows",
        [
            """
            ALTER TABLE import_jobs
                ADD COLUMN options TEXT NULL AFTER dry_run,
                ADD COLUMN sheet VARCHAR(255) NULL AFTER reader,
                ADD COLUMN encoding VARCHAR(40) NULL AFTER sheet,
                ADD COLUMN header_row INT UNSIGNED NULL AFTER encoding,
                ADD COLUMN source_header TEXT NULL AFTER header_row
            """,
            """
            CREATE TABLE IF NOT EXISTS import_rejected_rows (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                job_id CHAR(36) NOT NULL,
                excel_row BIGINT UNSIGNED NOT NULL,
                cells MEDIUMTEXT NOT NULL,
                errors TEXT NOT NULL,
                KEY ix_import_rejected_job (job_id, id),
                CONSTRAINT fk_import_rejected_job FOREIGN KEY (job_id) REFERENCES import_jobs (id)
                    ON DELETE CASCADE
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """,
        ],
    ),
    (
        4,
        "webhooks: callback_url and the delivery's state",
        [
            """
            ALTER TABLE import_jobs
                ADD COLUMN callback_url VARCHAR(2048) NULL AFTER options,
                ADD COLUMN webhook TEXT NULL AFTER callback_url,
                ADD COLUMN webhook_due_at TIMESTAMP(6) NULL AFTER webhook,
                ADD KEY ix_import_jobs_webhook (webhook_due_at)
            """,
        ],
    ),
    (
        5,
        "uploaded_by: the name of the API key that uploaded the job",
        [
            """
            ALTER TABLE import_jobs
                ADD COLUMN uploaded_by VARCHAR(64) NULL AFTER request_id
            """,
        ],
    ),
    (
        6,
        "source_header as MEDIUMTEXT: a header of 16,384 columns overflows TEXT",
        [
            """
            ALTER TABLE import_jobs
                MODIFY COLUMN source_header MEDIUMTEXT NULL
            """,
        ],
    ),
    (
        7,
        "row_hash on customers: a digest of the row's values, so an import skips unchanged rows",
        [
            # NULL means "not known": the import compares such a row by its values, then stores it.
            "ALTER TABLE customers ADD COLUMN row_hash BINARY(16) NULL AFTER web",
        ],
    ),
    (
        8,
        "import_job_parts: one big file's parts, each imported by any worker under its own lease",
        [
            """
            CREATE TABLE IF NOT EXISTS import_job_parts (
                job_id CHAR(36) NOT NULL,
                part INT UNSIGNED NOT NULL,
                parts INT UNSIGNED NOT NULL,
                status VARCHAR(16) NOT NULL,
                rows_read BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_inserted BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_updated BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_unchanged BIGINT UNSIGNED NOT NULL DEFAULT 0,
                rows_invalid BIGINT UNSIGNED NOT NULL DEFAULT 0,
                checkpoint_row BIGINT UNSIGNED NOT NULL DEFAULT 0,
                attempts INT UNSIGNED NOT NULL DEFAULT 0,
                worker VARCHAR(64) NULL,
                lease_owner VARCHAR(64) NULL,
                lease_expires_at TIMESTAMP(6) NULL,
                created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                started_at TIMESTAMP(6) NULL,
                finished_at TIMESTAMP(6) NULL,
                PRIMARY KEY (job_id, part),
                KEY ix_import_job_parts_status (status, lease_expires_at),
                CONSTRAINT fk_import_job_parts_job FOREIGN KEY (job_id) REFERENCES import_jobs (id)
                    ON DELETE CASCADE
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """,
        ],
    ),
    (
        9,
        "customers: only email required, room for real data (phone 50, email 254, web 255), country, attributes;"
        " import_errors: the field and the value",
        [
            # attributes: canonical JSON text (shared.customers.fields.ATTRIBUTES), not MariaDB's JSON alias.
            """
            ALTER TABLE customers
                MODIFY COLUMN phone VARCHAR(50) NULL,
                MODIFY COLUMN email VARCHAR(254) NOT NULL,
                MODIFY COLUMN web VARCHAR(255) NULL,
                ADD COLUMN country VARCHAR(100) NULL AFTER postal,
                ADD COLUMN attributes MEDIUMTEXT NULL AFTER web
            """,
            # The row hash digests every stored value; a new column changes what it covers, so every
            # stored hash is "not known" (compared by value, then stored again) from here on.
            "UPDATE customers SET row_hash = NULL, updated_at = updated_at",
            # column_name: the column as the file shows it (header text, up to 255; a letter without one).
            """
            ALTER TABLE import_errors
                MODIFY COLUMN column_name VARCHAR(255) NULL,
                ADD COLUMN field_name VARCHAR(80) NULL AFTER column_name,
                ADD COLUMN cell_value VARCHAR(100) NULL AFTER field_name
            """,
        ],
    ),
    (
        10,
        "import_mappings: the mapping an import started with, remembered under the file's header",
        [
            """
            CREATE TABLE IF NOT EXISTS import_mappings (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                header_sha256 CHAR(64) NOT NULL,
                header MEDIUMTEXT NOT NULL,
                mapping MEDIUMTEXT NOT NULL,
                filename VARCHAR(255) NOT NULL,
                job_id CHAR(36) NULL,
                created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                last_used TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                UNIQUE KEY uq_import_mappings_header (header_sha256),
                KEY ix_import_mappings_used (last_used, id)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """,
        ],
    ),
    (
        11,
        "customer_history: every change of a customer (who, when, the source, the fields old and new)",
        [
            # No foreign key to customers: a deleted customer's history stays readable. `actor` is the
            # API key's name (BY is a reserved word); `changes` JSON text {field: [old, new]};
            # `version` the customer's version after the change (a revert of a delete restores it + 1).
            """
            CREATE TABLE IF NOT EXISTS customer_history (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                customer_id BIGINT UNSIGNED NOT NULL,
                at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                action VARCHAR(10) NOT NULL,
                actor VARCHAR(64) NULL,
                source_kind VARCHAR(10) NOT NULL,
                job_id CHAR(36) NULL,
                request_id VARCHAR(128) NULL,
                version INT UNSIGNED NULL,
                changes MEDIUMTEXT NOT NULL,
                KEY ix_customer_history_customer (customer_id, id),
                KEY ix_customer_history_job (job_id, customer_id, id),
                KEY ix_customer_history_at (at)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """,
        ],
    ),
    (
        12,
        "import_jobs: kind (import, revert, delete), what a revert undoes, reverted_by, a job's parameters,"
        " rows_deleted and rows_restored",
        [
            """
            ALTER TABLE import_jobs
                ADD COLUMN kind VARCHAR(8) NOT NULL DEFAULT 'import' AFTER id,
                ADD COLUMN reverts CHAR(36) NULL AFTER kind,
                ADD COLUMN reverted_by CHAR(36) NULL AFTER reverts,
                ADD COLUMN params TEXT NULL AFTER options,
                ADD COLUMN rows_deleted BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER rows_invalid,
                ADD COLUMN rows_restored BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER rows_deleted,
                ADD KEY ix_import_jobs_reverts (reverts)
            """,
        ],
    ),
    (
        14,
        "rows_skipped on import_jobs and import_job_parts: rows an import's mode left alone",
        [
            "ALTER TABLE import_jobs ADD COLUMN rows_skipped BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER rows_unchanged",
            "ALTER TABLE import_job_parts ADD COLUMN rows_skipped BIGINT UNSIGNED NOT NULL DEFAULT 0"
            " AFTER rows_unchanged",
        ],
    ),
    (
        15,
        "customer_history: cheaper for imports to write: no index on `at` (retention goes by id ranges), and"
        " job_id in ASCII compared byte for byte (a UUID; its index cost ~3 us a row under utf8mb4_unicode_ci)",
        [
            "ALTER TABLE customer_history DROP INDEX ix_customer_history_at,"
            " MODIFY job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL"
        ],
    ),
]


def _connect_kwargs(cfg: MySQLConfig) -> dict[str, object]:
    return {
        "host": cfg.host,
        "port": cfg.port,
        "user": cfg.user,
        "password": cfg.password,
        "charset": "utf8mb4",
        "connect_timeout": 5,
    }


async def create_pool(cfg: MySQLConfig, maxsize: int = 10, *, local_infile: bool = True) -> aiomysql.Pool:
    """A pool in autocommit mode: a pooled connection never sits in a stale REPEATABLE READ snapshot;
    batches open their own transactions with begin()/commit()."""
    return await aiomysql.create_pool(
        db=cfg.database,
        minsize=1,
        maxsize=maxsize,
        autocommit=True,
        pool_recycle=280,
        local_infile=local_infile,  # the import's bulk path; only ever sends files this process wrote
        init_command="SET time_zone = '+00:00', group_concat_max_len = 67108864",
        **_connect_kwargs(cfg),
    )


@asynccontextmanager
async def mysql_deadline(seconds: float, *, again_s: float = 0.1) -> AsyncIterator[None]:
    """asyncio.timeout that insists: TimeoutError once `seconds` pass. One cancellation is not
    enough for MySQL work: on Python 3.11, asyncio.wait_for (aiomysql's connect) drops a cancellation
    that lands as the TCP connect completes, and the handshake read that follows has no timeout of
    its own, so a stalled server held the request for good. Past the deadline the task is cancelled
    again every `again_s` until the work gives up."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    cancels_before = task.cancelling()
    fired = 0
    handle: asyncio.TimerHandle

    def cancel() -> None:
        nonlocal fired, handle
        fired += 1
        task.cancel()
        handle = loop.call_later(again_s, cancel)

    handle = loop.call_later(seconds, cancel)
    try:
        yield
    except asyncio.CancelledError:
        handle.cancel()
        if fired and _uncancel(task, fired) <= cancels_before:
            raise TimeoutError from None
        raise
    else:
        handle.cancel()
        _uncancel(task, fired)  # cancellations the work swallowed: they must not outlive the deadline


async def bounded(seconds: float, work: Awaitable[T]) -> T:
    """`work` (a request's reads from MySQL) within `seconds`, or DatabaseUnavailable: a stalled
    server answers 503 instead of holding the request."""
    try:
        async with mysql_deadline(seconds):
            return await work
    except TimeoutError:
        raise DatabaseUnavailable(f"MySQL did not answer within {seconds:g} s") from None


def _uncancel(task: asyncio.Task[object], times: int) -> int:
    left = task.cancelling()
    for _ in range(times):
        left = task.uncancel()
    return left


@asynccontextmanager
async def connection(pool: aiomysql.Pool) -> AsyncIterator[aiomysql.Connection]:
    """Borrow a connection; a connection that broke is closed (so the pool drops it) and the error
    becomes DatabaseUnavailable, so callers answer 503 and the next request gets a fresh one."""
    conn = await acquire(pool)
    async with lent(pool, conn):
        yield conn


async def acquire(pool: aiomysql.Pool) -> aiomysql.Connection:
    """A connection from the pool, for `lent` (or `pool.release`) to give back."""
    try:
        conn: aiomysql.Connection = await pool.acquire()
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    return conn


@asynccontextmanager
async def lent(pool: aiomysql.Pool, conn: aiomysql.Connection) -> AsyncIterator[aiomysql.Connection]:
    """A connection acquired from `pool` already, used and given back as `connection` does."""
    try:
        yield conn
    except CONNECTION_ERRORS as exc:
        conn.close()
        raise DatabaseUnavailable(str(exc)) from exc
    except BaseException:
        # An interrupted statement leaves the protocol in an unknown state: never reuse it.
        if conn.get_transaction_status():
            conn.close()
        raise
    finally:
        pool.release(conn)


@asynccontextmanager
async def transaction(pool: aiomysql.Pool, held: aiomysql.Connection | None = None) -> AsyncIterator[aiomysql.Cursor]:
    """A transaction on a connection of the pool, committed if the block ends, rolled back if it
    raises; with `held`, on that one (acquired from the pool already, given back at the end)."""
    async with connection(pool) if held is None else lent(pool, held) as conn, _transaction_on(conn) as cur:
        yield cur


@asynccontextmanager
async def _transaction_on(conn: aiomysql.Connection) -> AsyncIterator[aiomysql.Cursor]:
    await conn.begin()
    try:
        async with conn.cursor() as cur:
            yield cur
    except BaseException:
        await _rollback(conn)
        raise
    try:
        await conn.commit()
    except CONNECTION_ERRORS as exc:
        conn.close()
        raise OutcomeUnknown(f"the connection broke while committing: {exc}") from exc
    except BaseException:
        await _rollback(conn)
        raise


async def _rollback(conn: aiomysql.Connection) -> None:
    try:
        await conn.rollback()
    except Exception:
        conn.close()  # the connection is broken: the server rolls back when it goes


@asynccontextmanager
async def savepoint(cur: aiomysql.Cursor, name: str = "sp") -> AsyncIterator[None]:
    """Inside a transaction: undo only this block's statements if it raises. Nested blocks need
    names of their own (a savepoint replaces an earlier one of the same name)."""
    await cur.execute(f"SAVEPOINT {name}")
    try:
        yield
    except asyncio.CancelledError:
        raise  # aiomysql closed the connection mid-statement: nothing to roll back to
    except BaseException:
        # If the rollback fails the connection is gone; the caller sees the original error.
        with contextlib.suppress(Exception):
            await cur.execute(f"ROLLBACK TO SAVEPOINT {name}")
        raise
    await cur.execute(f"RELEASE SAVEPOINT {name}")


async def ensure_database(cfg: MySQLConfig) -> None:
    conn = await aiomysql.connect(autocommit=True, **_connect_kwargs(cfg))
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (cfg.database,))
            if await cur.fetchone():
                return
            await cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{cfg.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        conn.close()


async def migrate(pool: aiomysql.Pool, database: str) -> list[int]:
    """Apply pending migrations. A named lock lets many processes start together safely."""
    applied: list[int] = []
    lock_name = f"{database}.migrations"
    async with connection(pool) as conn, conn.cursor() as cur:
        await cur.execute("SELECT GET_LOCK(%s, 60)", (lock_name,))
        (got,) = await cur.fetchone()
        if got != 1:
            raise RuntimeError("timed out waiting for the migration lock held by another process")
        try:
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INT NOT NULL PRIMARY KEY,"
                " description VARCHAR(255) NOT NULL,"
                " applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
                ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
            await cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, description, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    await cur.execute(statement)
                await cur.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (version, description),
                )
                applied.append(version)
                log.info("applied migration", extra={"migration": version, "description": description})
        finally:
            await cur.execute("SELECT RELEASE_LOCK(%s)", (lock_name,))
    return applied


async def open_database(cfg: MySQLConfig, maxsize: int = 10, *, wait_s: float = 30) -> aiomysql.Pool:
    """Create the database if missing, open the pool and bring the schema up to date. Waits up to
    `wait_s` for the server, so services started together with MySQL do not crash-loop."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            await ensure_database(cfg)
            break
        except CONNECTION_ERRORS as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise DatabaseUnavailable(f"MySQL at {cfg.host}:{cfg.port} did not answer: {exc}") from exc
            log.warning("waiting for mysql", extra={"error": str(exc)})
            await asyncio.sleep(1)
    pool = await create_pool(cfg, maxsize)
    try:
        await migrate(pool, cfg.database)
    except BaseException:
        pool.close()
        await pool.wait_closed()
        raise
    return pool


async def close_pool(pool: aiomysql.Pool) -> None:
    pool.close()
    await pool.wait_closed()

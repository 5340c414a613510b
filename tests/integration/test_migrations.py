from decimal import Decimal

import psycopg
import pytest

from ledgerflow import database

pytestmark = pytest.mark.integration

LEDGERFLOW_TABLES = {
    "ledgerflow_batches",
    "ledgerflow_leadership",
    "ledgerflow_messages",  # a view
    "ledgerflow_message_ids",
    "ledgerflow_workers",
    "ledgerflow_price_batches",
    "regions",  # the rates tables, as in the original dump
    "ports",
    "prices",
    "ledgerflow_migrations",
    "ledgerflow_provider_totals",
    "ledgerflow_publishes",
    "rejected_messages",
}


async def tables(conn: psycopg.AsyncConnection[object]) -> set[str]:
    cursor = await conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    return {row[0] for row in await cursor.fetchall()}  # type: ignore[index]


async def test_migrate_creates_the_original_and_ledgerflow_tables(empty_db_url: str) -> None:
    conn = await database.connect(empty_db_url)
    async with conn:
        applied = await database.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in database.migrations()]
        assert await tables(conn) == LEDGERFLOW_TABLES | {"initial_data", "historical_transactions"}
        assert await database.migrate(conn) == []
        assert await database.pending_migrations(conn) == []


async def test_migrate_adopts_the_original_tables_and_keeps_their_rows(
    original_db_url: str,
) -> None:
    conn = await database.connect(original_db_url)
    async with conn:
        assert [m.version for m in await database.pending_migrations(conn)]
        await database.migrate(conn)
        cursor = await conn.execute(
            "SELECT id, provider_id, transaction_value FROM historical_transactions ORDER BY id"
        )
        assert await cursor.fetchall() == [(1, 1, 100), (2, 1, 200), (3, 2, -200)]
        cursor = await conn.execute(
            "SELECT provider_id, total, row_count FROM ledgerflow_provider_totals ORDER BY 1"
        )
        assert await cursor.fetchall() == [(1, Decimal(300), 2), (2, Decimal(-200), 1)]


async def test_provider_totals_follow_every_kind_of_write(original_db_url: str) -> None:
    conn = await database.connect(original_db_url, autocommit=True)
    async with conn:
        await database.migrate(conn)
        # Another writer (the original producer, a person with psql) changes the table.
        await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value)"
            " VALUES (1, 0.5), (2, 10), (NULL, 99)"
        )
        await conn.execute("UPDATE historical_transactions SET transaction_value = 7 WHERE id = 3")
        await conn.execute("UPDATE historical_transactions SET provider_id = 2 WHERE id = 1")
        await conn.execute("DELETE FROM historical_transactions WHERE id = 2")
        totals = "SELECT provider_id, total, row_count FROM ledgerflow_provider_totals WHERE row_count <> 0 ORDER BY 1"
        direct = (
            "SELECT provider_id, sum(transaction_value), count(*) FROM historical_transactions"
            " WHERE provider_id IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
        assert (
            await (await conn.execute(totals)).fetchall()
            == await (await conn.execute(direct)).fetchall()
        )
        assert await (await conn.execute(totals)).fetchall() == [
            (1, Decimal("0.5"), 1),
            (2, Decimal(117), 3),
        ]
        await conn.execute("TRUNCATE historical_transactions")
        assert await (await conn.execute(totals)).fetchall() == []


async def test_concurrent_migrations_apply_each_file_once(empty_db_url: str) -> None:
    import asyncio

    async def run() -> list[int]:
        conn = await database.connect(empty_db_url)
        async with conn:
            return [m.version for m in await database.migrate(conn)]

    first, second = await asyncio.gather(run(), run())
    assert sorted(first + second) == [m.version for m in database.migrations()]


async def test_lineage_recorded_per_message_survives_the_move_to_batch_rows(
    empty_db_url: str,
) -> None:
    conn = await database.connect(empty_db_url, autocommit=True)
    async with conn:
        await conn.execute(
            "CREATE TABLE ledgerflow_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for migration in database.migrations():
            if migration.version >= 6:
                break
            await conn.execute(migration.text)
            await conn.execute(
                "INSERT INTO ledgerflow_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        await conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 1)"
        )
        await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value) VALUES (1, 5)"
        )
        await conn.execute(
            "INSERT INTO ledgerflow_batches (queue, leader_term, instance, message_count,"
            " stored_count, rejected_count, duplicate_count) VALUES ('q', 1, 'i', 2, 1, 0, 1)"
        )
        await conn.execute(
            "INSERT INTO ledgerflow_messages (batch_id, position, message_id, redelivered,"
            " body_sha256, outcome, transaction_id) VALUES"
            " (1, 0, 'm-1', false, decode(repeat('aa', 32), 'hex'), 'stored', 1),"
            " (1, 1, 'm-1', false, decode(repeat('bb', 32), 'hex'), 'duplicate', NULL)"
        )
        assert 6 in [m.version for m in await database.migrate(conn)]
        cursor = await conn.execute(
            "SELECT position, message_id, encode(body_sha256, 'hex'), outcome, transaction_id"
            " FROM ledgerflow_messages ORDER BY position"
        )
        assert await cursor.fetchall() == [
            (0, "m-1", "aa" * 32, "stored", 1),
            (1, "m-1", "bb" * 32, "duplicate", None),
        ]
        cursor = await conn.execute("SELECT message_id, batch_id FROM ledgerflow_message_ids")
        assert await cursor.fetchall() == [("m-1", 1)]

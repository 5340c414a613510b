from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ledgerflow.db import connections, migrate

pytestmark = pytest.mark.integration

FIXTURE_TABLES = {"initial_data", "historical_transactions"}
RATES_TABLES = {"regions", "ports", "prices"}  # as in the original dump, in public
TREASURY_TABLES = {
    "avro_schemas",  # the schema store: schemas by id, subjects' versions (025)
    "avro_subject_versions",
    "treasury_sources",  # the ledger: sources' streams, offsets, trades, positions (026)
    "stream_offsets",
    "trades",
    "positions",
    "cash_positions",
    "instruments",
    "treasury_balances",  # liquidity: balances, adjustments, the LCR by minute (027)
    "treasury_adjustments",
    "lcr_history",
    "treasury_versions",  # the reference data's version, for the running LCR (029)
}
LEDGERFLOW_TABLES = {
    "batches",
    "leadership",
    "messages",  # a view
    "message_ids",
    "workers",
    "migrations",
    "provider_totals",
    "publishes",
    "rejected_messages",
    "users",  # people and machines (012)
    "api_tokens",
    "sessions",
    "audit_log",
    "rejected_total",  # kept by triggers (015)
    "rules",  # filtering rules and their versions, lineage (016)
    "rule_versions",
    "batch_filters",
    "filtered_messages",
    "notifications",  # the notification log (017)
    "data_sources",  # comparisons by message id (018)
    "comparisons",
    "comparison_items",
    "loads",  # the load log and the feeds detected from it (019)
    "load_log",  # a view
    "feeds",
    "models",  # production models and the tables they read (021)
    "model_tables",
    "feed_events",  # onboarding: the trail, the outbox, reconciliation (022)
    "outbox",
    "feed_findings",
    "reconciliations",
    "load_pairs",  # a view: the distinct pairs detection reads (023)
    "shard_terms",  # each shard's term and holder (030)
    "shard_counts",  # each queue's number of shards (030)
}


async def tables(conn: psycopg.AsyncConnection[Any], schema: str) -> set[str]:
    cursor = await conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    )
    return {row[0] for row in await cursor.fetchall()}


async def routines(conn: psycopg.AsyncConnection[Any], schema: str) -> set[str]:
    cursor = await conn.execute(
        "SELECT routine_name FROM information_schema.routines WHERE routine_schema = %s",
        (schema,),
    )
    return {row[0] for row in await cursor.fetchall()}


async def add_batch(conn: psycopg.AsyncConnection[Any]) -> None:
    """A batch of queue q, committed at 05:00 UTC."""
    await conn.execute(
        "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
        " stored_count, rejected_count, duplicate_count, committed_at)"
        " VALUES ('q', 1, 'i', 1, 1, 0, 0, '2026-11-30T05:00:00Z')"
    )


async def load_pairs(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    """ledgerflow.load_pairs, each pair with its first successful load."""
    cursor = await conn.execute(
        "SELECT source, table_name, ledgerflow.first_load_at(source, table_name)"
        " FROM ledgerflow.load_pairs ORDER BY source"
    )
    return await cursor.fetchall()


async def test_migrate_creates_the_original_and_ledgerflow_tables(empty_db_url: str) -> None:
    conn = await connections.connect(empty_db_url)
    async with conn:
        applied = await migrate.migrate(conn)
        assert [m.version for m in applied] == [
            m.version for m in migrate.migrations() if m.domain is None
        ]
        assert await tables(conn, "public") == FIXTURE_TABLES
        assert await tables(conn, "ledgerflow") == LEDGERFLOW_TABLES
        assert await routines(conn, "public") == set()
        assert await migrate.migrate(conn) == []
        assert await migrate.pending_migrations(conn) == []
        assert await migrate.installed_domains(conn) == set()
        # Without the rates domain, the pairs and their first loads are the queues' and
        # the reported loads'.
        await add_batch(conn)
        await conn.execute(
            "INSERT INTO ledgerflow.loads (source, table_name, row_count, status, started_at,"
            " finished_at, reported_by) VALUES ('murex', 's.t', 1, 'succeeded', %(at)s, %(at)s,"
            " 't'), ('broken', 's.t', 0, 'failed', %(at)s, %(at)s, 't')",
            {"at": datetime(2026, 11, 30, 7, tzinfo=UTC)},
        )
        assert await load_pairs(conn) == [
            ("murex", "s.t", datetime(2026, 11, 30, 7, tzinfo=UTC)),
            ("queue:q", "public.historical_transactions", datetime(2026, 11, 30, 5, tzinfo=UTC)),
        ]


async def test_the_rates_tables_come_only_with_the_rates_domain(empty_db_url: str) -> None:
    conn = await connections.connect(empty_db_url)
    async with conn:
        await migrate.migrate(conn)
        assert [m.label for m in await migrate.pending_migrations(conn, ["rates"])] == [
            "008_rates",
            "009_rates_index_c_collation",
            "011_rates_schema",
            "020_feeds_price_batches",
            "024_load_pairs_price_batches",
        ]
        applied = await migrate.migrate(conn, ["rates"])
        assert [m.version for m in applied] == [8, 9, 11, 20, 24]
        assert await tables(conn, "public") == FIXTURE_TABLES | RATES_TABLES
        assert await tables(conn, "ledgerflow") == LEDGERFLOW_TABLES | {"price_batches"}
        assert await migrate.installed_domains(conn) == {"rates"}
        # Once installed, a domain stays: a plain migrate keeps it, nothing is pending.
        assert await migrate.pending_migrations(conn) == []
        # The price batches' sources are loads now (024), beside the queues (023).
        await add_batch(conn)
        await conn.execute(
            "INSERT INTO ledgerflow.price_batches (batch_id, source, row_count, committed_at)"
            " VALUES ('b-1', 'http', 3, '2026-11-30T06:00:00Z')"
        )
        assert await load_pairs(conn) == [
            ("prices:http", "public.prices", datetime(2026, 11, 30, 6, tzinfo=UTC)),
            ("queue:q", "public.historical_transactions", datetime(2026, 11, 30, 5, tzinfo=UTC)),
        ]


async def test_the_treasury_tables_come_only_with_the_treasury_domain(empty_db_url: str) -> None:
    conn = await connections.connect(empty_db_url)
    async with conn:
        await migrate.migrate(conn)
        labels = [m.label for m in await migrate.pending_migrations(conn, ["treasury"])]
        assert "025_treasury_schemas" in labels
        assert all(
            m.domain == "treasury" for m in await migrate.pending_migrations(conn, ["treasury"])
        )
        applied = await migrate.migrate(conn, ["treasury"])
        assert [m.label for m in applied] == labels
        assert await tables(conn, "ledgerflow") == LEDGERFLOW_TABLES | TREASURY_TABLES
        assert await tables(conn, "public") == FIXTURE_TABLES
        assert await migrate.installed_domains(conn) == {"treasury"}
        assert await migrate.pending_migrations(conn) == []


async def test_an_unknown_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown domains"):
        await migrate.migrate(None, ["treasure"])  # type: ignore[arg-type]


async def test_migrate_adopts_the_original_tables_and_keeps_their_rows(
    original_db_url: str,
) -> None:
    conn = await connections.connect(original_db_url)
    async with conn:
        assert [m.version for m in await migrate.pending_migrations(conn)]
        await migrate.migrate(conn)
        cursor = await conn.execute(
            "SELECT id, provider_id, transaction_value FROM historical_transactions ORDER BY id"
        )
        assert await cursor.fetchall() == [(1, 1, 100), (2, 1, 200), (3, 2, -200)]
        cursor = await conn.execute(
            "SELECT provider_id, total, row_count FROM ledgerflow.provider_totals ORDER BY 1"
        )
        assert await cursor.fetchall() == [(1, Decimal(300), 2), (2, Decimal(-200), 1)]
        assert await tables(conn, "public") == FIXTURE_TABLES


async def test_provider_totals_follow_every_kind_of_write(original_db_url: str) -> None:
    conn = await connections.connect(original_db_url, autocommit=True)
    async with conn:
        await migrate.migrate(conn)
        # Another writer (the original producer, a person with psql) changes the table.
        await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value)"
            " VALUES (1, 0.5), (2, 10), (NULL, 99)"
        )
        await conn.execute("UPDATE historical_transactions SET transaction_value = 7 WHERE id = 3")
        await conn.execute("UPDATE historical_transactions SET provider_id = 2 WHERE id = 1")
        await conn.execute("DELETE FROM historical_transactions WHERE id = 2")
        totals = "SELECT provider_id, total, row_count FROM ledgerflow.provider_totals WHERE row_count <> 0 ORDER BY 1"
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
        conn = await connections.connect(empty_db_url)
        async with conn:
            return [m.version for m in await migrate.migrate(conn, migrate.OPTIONAL_DOMAINS)]

    first, second = await asyncio.gather(run(), run())
    assert sorted(first + second) == [m.version for m in migrate.migrations()]


async def apply_as_ledgerflow_0_1(conn: psycopg.AsyncConnection[Any], below: int) -> None:
    """Apply the migrations before ``below`` as ledgerflow 0.1 did: its record of them in
    ``public.ledgerflow_migrations``."""
    await conn.execute(
        "CREATE TABLE ledgerflow_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    for migration in migrate.migrations():
        if migration.version >= below:
            break
        await conn.execute(migration.text)
        await conn.execute(
            "INSERT INTO ledgerflow_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )


async def test_lineage_recorded_per_message_survives_the_move_to_batch_rows(
    empty_db_url: str,
) -> None:
    conn = await connections.connect(empty_db_url, autocommit=True)
    async with conn:
        await apply_as_ledgerflow_0_1(conn, below=6)
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
        assert 6 in [m.version for m in await migrate.migrate(conn)]
        cursor = await conn.execute(
            "SELECT position, message_id, encode(body_sha256, 'hex'), outcome, transaction_id"
            " FROM ledgerflow.messages ORDER BY position"
        )
        assert await cursor.fetchall() == [
            (0, "m-1", "aa" * 32, "stored", 1),
            (1, "m-1", "bb" * 32, "duplicate", None),
        ]
        cursor = await conn.execute("SELECT message_id, batch_id FROM ledgerflow.message_ids")
        assert await cursor.fetchall() == [("m-1", 1)]


# Every table ledgerflow 0.1 wrote, with a query listing its rows: the same rows must be
# found under the new names after migration 010 (and 011 for the rates domain).
BEFORE_AND_AFTER = {
    "ledgerflow_batches": "ledgerflow.batches",
    "rejected_messages": "ledgerflow.rejected_messages",
    "ledgerflow_message_ids": "ledgerflow.message_ids",
    "ledgerflow_leadership": "ledgerflow.leadership",
    "ledgerflow_publishes": "ledgerflow.publishes",
    "ledgerflow_workers": "ledgerflow.workers",
    "ledgerflow_provider_totals": "ledgerflow.provider_totals",
    "ledgerflow_price_batches": "ledgerflow.price_batches",
    "ledgerflow_messages": "ledgerflow.messages",
    "ledgerflow_migrations": "ledgerflow.migrations",
    "initial_data": "initial_data",
    "historical_transactions": "historical_transactions",
    "regions": "regions",
    "ports": "ports",
    "prices": "prices",
}


async def everything(conn: psycopg.AsyncConnection[Any], table: str) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
    return await cursor.fetchall()


async def test_a_database_of_the_previous_layout_keeps_every_row(empty_db_url: str) -> None:
    conn = await connections.connect(empty_db_url, autocommit=True)
    async with conn:
        await apply_as_ledgerflow_0_1(conn, below=10)
        await conn.execute(
            """
            INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 1000);
            INSERT INTO historical_transactions (provider_id, transaction_value)
                VALUES (1, 100), (1, 0.25);
            UPDATE ledgerflow_leadership SET term = 3, instance = 'w1', acquired_at = now();
            INSERT INTO ledgerflow_batches (queue, leader_term, instance, message_count,
                stored_count, rejected_count, duplicate_count, body_hashes, outcomes,
                message_ids, transaction_ids, rejected_ids)
                VALUES ('q', 3, 'w1', 3, 2, 1, 0, decode(repeat('ab', 96), 'hex'), 'SSR',
                        ARRAY['m-1', 'm-2', NULL], ARRAY[1, 2, NULL], ARRAY[NULL, NULL, 1]);
            INSERT INTO ledgerflow_message_ids VALUES ('m-1', 1), ('m-2', 1);
            INSERT INTO rejected_messages (queue, message_id, reason, detail, body,
                properties, received_at)
                VALUES ('q', NULL, 'invalid_json', 'not JSON', 'x', '{}', now());
            INSERT INTO ledgerflow_publishes VALUES (now(), 3, 'w1', 1, now(), 0.002);
            INSERT INTO ledgerflow_workers VALUES ('w1', 'active', 'h', 1, NULL, 'q', now(),
                now());
            INSERT INTO regions VALUES ('world', 'World', NULL);
            INSERT INTO ports VALUES ('CNGGZ', 'G', 'world'), ('EETLL', 'T', 'world');
            INSERT INTO prices VALUES ('CNGGZ', 'EETLL', '2021-01-01', 100);
            INSERT INTO ledgerflow_price_batches VALUES ('b-1', 'http', 1, now());
            """
        )
        before = {old: await everything(conn, old) for old in BEFORE_AND_AFTER}
        assert all(before.values())  # every table holds rows

        applied = await migrate.migrate(conn)
        assert [m.version for m in applied][:2] == [10, 11]  # rates stays: the database has it
        after = {old: await everything(conn, new) for old, new in BEFORE_AND_AFTER.items()}
        # Columns added since (lineage's, 016) come last; the old ones must be unchanged.
        after = {old: [row[: len(before[old][0])] for row in rows] for old, rows in after.items()}
        after["ledgerflow_migrations"] = after["ledgerflow_migrations"][:9]
        assert after == before
        assert await tables(conn, "public") == FIXTURE_TABLES | RATES_TABLES
        assert await routines(conn, "public") == set()
        assert await migrate.pending_migrations(conn) == []

        # The moved triggers' functions still keep the totals, now in ledgerflow's schema.
        await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value) VALUES (1, 5)"
        )
        cursor = await conn.execute("SELECT total, row_count FROM ledgerflow.provider_totals")
        assert await cursor.fetchall() == [(Decimal("105.25"), 3)]
        # The serial sequences moved with their tables and go on where they were.
        cursor = await conn.execute(
            "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
            " stored_count, rejected_count, duplicate_count) VALUES ('q', 3, 'w1', 0, 0, 0, 0)"
            " RETURNING id"
        )
        assert await cursor.fetchall() == [(2,)]


async def test_pending_migrations_reads_the_previous_layouts_record(empty_db_url: str) -> None:
    conn = await connections.connect(empty_db_url, autocommit=True)
    async with conn:
        await apply_as_ledgerflow_0_1(conn, below=10)
        assert [m.label for m in await migrate.pending_migrations(conn)][:2] == [
            "010_ledgerflow_schema",
            "011_rates_schema",
        ]


async def test_the_rejected_total_follows_every_kind_of_write(db_url: str) -> None:
    conn = await connections.connect(db_url, autocommit=True)
    async with conn:
        insert = (
            "INSERT INTO ledgerflow.rejected_messages (queue, reason, detail, body, properties,"
            " received_at) SELECT 'q', 'invalid_json', '', 'x', '{}', now()"
            " FROM generate_series(1, %s)"
        )
        await conn.execute(insert, (7,))
        await conn.execute(insert, (5,))
        await conn.execute("DELETE FROM ledgerflow.rejected_messages WHERE id <= 3")
        total = "SELECT total FROM ledgerflow.rejected_total"
        direct = "SELECT count(*) FROM ledgerflow.rejected_messages"
        assert await (await conn.execute(total)).fetchone() == (9,)
        assert await (await conn.execute(direct)).fetchone() == (9,)
        await conn.execute("TRUNCATE ledgerflow.rejected_messages")
        assert await (await conn.execute(total)).fetchone() == (0,)

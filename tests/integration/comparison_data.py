"""What test_comparisons.py compares: the lineage and the stages, written directly as the
batch writer and the publisher write them (one ledgerflow.batches row a batch, its arrays
in delivery order), so that every outcome can be placed exactly."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import redis.asyncio as redis
from psycopg.types.json import Jsonb

from ledgerflow.db.connections import connect

T = TypeVar("T")
BOUNDARY = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Sent:
    """One delivered message as the lineage records it: S stored, F filtered, R rejected,
    D duplicate (its id counted before), A redelivered (the same message again)."""

    outcome: str
    message_id: str | None
    provider: int = 1
    value: str = "1"
    rule_version: int | None = None
    reason: str = "invalid_json"

    @property
    def body(self) -> bytes:
        return f'{{"id": {self.provider}, "value": {self.value}}}'.encode()


async def add_batch(conn: psycopg.AsyncConnection[Any], sent: list[Sent]) -> tuple[int, list[int]]:
    """Write one batch's lineage; return its id and the ids of the rows it stored."""
    stored = [m for m in sent if m.outcome == "S"]
    row_ids: list[int] = []
    if stored:
        cursor = await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value)"
            " SELECT * FROM unnest(%s::integer[], %s::numeric[]) RETURNING id",
            ([m.provider for m in stored], [m.value for m in stored]),
        )
        row_ids = sorted(row[0] for row in await cursor.fetchall())
    rejected = [m for m in sent if m.outcome == "R"]
    rejected_ids: list[int] = []
    for message in rejected:
        cursor = await conn.execute(
            "INSERT INTO ledgerflow.rejected_messages"
            " (queue, message_id, reason, detail, body, properties, received_at)"
            " VALUES ('test', %s, %s, 'test', %s, '{}', now()) RETURNING id",
            (message.message_id, message.reason, message.body),
        )
        row = await cursor.fetchone()
        assert row is not None
        rejected_ids.append(row[0])
    stored_ids, rejected_left = iter(row_ids), iter(rejected_ids)
    ids = [m.message_id for m in sent]
    cursor = await conn.execute(
        "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
        " stored_count, rejected_count, duplicate_count, redelivered_count, filtered_count,"
        " body_hashes, outcomes, message_ids, transaction_ids, rejected_ids, filter_rules)"
        " VALUES ('test', 1, 'test', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            len(sent),
            *(sum(m.outcome == letter for m in sent) for letter in "SRDAF"),
            b"".join(hashlib.sha256(m.body).digest() for m in sent),
            "".join(m.outcome for m in sent),
            ids if any(ids) else None,
            [next(stored_ids) if m.outcome == "S" else None for m in sent] if stored else None,
            [next(rejected_left) if m.outcome == "R" else None for m in sent] if rejected else None,
            [m.rule_version for m in sent] if any(m.rule_version for m in sent) else None,
        ),
    )
    row = await cursor.fetchone()
    assert row is not None
    counted = [m.message_id for m in sent if m.message_id and m.outcome in "SRF"]
    await conn.execute(
        "INSERT INTO ledgerflow.message_ids (message_id, batch_id)"
        " SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING",
        (counted, row[0]),
    )
    return row[0], row_ids


async def add_rule(conn: psycopg.AsyncConnection[Any], name: str, versions: int) -> list[int]:
    """A rule with ``versions`` versions; their ids, oldest first."""
    cursor = await conn.execute(
        "INSERT INTO ledgerflow.rules (name) VALUES (%s) RETURNING id", (name,)
    )
    row = await cursor.fetchone()
    assert row is not None
    cursor = await conn.execute(
        "INSERT INTO ledgerflow.rule_versions (rule_id, version, condition, technical, functional,"
        " owner, enabled, change, changed_by)"
        " SELECT %s, v, 'value > 900', 'why', 'why', 'test', true, 'created', 'test'"
        " FROM generate_series(1, %s) AS v RETURNING id",
        (row[0], versions),
    )
    return sorted(r[0] for r in await cursor.fetchall())


async def publish(
    conn: psycopg.AsyncConnection[Any], url: str, balances: dict[str, str], keydb: dict[str, str]
) -> None:
    """Record a publication of ``balances``; make KeyDB hold ``keydb``."""
    await conn.execute(
        "INSERT INTO ledgerflow.publishes (boundary, term, instance, provider_count,"
        " published_at, lag_seconds, balances) VALUES (%s, 1, 'test', %s, %s, 0.1, %s)",
        (BOUNDARY, len(balances), BOUNDARY, Jsonb(balances)),
    )
    client = redis.Redis.from_url(url, decode_responses=True)
    await client.mset(keydb)
    await client.aclose()


async def providers(conn: psycopg.AsyncConnection[Any]) -> None:
    """The brief's providers and the fixture's three initial rows (ids 1 to 3)."""
    await conn.execute(
        "INSERT INTO initial_data (provider_name, initial_value)"
        " VALUES ('Visa', 1000), ('Mastercard', 2000)"
    )
    await conn.execute(
        "INSERT INTO historical_transactions (provider_id, transaction_value)"
        " VALUES (1, 100), (1, 200), (2, -200)"
    )


@dataclass(frozen=True)
class Pipeline:
    """What the messy pipeline holds, for the assertions."""

    first_batch: int
    second_batch: int
    gone_row: int
    foreign_row: int
    rule_v2: int
    rejected_hash: str


async def messy_pipeline(conn: psycopg.AsyncConnection[Any], url: str) -> Pipeline:
    """Every outcome, a stored row deleted since, a row written by something else, the
    fixture's rows, and KeyDB changed after the last publication."""
    async with conn.transaction():
        await providers(conn)
        rule = await add_rule(conn, "big-values", 2)
        rejected = Sent("R", None, value='"ten"')  # the original producer sends no id
        first, _ = await add_batch(
            conn,
            [
                Sent("S", "m-1", 1, "10"),
                Sent("S", "m-2", 1, "20"),
                Sent("F", "m-3", 1, "950", rule_version=rule[1]),
                rejected,
                Sent("S", None, 2, "5"),
            ],
        )
        second, rows = await add_batch(
            conn,
            [
                Sent("D", "m-1", 1, "10"),
                Sent("A", "m-2", 1, "20"),
                Sent("S", "m-5", 1, "7"),
                Sent("S", "m-6", 2, "3"),
            ],
        )
        await conn.execute("DELETE FROM historical_transactions WHERE id = %s", (rows[0],))
        cursor = await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value)"
            " VALUES (2, 99) RETURNING id"
        )
        foreign = await cursor.fetchone()
        assert foreign is not None
        await publish(
            conn,
            url,
            {"1_Visa": "1330", "2_Mastercard": "1907"},
            # 1330.00 is the published balance; 1900 was written after the publication
            {"1_Visa": "1330.00", "2_Mastercard": "1900", "3_Amex": "5", "rates:x": "y"},
        )
    return Pipeline(
        first, second, rows[0], foreign[0], rule[1], hashlib.sha256(rejected.body).hexdigest()
    )


async def clean_pipeline(conn: psycopg.AsyncConnection[Any], url: str) -> None:
    """Filtered and rejected messages, every stored row in place, KeyDB as published."""
    async with conn.transaction():
        await providers(conn)
        rule = await add_rule(conn, "big-values", 1)
        await add_batch(
            conn,
            [
                Sent("S", "c-1", 1, "10"),
                Sent("F", "c-2", 1, "950", rule_version=rule[0]),
                Sent("R", "c-3", reason="unknown_provider"),
                Sent("S", "c-4", 2, "-5"),
            ],
        )
        await publish(
            conn,
            url,
            {"1_Visa": "1310", "2_Mastercard": "1795"},
            {"1_Visa": "1310", "2_Mastercard": "1795"},
        )


def on_database(db_url: str, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run ``work`` on a connection of its own, from a synchronous test."""

    async def go() -> T:
        conn = await connect(db_url)
        async with conn:
            return await work(conn)

    return asyncio.run(go())


async def configured_tables(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """A source of integer ids 101 to 113, where they were kept (text, one kept twice,
    one foreign) and a target (bigint, one foreign), with ledgerflow's lineage of some."""
    async with conn.transaction():
        await providers(conn)
        await conn.execute("CREATE TABLE public.orders_in (order_id integer PRIMARY KEY)")
        await conn.execute("CREATE TABLE public.orders_kept (id serial, order_ref text)")
        await conn.execute("CREATE TABLE public.orders_out (ref bigint)")
        await conn.execute("INSERT INTO orders_in SELECT generate_series(101, 113)")
        await conn.execute(
            "INSERT INTO orders_kept (order_ref) SELECT unnest(%s::text[])",
            (["101", "102", "104", "105", "107", "108", "109", "110", "110", "999"],),
        )
        await conn.execute(
            "INSERT INTO orders_out SELECT unnest(%s::bigint[])",
            ([101, 102, 104, 105, 107, 108, 555],),
        )
        rule = await add_rule(conn, "test-provider", 1)
        filtered, _ = await add_batch(
            conn, [Sent("S", "101"), Sent("F", "103", rule_version=rule[0]), Sent("S", "102")]
        )
        rejected, _ = await add_batch(conn, [Sent("R", "106", reason="unknown_provider")])
        # The lookup reads the outcome at the id's position in the batch that counted it.
        duplicate, _ = await add_batch(conn, [Sent("D", "111")])
        await conn.execute("INSERT INTO ledgerflow.message_ids VALUES ('111', %s)", (duplicate,))
        stored, _ = await add_batch(conn, [Sent("S", "112")])
    return {"filtered": filtered, "rejected": rejected, "duplicate": duplicate, "stored": stored}

"""Tracing one message, by message id or body SHA-256, from its batch to the boundary
that first published it and the value KeyDB got then."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from ledgerflow.core.clock import SystemClock
from ledgerflow.kv.balance_store import RedisBalanceStore
from ledgerflow.lineage.trace import trace
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.transactions import rules
from ledgerflow.transactions.publisher import BalancePublisher, PostgresBalanceLedger
from ledgerflow.transactions.writer import BatchWriter

from ..cli import run_cli
from .conftest import take_term

pytestmark = pytest.mark.integration


def message(body: bytes, tag: int, message_id: str | None) -> Delivery:
    return Delivery(body, tag, False, datetime.now(UTC), message_id)


async def test_a_message_is_traced_to_the_publication_that_first_included_it(
    seeded: psycopg.AsyncConnection[Any], redis_url: str
) -> None:
    conn = seeded
    await rules.add_rule(conn, "big", "value > 900", "over 900", "review", "risk", "alice")
    term = await take_term(conn)
    writer = BatchWriter(conn, "q", "test", term, max_body_bytes=1024)
    store = RedisBalanceStore(redis_url)
    publisher = BalancePublisher(PostgresBalanceLedger(conn), store, SystemClock(), term, "test")
    try:
        await writer.write([message(b'{"id": 1, "value": 5}', 1, "m-1")])
        await publisher.publish(1_800_000_060.0)
        late = await writer.write(
            [
                message(b'{"id": 1, "value": 7}', 2, "m-2"),
                message(b'{"id": 1, "value": 950}', 3, "m-3"),
                message(b'{"id": 1, "value": 8}', 4, "m-1"),  # m-1 again: a duplicate
                message(b"nope", 5, None),
            ]
        )
        await publisher.publish(1_800_000_120.0)
    finally:
        await store.close()

    first = (await trace(conn, "m-1"))["messages"]
    assert len(first) == 1 and first[0]["outcome"] == "stored"
    published = first[0]["transaction"]["first_publication"]
    # Visa starts at 1000 with 300 of the fixture's transactions: 1300 + 5.
    assert (published["boundary"][:19], published["key"], published["value"]) == (
        "2027-01-15T08:01:00",
        "1_Visa",
        "1305",
    )
    second = (await trace(conn, "m-2"))["messages"][0]
    assert second["transaction"]["value"] == "7"
    assert second["transaction"]["first_publication"]["value"] == "1312"  # 1305 + 7
    assert second["transaction"]["first_publication"]["boundary"][:19] == "2027-01-15T08:02:00"

    filtered = (await trace(conn, "m-3"))["messages"][0]
    assert filtered["outcome"] == "filtered" and "transaction" not in filtered
    assert (filtered["rule"]["name"], filtered["rule"]["version"]) == ("big", 1)
    assert filtered["rule"]["technical"] == "over 900"
    assert filtered["parsed"] == {"provider_id": 1, "value": "950"}

    by_hash = await trace(conn, hashlib.sha256(b"nope").hexdigest())
    assert [(m["batch_id"], m["position"], m["outcome"]) for m in by_hash["messages"]] == [
        (late.batch_id, 3, "rejected")
    ]
    assert by_hash["messages"][0]["rejection"]["reason"] == "invalid_json"
    duplicate = await trace(conn, hashlib.sha256(b'{"id": 1, "value": 8}').hexdigest())
    assert duplicate["messages"][0]["outcome"] == "duplicate"
    assert duplicate["messages"][0]["counted_in_batch"] == late.batch_id - 1
    assert (await trace(conn, "never-sent"))["messages"] == []


async def test_trace_on_the_command_line_says_json_and_exits_1_for_nothing(
    seeded: psycopg.AsyncConnection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = seeded
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    await writer.write([message(b'{"id": 2, "value": 1.5}', 1, "abc")])
    monkeypatch.setenv("LEDGERFLOW_DATABASE_URL", db_url)

    found = await run_cli("trace", "abc", "--json")
    assert found.exit_code == 0, found.output
    assert '"outcome": "stored"' in found.output and '"value": "1.5"' in found.output
    readable = await run_cli("trace", "abc")
    assert "stored" in readable.output and "not published yet" in readable.output
    missing = await run_cli("trace", "zzz")
    assert missing.exit_code == 1
    assert "no message has id or body SHA-256 'zzz'" in missing.output


async def test_a_body_sent_several_times_is_traced_to_each_delivery_in_order(
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    conn = seeded
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    body = b'{"id": 2, "value": 3}'
    first = await writer.write([message(body, 1, None), message(b'{"id": 1, "value": 1}', 2, None)])
    second = await writer.write([message(b"{}", 3, None), message(body, 4, None)])
    found = await trace(conn, hashlib.sha256(body).hexdigest())
    assert [(m["batch_id"], m["position"], m["outcome"]) for m in found["messages"]] == [
        (first.batch_id, 0, "stored"),
        (second.batch_id, 1, "stored"),
    ]

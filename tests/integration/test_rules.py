"""Filtering rules on real PostgreSQL: exactly the matching messages are filtered, each
with the rule version that filtered it; changes take effect at a batch boundary."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ledgerflow.db.connections import connect
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.transactions import rules
from ledgerflow.transactions.rules import RuleError
from ledgerflow.transactions.writer import BatchWriter

from ..cli import run_cli
from .conftest import take_term

pytestmark = pytest.mark.integration


def message(provider: int, value: str, tag: int, **properties: Any) -> Delivery:
    message_id = properties.pop("message_id", None)
    return Delivery(
        body=f'{{"id": {provider}, "value": {value}}}'.encode(),
        tag=tag,
        redelivered=False,
        received_at=datetime.now(UTC),
        message_id=message_id,
        properties=properties or None,
    )


async def rule(conn: psycopg.AsyncConnection[Any], name: str, when: str) -> rules.Rule:
    return await rules.add_rule(
        conn,
        name,
        when,
        technical=f"{name}: technical",
        functional="functional",
        owner="risk",
        by="alice",
    )


async def lineage(conn: psycopg.AsyncConnection[Any], batch_id: int) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT position, outcome, rule_version_id, transaction_id IS NOT NULL"
        " FROM ledgerflow.messages WHERE batch_id = %s ORDER BY position",
        (batch_id,),
    )
    return await cursor.fetchall()


async def test_a_rule_filters_exactly_the_matching_messages_with_its_version(
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    conn = seeded
    big = await rule(conn, "big-values", "value > 900")
    visa_refund = await rule(conn, "visa-refunds", "id == 1 && value < 0")
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    result = await writer.write(
        [
            message(1, "900", 1),  # not > 900
            message(1, "900.000000000001", 2),  # > 900 by a trillionth: exact decimals
            message(1, "-5", 3),
            message(2, "-5", 4),
            message(2, "1000", 5),  # both rules would not match: only the first one counts
            message(1, "true", 6),  # rejected before any rule
        ]
    )
    assert (result.stored, result.filtered, result.rejected) == (2, 3, 1)
    assert result.filtered_by_rule == Counter({big.version_id: 2, visa_refund.version_id: 1})
    assert await lineage(conn, result.batch_id) == [
        (0, "stored", None, True),
        (1, "filtered", big.version_id, False),
        (2, "filtered", visa_refund.version_id, False),
        (3, "stored", None, True),
        (4, "filtered", big.version_id, False),
        (5, "rejected", None, False),
    ]
    cursor = await conn.execute(
        "SELECT provider_id, transaction_value FROM historical_transactions WHERE id > 3 ORDER BY id"
    )
    assert await cursor.fetchall() == [(1, Decimal(900)), (2, Decimal(-5))]
    cursor = await conn.execute(
        "SELECT filtered_count, (SELECT sum(filtered) FROM ledgerflow.batch_filters"
        " WHERE batch_id = b.id) FROM ledgerflow.batches AS b WHERE id = %s",
        (result.batch_id,),
    )
    assert await cursor.fetchone() == (3, 3)
    cursor = await conn.execute(
        "SELECT position, rule_version_id, provider_id, value FROM ledgerflow.filtered_messages"
        " WHERE batch_id = %s ORDER BY position",
        (result.batch_id,),
    )
    assert await cursor.fetchall() == [
        (1, big.version_id, 1, Decimal("900.000000000001")),
        (2, visa_refund.version_id, 1, Decimal(-5)),
        (4, big.version_id, 2, Decimal(1000)),
    ]


async def test_a_changed_rule_filters_by_its_new_version_from_the_next_batch_on(
    seeded: psycopg.AsyncConnection[Any], db_url: str
) -> None:
    conn = seeded
    first = await rule(conn, "big-values", "value > 900")
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    before = await writer.write([message(1, "950", 1), message(1, "1500", 2)])
    # Another process (the console, the CLI) changes the rule between two batches.
    other = await connect(db_url)
    try:
        second = await rules.change_rule(other, "big-values", "bob", condition="value > 1000")
    finally:
        await other.close()
    after = await writer.write([message(1, "950", 3), message(1, "1500", 4)])
    assert second.version == 2 and second.change == "changed" and second.changed_by == "bob"
    assert [r[1:3] for r in await lineage(conn, before.batch_id)] == [
        ("filtered", first.version_id),
        ("filtered", first.version_id),
    ]
    assert [r[1:3] for r in await lineage(conn, after.batch_id)] == [
        ("stored", None),
        ("filtered", second.version_id),
    ]
    assert writer.rules.version == second.version_id
    # The attempt with the old rules was rolled back: two batches, no more.
    cursor = await conn.execute("SELECT count(*), sum(message_count) FROM ledgerflow.batches")
    assert await cursor.fetchone() == (2, 4)


async def test_a_disabled_rule_stops_filtering_and_its_history_is_kept(
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    conn = seeded
    await rule(conn, "big-values", "value > 900")
    disabled = await rules.change_rule(conn, "big-values", "carol", enabled=False)
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    result = await writer.write([message(1, "950", 1)])
    assert (result.stored, result.filtered) == (1, 0)
    assert disabled.change == "disabled" and not disabled.enabled
    history = await rules.rule_history(conn, "big-values")
    assert [(r.version, r.change, r.changed_by) for r in history] == [
        (2, "disabled", "carol"),
        (1, "created", "alice"),
    ]
    # Saving the same thing again is no new version.
    same = await rules.change_rule(conn, "big-values", "dave", enabled=False)
    assert same.version == 2


async def test_conditions_over_properties_follow_cel_where_a_value_is_absent(
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    conn = seeded
    await rule(conn, "not-x", 'message_id != "x" && has(headers.desk)')
    await rule(conn, "eu-limit", 'headers.region == "EU" && value > headers.limit')
    await rule(conn, "no-division-error", "value / (id - 1) > 100")
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    result = await writer.write(
        [
            message(1, "5", 1, headers={"desk": "fx"}),  # no message_id: != "x" holds
            message(1, "5", 2, message_id="x", headers={"desk": "fx"}),
            message(2, "50", 3, message_id="a", headers={"region": "EU", "limit": 10}),
            message(2, "50", 4, message_id="b", headers={"region": "EU", "limit": "10"}),
            message(1, "500", 5, message_id="c"),  # divides by zero: no match, no failure
            message(2, "500", 6, message_id="d"),  # 500 / 1 > 100
        ]
    )
    outcomes = [(r[1], r[2]) for r in await lineage(conn, result.batch_id)]
    versions = {r.name: r.version_id for r in await rules.list_rules(conn)}
    assert outcomes == [
        ("filtered", versions["not-x"]),
        ("stored", None),
        ("filtered", versions["eu-limit"]),
        ("stored", None),  # a string limit is not a number: the rule does not match
        ("stored", None),
        ("filtered", versions["no-division-error"]),
    ]


async def test_a_bad_condition_is_refused_with_its_position(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    with pytest.raises(RuleError) as refused:
        await rule(conn, "broken", "value > 1 &&\n   amount < 5")
    assert refused.value.field == "condition"
    assert (refused.value.line, refused.value.column) == (2, 4)
    # What only PostgreSQL checks (its regular expressions) is refused when saved too.
    with pytest.raises(RuleError, match="PostgreSQL cannot evaluate it"):
        await rule(conn, "bad-pattern", 'message_id.matches("(")')
    with pytest.raises(RuleError) as named:
        await rule(conn, "bad name!", "value > 1")
    assert named.value.field == "name"
    # A pattern is checked even where the rest of the condition would never reach it.
    for hidden in ("id == 5 && message_id.matches('[')", "headers.desk.matches('[')"):
        with pytest.raises(RuleError, match="PostgreSQL cannot evaluate it"):
            await rule(conn, "bad-pattern", hidden)
    await rule(conn, "fine", "value > 1")
    with pytest.raises(RuleError, match="exists already"):
        await rule(conn, "fine", "value > 2")
    assert [r.name for r in await rules.list_rules(conn)] == ["fine"]


async def test_rules_on_the_command_line(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERFLOW_DATABASE_URL", db_url)
    # Changes are announced: to a webhook nobody answers, so each attempt is logged failed.
    monkeypatch.setenv("LEDGERFLOW_NOTIFY_WEBHOOK_URLS", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("LEDGERFLOW_NOTIFY_TIMEOUT", "2")

    justified = ["--technical", "over the desk limit", "--functional", "reviewed by risk"]
    added = await run_cli("rules", "add", "big-values", "--when", "value > 900", *justified)
    assert added.exit_code == 0, added.output
    assert "rule big-values version 1 added: value > 900" in added.output
    refused = await run_cli("rules", "add", "broken", "--when", "value >> 1", *justified)
    assert refused.exit_code == 1
    assert "--when: syntax error near '> 1' (line 1, column 8)" in refused.output
    disabled = await run_cli("rules", "disable", "big-values")
    assert "rule big-values is disabled (version 2)" in disabled.output
    unknown = await run_cli("rules", "disable", "nothing")
    assert unknown.exit_code == 1 and "no rule named 'nothing'" in unknown.output
    listed = await run_cli("rules", "list", "--json")
    document = json.loads(listed.stdout)
    assert [(r["name"], r["version"], r["enabled"]) for r in document["rules"]] == [
        ("big-values", 2, False)
    ]
    assert "unknown_provider" in {b["reason"] for b in document["built_in"]}
    conn = await connect(db_url)
    try:
        cursor = await conn.execute("SELECT action, target FROM ledgerflow.audit_log ORDER BY id")
        assert await cursor.fetchall() == [
            ("rule.add", "big-values"),
            ("rule.disable", "big-values"),
        ]
        cursor = await conn.execute(
            "SELECT event, subject, status FROM ledgerflow.notifications ORDER BY id"
        )
        assert await cursor.fetchall() == [
            ("rule_changed", "rule big-values created (version 1)", "failed"),
            ("rule_changed", "rule big-values disabled (version 2)", "failed"),
        ]
    finally:
        await conn.close()


async def test_a_percent_sign_in_a_condition_is_modulo_or_text_never_a_placeholder(
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    conn = seeded
    await rule(conn, "even", "id % 2 == 0")
    await rule(conn, "percent", 'message_id.startsWith("50%")')
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    result = await writer.write(
        [
            message(1, "5", 1, message_id="50%-off"),
            message(2, "5", 2, message_id="x"),
            message(1, "5", 3, message_id="5%"),
        ]
    )
    assert [r[1] for r in await lineage(conn, result.batch_id)] == [
        "filtered",
        "filtered",
        "stored",
    ]


async def test_rules_loaded_before_the_first_batch_spare_it_a_second_attempt(
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    conn = seeded
    big = await rule(conn, "big-values", "value > 900")
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    await writer.load_rules()  # as the worker does when it starts to lead
    result = await writer.write([message(1, "950", 1), message(1, "5", 2)])
    assert writer.rules.version == big.version_id
    assert result.batch_id == 1  # no batch id drawn by an attempt rolled back
    assert (result.stored, result.filtered) == (1, 1)

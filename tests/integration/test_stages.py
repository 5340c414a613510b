"""Stage counts over a time window: every received message is in exactly one place."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pypdf import PdfReader

from ledgerflow.core.clock import SystemClock
from ledgerflow.kv.balance_store import RedisBalanceStore
from ledgerflow.lineage.stages import (
    Window,
    filtered_messages,
    filtered_over_time,
    price_stages,
    transaction_stages,
)
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.transactions import rules
from ledgerflow.transactions.publisher import BalancePublisher, PostgresBalanceLedger
from ledgerflow.transactions.writer import BatchWriter

from ..cli import run_cli
from .conftest import take_term

pytestmark = pytest.mark.integration


def message(body: bytes, tag: int, message_id: str | None = None) -> Delivery:
    return Delivery(body, tag, False, datetime.now(UTC), message_id)


async def test_every_message_of_a_window_is_counted_at_exactly_one_stage(
    seeded: psycopg.AsyncConnection[Any], redis_url: str
) -> None:
    conn = seeded
    await rules.add_rule(conn, "big", "value > 900", "t", "f", "risk", "alice")
    await rules.add_rule(conn, "refunds", "value < 0", "t", "f", "risk", "alice")
    term = await take_term(conn)
    writer = BatchWriter(conn, "q", "test", term, max_body_bytes=1024)
    await writer.write(
        [
            message(b'{"id": 1, "value": 5}', 1, "a"),
            message(b'{"id": 1, "value": 950}', 2),
            message(b'{"id": 2, "value": -1}', 3),
            message(b'{"id": 2, "value": 999}', 4),
            message(b"[]", 5),
        ]
    )
    store = RedisBalanceStore(redis_url)
    try:
        await BalancePublisher(
            PostgresBalanceLedger(conn), store, SystemClock(), term, "test"
        ).publish(1_800_000_060.0)
    finally:
        await store.close()
    await writer.write(
        [
            message(b'{"id": 1, "value": 6}', 6, "a"),  # a duplicate of "a"
            message(b'{"id": 99, "value": 1}', 7),  # no such provider
            message(b'{"id": 1, "value": 7}', 8),  # stored after the publication
        ]
    )
    now = datetime.now(UTC)
    window = Window(now - timedelta(hours=1), now + timedelta(minutes=1))
    stages = await transaction_stages(conn, window)
    assert (stages.received, stages.duplicate, stages.rejected, stages.filtered) == (8, 1, 2, 3)
    assert (stages.stored, stages.published, stages.parsed) == (2, 1, 5)
    assert stages.received == (
        stages.redelivered + stages.duplicate + stages.rejected + stages.parsed
    )
    assert dict(stages.rejected_by_reason) == {"not_an_object": 1, "unknown_provider": 1}
    assert {(name, count) for name, _, count in stages.filtered_by_rule} == {
        ("big", 2),
        ("refunds", 1),
    }
    starts, series = await filtered_over_time(conn, window)
    assert len(starts) == 1 and series == {"big": [2], "refunds": [1]}
    log = await filtered_messages(conn, window, "big", 10)
    assert [(row["provider_id"], str(row["value"])) for row in log] == [(2, "999"), (1, "950")]
    earlier = Window(now - timedelta(hours=2), now - timedelta(hours=1))
    assert (await transaction_stages(conn, earlier)).received == 0
    await conn.execute(
        "INSERT INTO ledgerflow.price_batches (batch_id, source, row_count)"
        " VALUES ('b-1', 'http', 40), ('b-2', 'queue', 2)"
    )
    await conn.execute(
        "INSERT INTO ledgerflow.rejected_messages (queue, reason, detail, body, properties,"
        " received_at) VALUES ('prices', 'invalid_price_batch', 'no rows', '{}', '{}', now())"
    )
    prices = await price_stages(conn, window)
    assert prices is not None
    assert (prices.received, prices.rejected, prices.committed, prices.rows) == (3, 1, 2, 42)


async def test_the_report_command_writes_the_pdf_and_each_part_as_csv(
    seeded: psycopg.AsyncConnection[Any],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    conn = seeded
    await rules.add_rule(conn, "big", "value > 900", "over 900", "reviewed", "risk", "alice")
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    await writer.write([message(b'{"id": 1, "value": 950}', 1, "x-1"), message(b"{}", 2)])
    monkeypatch.setenv("LEDGERFLOW_DATABASE_URL", db_url)

    pdf = tmp_path / "lineage.pdf"
    written = await run_cli("report", "lineage", "--period", "1h", "-o", str(pdf))
    assert written.exit_code == 0, written.output
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "ledgerflow lineage report" in text and "filtered: big v1" in text
    assert re.search(r"Page 1 of \d", text)
    csv_rules = await run_cli("report", "rules", "--format", "csv")
    [rule] = list(csv.DictReader(io.StringIO(csv_rules.stdout)))
    assert (rule["name"], rule["technical"], rule["filtered"]) == ("big", "over 900", "1")
    comparisons = await run_cli("report", "comparisons", "--format", "csv")
    assert comparisons.stdout.splitlines()[0].startswith("comparison_id,source,started_at")
    wrong = await run_cli("report", "lineage", "--since", "soon")
    assert wrong.exit_code == 2 and "--since" in wrong.output

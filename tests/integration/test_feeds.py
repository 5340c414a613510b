"""The load log and detection of new feeds, on the real PostgreSQL: ledgerflow's own
batches and price batches are loads, reported loads are too, and each (source, table)
pair that loaded successfully becomes one feed, once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.feeds.letters import Letters
from ledgerflow.feeds.loads import Load, LoadError, detect, feeds, record_load
from ledgerflow.feeds.models import register_model
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings
from ledgerflow.transactions.writer import BatchWriter

from ..cli import run_cli
from .conftest import eventually, take_term

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
LETTERS = Letters("http://console.test")


def load(source: str, table: str, status: str = "succeeded", rows: int = 10) -> Load:
    return Load(source, table, rows, status, NOW, NOW + timedelta(minutes=4))


async def test_each_source_and_table_that_loaded_becomes_one_feed_once(
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    conn = seeded
    writer = BatchWriter(conn, "incoming", "test", await take_term(conn), max_body_bytes=1024)
    await writer.write([Delivery(b'{"id": 1, "value": 5}', 1, False, NOW, None)])
    await conn.execute(
        "INSERT INTO ledgerflow.price_batches (batch_id, source, row_count) VALUES ('b-1', 'http', 3)"
    )
    await record_load(conn, load("murex-eod", "staging.trades"), "token:murex")
    await record_load(conn, load("murex-eod", "staging.trades"), "token:murex")  # again
    await record_load(conn, load("broken", "staging.quotes", status="failed"), "token:b")
    await conn.commit()
    found = await detect(conn, LETTERS)
    assert {(f.source, f.table_name, f.state) for f in found} == {
        ("queue:incoming", "public.historical_transactions", "detected"),
        ("prices:http", "public.prices", "detected"),
        ("murex-eod", "staging.trades", "detected"),
    }  # a failed load is no feed
    assert await detect(conn, LETTERS) == []  # nothing new the second time
    await record_load(conn, load("broken", "staging.quotes"), "token:b")  # now it worked
    assert [(f.source, f.table_name) for f in await detect(conn, LETTERS)] == [
        ("broken", "staging.quotes")
    ]
    assert len(await feeds(conn)) == 4


async def test_a_queue_of_many_batches_is_one_feed_dated_by_its_earliest_batch(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    # 3,000 batches of 'busy', committed a minute apart but written out of order: the
    # earliest is neither the first by id nor the last; a few of 'quiet'.
    await conn.execute(
        "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
        " stored_count, rejected_count, duplicate_count, committed_at)"
        " SELECT q, 1, 't', 1, 1, 0, 0, %(now)s - make_interval(mins => (g * 7) %% 3000)"
        " FROM generate_series(1, 3000) AS g"
        " CROSS JOIN LATERAL (SELECT CASE WHEN g %% 1000 = 0 THEN 'quiet' ELSE 'busy' END) AS s(q)",
        {"now": NOW},
    )
    cursor = await conn.execute(
        "SELECT queue, min(committed_at), min(id) FROM ledgerflow.batches GROUP BY 1 ORDER BY 1"
    )
    (busy, busy_first, busy_first_id), (quiet, quiet_first, _) = await cursor.fetchall()
    cursor = await conn.execute(
        "SELECT committed_at FROM ledgerflow.batches WHERE id = %s", (busy_first_id,)
    )
    assert (await cursor.fetchone()) != (busy_first,)  # the first by id is not the earliest
    await conn.commit()
    found = await detect(conn, LETTERS)
    assert [(f.source, f.table_name, f.first_load_at) for f in found] == [
        ("queue:busy", "public.historical_transactions", busy_first),
        ("queue:quiet", "public.historical_transactions", quiet_first),
    ]  # in the order of their first loads
    assert busy_first == NOW - timedelta(minutes=2999) and busy == "busy" and quiet == "quiet"
    await conn.execute(
        "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
        " stored_count, rejected_count, duplicate_count, committed_at)"
        " VALUES ('busy', 1, 't', 1, 1, 0, 0, %s)",
        (NOW - timedelta(days=30),),
    )
    await conn.commit()
    assert await detect(conn, LETTERS) == []  # a feed once, whatever comes after
    cursor = await conn.execute(
        "SELECT count(*) FROM ledgerflow.feed_events WHERE from_state IS NULL"
    )
    assert await cursor.fetchone() == (2,)  # one trail each


async def test_a_pair_is_dated_by_its_first_successful_load_wherever_it_was_logged(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    at = {n: NOW + timedelta(hours=n) for n in range(4)}
    await conn.execute(
        "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
        " stored_count, rejected_count, duplicate_count, committed_at)"
        " VALUES ('incoming', 1, 't', 1, 1, 0, 0, %s)",
        (at[2],),
    )
    tries = [
        ("broken", "s.t", "failed", at[0]),  # only ever failed: no feed
        ("broken", "s.t", "failed", at[3]),
        ("flaky", "s.t", "failed", at[0]),  # failed first, then worked: dated by the success
        ("flaky", "s.t", "succeeded", at[3]),
        ("flaky", "s.t", "succeeded", at[1]),
        # A loader reporting into ledgerflow's own pair, before its first batch.
        ("queue:incoming", "public.historical_transactions", "succeeded", at[1]),
    ]
    for source, table, status, finished in tries:
        await record_load(conn, Load(source, table, 1, status, finished, finished), "t")
    await conn.commit()
    found = await detect(conn, LETTERS)
    assert sorted((f.source, f.first_load_at) for f in found) == [
        ("flaky", at[1]),
        ("queue:incoming", at[1]),
    ]
    assert await detect(conn, LETTERS) == []


async def test_detections_running_at_once_make_each_feed_once(
    seeded: psycopg.AsyncConnection[Any], db_url: str
) -> None:
    await record_load(seeded, load("a", "s.t"), "x")
    await seeded.commit()
    conns = [await psycopg.AsyncConnection.connect(db_url, autocommit=True) for _ in range(4)]
    try:
        results = await asyncio.gather(*(detect(c, LETTERS) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]


def test_a_bad_load_names_its_field() -> None:
    with pytest.raises(LoadError, match=r"table: schema\.table"):
        load("a", "trades").check()
    with pytest.raises(LoadError, match="finished_at"):
        Load("a", "s.t", 1, "succeeded", NOW, NOW - timedelta(seconds=1)).check()
    with pytest.raises(LoadError, match="source"):  # a line break at the end too
        load("evil\n", "public.t").check()
    with pytest.raises(LoadError, match="table"):
        load("a", "public.t\n").check()


async def test_loaders_report_loads_over_http_with_loads_write(
    seeded: psycopg.AsyncConnection[Any], db_url: str, redis_url: str
) -> None:
    writer = await store.create_token(seeded, "murex", ["loads:write"], "t")
    reader = await store.create_token(seeded, "reader", ["read"], "t")
    await seeded.commit()
    settings = load_settings(database_url=db_url, redis_url=redis_url, rates_cache_url=redis_url)
    body = {
        "source": "murex-eod",
        "table": "staging.trades",
        "rows": 120,
        "started_at": "2026-11-30T06:00:00Z",
        "finished_at": "2026-11-30T06:04:10Z",
    }

    def call() -> None:
        with TestClient(create_app(settings)) as client:
            auth = {"authorization": f"Bearer {writer}"}
            assert client.post("/loads", json=body).status_code == 401
            refused = client.post(
                "/loads", json=body, headers={"authorization": f"Bearer {reader}"}
            )
            assert refused.status_code == 403
            made = client.post("/loads", json=body, headers=auth)
            assert made.status_code == 201, made.text
            assert [f["table"] for f in made.json()["new_feeds"]] == ["staging.trades"]
            again = client.post("/loads", json=body, headers=auth)
            assert again.json()["new_feeds"] == []
            bad = client.post("/loads", json={**body, "table": "trades"}, headers=auth)
            assert bad.status_code == 422 and bad.json()["parameter"] == "table"
            huge = client.post("/loads", json={**body, "rows": 10**20}, headers=auth)
            assert huge.status_code == 400 and huge.json()["parameter"] == "rows"
            naive = {**body, "started_at": "2026-11-30T06:00:00"}
            unzoned = client.post("/loads", json=naive, headers=auth)
            assert unzoned.status_code == 422 and unzoned.json()["parameter"] == "started_at"
            listed = client.get("/feeds", headers={"authorization": f"Bearer {reader}"}).json()
            assert [(f["source"], f["state"]) for f in listed] == [("murex-eod", "detected")]

    await asyncio.to_thread(call)


async def test_feeds_detect_on_the_command_line_prints_what_it_found(
    seeded: psycopg.AsyncConnection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await record_load(seeded, load("calypso", "risk.positions"), "x")
    await seeded.commit()
    monkeypatch.setenv("LEDGERFLOW_DATABASE_URL", db_url)

    found = await run_cli("feeds", "detect", "--json")
    assert found.exit_code == 0, found.output
    assert [f["table"] for f in json.loads(found.stdout)] == ["risk.positions"]
    assert "no new feed" in (await run_cli("feeds", "detect")).stdout


async def test_a_rates_load_is_in_the_load_log(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("LEDGERFLOW_DATABASE_URL", empty_db_url)

    made = await run_cli("rates", "generate", "--scale", "0.001", "--out", str(tmp_path))
    assert made.exit_code == 0, made.output
    files = [str(tmp_path / f"{name}.csv") for name in ("regions", "ports", "prices")]
    loaded = await run_cli("rates", "load", *files)
    assert loaded.exit_code == 0, loaded.output
    conn = await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True)
    try:
        cursor = await conn.execute(
            "SELECT source, table_name, row_count > 0 FROM ledgerflow.load_log"
            " WHERE source = 'rates load' ORDER BY table_name"
        )
        assert await cursor.fetchall() == [
            ("rates load", "public.ports", True),
            ("rates load", "public.prices", True),
            ("rates load", "public.regions", True),
        ]
    finally:
        await conn.close()


async def test_the_active_worker_notices_a_new_queue_feed_within_its_interval(
    start_worker: Any,
    publish: Any,
    queue: str,
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    running = await start_worker(feeds_detect_interval=1)
    publish(b'{"id": 1, "value": 5}')

    async def detected() -> list[tuple[str, str]]:
        cursor = await seeded.execute("SELECT source, table_name FROM ledgerflow.feeds")
        rows = await cursor.fetchall()
        await seeded.commit()
        return [(r[0], r[1]) for r in rows]

    found = await eventually(detected, within=15)
    await running.stop()
    assert found == [(f"queue:{queue}", "public.historical_transactions")]


async def test_a_model_reading_a_view_reads_the_views_base_tables(
    conn: psycopg.AsyncConnection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    await conn.execute(
        "CREATE SCHEMA staging; CREATE SCHEMA ref;"
        " CREATE TABLE staging.trades (id int, book int); CREATE TABLE ref.books (id int);"
        " CREATE VIEW staging.booked AS SELECT t.id FROM staging.trades t JOIN ref.books b"
        " ON b.id = t.book;"
        " CREATE VIEW staging.recent AS SELECT id FROM staging.booked"
    )
    await conn.commit()
    found = await register_model(
        conn,
        "surveillance-1",
        "test",
        sql="SELECT * FROM staging.recent r JOIN ref.books b ON true",
    )
    assert found == {
        "staging.trades": "staging.recent",  # through two views
        "ref.books": None,  # read directly too: the direct read wins
    }
    await conn.commit()
    monkeypatch.setenv("LEDGERFLOW_DATABASE_URL", db_url)

    sql = tmp_path / "model.sql"
    sql.write_text("WITH x AS (SELECT * FROM risk.limits) SELECT * FROM x")
    added = await run_cli("models", "add", "limits-model", "--sql", str(sql))
    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == "risk.limits"
    refused = await run_cli(
        "models", "add", "bad", "--sql", str(tmp_path / "model.sql"), "--table", "a.b"
    )
    assert refused.exit_code == 1 and "--sql: give the model's SQL or its tables" in refused.output
    listed = json.loads((await run_cli("models", "list", "--json")).stdout)
    assert [(m["name"], m["tables"]) for m in listed] == [
        ("limits-model", ["risk.limits"]),
        ("surveillance-1", ["ref.books", "staging.trades"]),
    ]

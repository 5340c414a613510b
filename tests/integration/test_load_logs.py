"""Another loader's load-log table, mapped by configuration, on the real PostgreSQL: its
successful runs become feeds as ledgerflow's own loads do, and a mapping that does not
fit the table never stops the detection of the rest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from ledgerflow.feeds.letters import Letters
from ledgerflow.feeds.load_logs import LoadLogMapping, parse_load_log_mapping
from ledgerflow.feeds.loads import Load, detect, detect_forever, feeds, record_load

from .conftest import eventually

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
LETTERS = Letters("http://console.test")
Conn = psycopg.AsyncConnection[Any]
COLUMNS = (
    "source=job_name,table=target_table,rows=rows_loaded,status=state,"
    "started_at=start_ts,finished_at=end_ts"
)


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def mapping(table: str = "etl.job_runs", columns: str = COLUMNS) -> LoadLogMapping:
    parsed = parse_load_log_mapping(table, columns, "SUCCESS,WARNING")
    assert parsed is not None
    return parsed


@pytest.fixture
async def etl(conn: Conn) -> Conn:
    """An ETL tool's job runs in ``etl.job_runs`` (its own names, its own statuses, a
    start without a time zone), and a view of them naming the loaded table in two
    columns."""
    await conn.execute(
        "CREATE SCHEMA etl;"
        " CREATE TABLE etl.job_runs (run_id serial PRIMARY KEY, job_name text,"
        " target_table text, rows_loaded integer, state varchar(10), start_ts timestamp,"
        " end_ts timestamptz);"
        " CREATE VIEW etl.runs_by_schema AS SELECT run_id AS id, job_name AS job,"
        " split_part(target_table, '.', 1) AS target_schema,"
        " split_part(target_table, '.', 2) AS target_name, state AS outcome, end_ts AS ended"
        " FROM etl.job_runs"
    )
    runs = [
        ("murex-eod", "staging.trades", 120, "SUCCESS", at(2)),
        ("murex-eod", "staging.trades", 118, "SUCCESS", at(1)),  # the first success
        ("murex-eod", "staging.trades", 0, "FAILED", at(0)),  # a failure before it
        ("calypso", "staging.quotes", 0, "FAILED", at(0)),  # only ever failed
        ("calypso", "staging.quotes", 0, "success", at(1)),  # not a value meaning success
        ("summit", "staging.limits", 7, "WARNING", at(3)),  # a success too
        (None, "staging.orphans", 1, "SUCCESS", at(1)),  # no source: no pair
        ("bloomberg", "staging.prices", 1, "SUCCESS", None),  # never finished: no pair
    ]
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO etl.job_runs (job_name, target_table, rows_loaded, state, start_ts,"
            " end_ts) VALUES (%s, %s, %s, %s, %s::timestamptz - interval '5 minutes', %s)",
            [(*run[:4], run[4], run[4]) for run in runs],
        )
    await conn.commit()
    return conn


async def trails(conn: Conn) -> list[tuple[str, str]]:
    """The feeds whose trail has begun (their detection recorded), by source and table."""
    cursor = await conn.execute(
        "SELECT f.source, f.table_name FROM ledgerflow.feed_events AS e"
        " JOIN ledgerflow.feeds AS f ON f.id = e.feed_id WHERE e.from_state IS NULL"
        " ORDER BY 1, 2"
    )
    rows = await cursor.fetchall()
    await conn.commit()
    return [(r[0], r[1]) for r in rows]


async def test_successful_runs_of_the_mapped_table_become_feeds_once(etl: Conn) -> None:
    conn = etl
    # The same pair reported to ledgerflow too, later than the tool's first success; and
    # one of ledgerflow's own.
    await record_load(conn, Load("murex-eod", "staging.trades", 5, "succeeded", at(4), at(4)), "t")
    await record_load(conn, Load("own", "staging.own", 5, "succeeded", at(5), at(5)), "t")
    await conn.commit()
    found = await detect(conn, LETTERS, external=mapping())
    assert [(f.source, f.table_name, f.first_load_at, f.state) for f in found] == [
        ("murex-eod", "staging.trades", at(1), "detected"),
        ("summit", "staging.limits", at(3), "detected"),
        ("own", "staging.own", at(5), "detected"),
    ]
    assert await trails(conn) == sorted((f.source, f.table_name) for f in found)
    assert await detect(conn, LETTERS, external=mapping()) == []  # once
    await conn.execute(
        "INSERT INTO etl.job_runs (job_name, target_table, state, end_ts)"
        " VALUES ('calypso', 'staging.quotes', 'SUCCESS', '2026-11-30T12:00:00Z')"
    )
    await conn.commit()
    (calypso,) = await detect(conn, LETTERS, external=mapping())
    assert (calypso.source, calypso.table_name, calypso.first_load_at) == (
        "calypso",
        "staging.quotes",
        at(6),
    )


async def test_the_tools_first_success_dates_a_pair_ledgerflow_heard_of_later(etl: Conn) -> None:
    await record_load(etl, Load("summit", "staging.limits", 1, "succeeded", at(9), at(9)), "t")
    await etl.commit()
    found = await detect(etl, LETTERS, external=mapping())
    assert {(f.source, f.first_load_at) for f in found} == {
        ("murex-eod", at(1)),
        ("summit", at(3)),  # the tool's run, before ledgerflow's report
    }


async def test_a_view_naming_the_loaded_table_in_two_columns_is_read_too(etl: Conn) -> None:
    view = mapping(
        "etl.runs_by_schema",
        "source=job,schema=target_schema,table_name=target_name,status=outcome,finished_at=ended",
    )
    found = await detect(etl, LETTERS, external=view)
    assert sorted((f.source, f.table_name, f.first_load_at) for f in found) == [
        ("murex-eod", "staging.trades", at(1)),
        ("summit", "staging.limits", at(3)),
    ]


@pytest.mark.parametrize(
    ("table", "columns", "says"),
    [
        ("etl.job_runs", COLUMNS.replace("end_ts", "ended_at"), '"ended_at" does not exist'),
        ("etl.job_runs", COLUMNS.replace("rows_loaded", "row_count"), '"row_count" does not exist'),
        ("etl.no_such_runs", COLUMNS, '"etl.no_such_runs" does not exist'),
    ],
)
async def test_a_mapping_that_does_not_fit_is_logged_and_the_rest_still_detected(
    etl: Conn, table: str, columns: str, says: str
) -> None:
    await record_load(etl, Load("own", "staging.own", 5, "succeeded", at(5), at(5)), "t")
    await etl.commit()
    with capture_logs() as logs:
        found = await detect(etl, LETTERS, external=mapping(table, columns))
    assert [(f.source, f.table_name) for f in found] == [("own", "staging.own")]
    (warning,) = [e for e in logs if e["event"] == "feeds.load_log_unreadable"]
    assert warning["log_level"] == "warning" and warning["table"] == table
    assert says in warning["error"]
    assert await trails(etl) == [("own", "staging.own")]  # the transaction carried on
    assert [f.source for f in await feeds(etl)] == ["own"]


async def test_detect_forever_reads_the_mapped_table(etl: Conn, db_url: str) -> None:
    task = asyncio.create_task(detect_forever(db_url, 0.02, LETTERS, external=mapping()))
    try:
        found = await eventually(lambda: trails(etl))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert found == [("murex-eod", "staging.trades"), ("summit", "staging.limits")]

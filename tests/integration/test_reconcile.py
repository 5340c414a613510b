"""Reconciliation on the real PostgreSQL: the tables production models read against the
tables onboarded feeds persist into; each kind of finding, kept across runs, closed when
no longer found and opened again when found again; staleness judged by another loader's
mapped load log too, and by ledgerflow's alone when that log cannot be read."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pypdf import PdfReader
from structlog.testing import capture_logs

from ledgerflow.auth.store import audit_log
from ledgerflow.feeds.load_logs import LoadLogMapping, parse_load_log_mapping
from ledgerflow.feeds.loads import Load, record_load
from ledgerflow.feeds.models import register_model
from ledgerflow.feeds.reconcile import (
    Finding,
    FindingError,
    Reconciliation,
    findings,
    findings_csv,
    findings_pdf,
    last_reconciliation,
    reconcile,
    reconcile_forever,
    update_finding,
)

from .conftest import eventually, scalar

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
Conn = psycopg.AsyncConnection[Any]


async def add_feed(
    conn: Conn,
    source: str,
    table: str,
    persist: tuple[str, str],
    frequency: str,
    loaded_at: datetime | None = None,
    state: str = "onboarded",
) -> int:
    """A feed (as detection would have made it, then moved on to ``state`` with its
    persistency table and frequency), with a successful load reported finished at
    ``loaded_at`` when given; its id."""
    if loaded_at is not None:
        started = loaded_at - timedelta(minutes=5)
        await record_load(conn, Load(source, table, 10, "succeeded", started, loaded_at), "t")
    cursor = await conn.execute(
        "INSERT INTO ledgerflow.feeds (source, table_name, first_load_at, state,"
        " persistency_schema, persistency_table, frequency) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (source, table, NOW - timedelta(days=30), state, *persist, frequency),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class World:
    """The seeded database: its connection and the ids of its feeds by source."""

    conn: Conn
    feeds: dict[str, int]


@pytest.fixture
async def world(conn: Conn) -> World:
    """Models reading five tables; onboarded feeds: two healthy (one of them ledgerflow's
    own queue), one persisting into a table no model reads, one into a table that does not
    exist, one (into a name that needs quotes) loaded too long ago; a feed in review for a
    table that is therefore still a gap."""
    await conn.execute(
        "CREATE SCHEMA mart; CREATE TABLE mart.trades (id int); CREATE TABLE mart.quotes (id int);"
        ' CREATE TABLE mart."Risk Limits" (id int); CREATE TABLE mart.positions (id int)'
    )
    await conn.execute(
        "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
        " stored_count, rejected_count, duplicate_count, committed_at)"
        " VALUES ('incoming', 1, 't', 1, 1, 0, 0, %s), ('incoming', 1, 't', 1, 1, 0, 0, %s)",
        (NOW - timedelta(minutes=10), NOW - timedelta(hours=3)),
    )
    queue = ("public", "historical_transactions")
    feeds = {
        "queue:incoming": await add_feed(
            conn, "queue:incoming", "public.historical_transactions", queue, "15 minutes"
        ),
        "murex": await add_feed(
            conn, "murex", "staging.trades", ("mart", "trades"), "daily", NOW - timedelta(hours=1)
        ),
        "calypso": await add_feed(
            conn, "calypso", "staging.quotes", ("mart", "quotes"), "hourly", NOW
        ),
        "bloomberg": await add_feed(
            conn, "bloomberg", "staging.prices", ("mart", "prices"), "daily", NOW
        ),
        "reuters": await add_feed(
            conn,
            "reuters",
            "staging.limits",
            ("mart", "Risk Limits"),
            "weekly",
            NOW - timedelta(days=15),
        ),
        "summit": await add_feed(
            conn,
            "summit",
            "staging.positions",
            ("mart", "positions"),
            "daily",
            NOW,
            state="in_review",
        ),
    }
    await register_model(conn, "pnl", "t", tables=["mart.trades", "mart.positions"])
    await register_model(  # its SQL: a list of tables takes only plain names
        conn,
        "risk",
        "t",
        sql='SELECT * FROM mart.trades, mart.positions, mart.prices, mart."Risk Limits"',
    )
    await register_model(conn, "ledger", "t", tables=["public.historical_transactions"])
    await conn.commit()
    return World(conn, feeds)


def kinds(found: list[Finding] | tuple[Finding, ...]) -> set[tuple[str, str, int | None]]:
    return {(f.kind, f.table_name, f.feed_id) for f in found}


async def test_each_kind_of_finding_is_found_and_healthy_feeds_yield_none(world: World) -> None:
    run = await reconcile(world.conn, "alice", NOW)
    ids = world.feeds
    expected = {
        ("gap", "mart.positions", None),  # its feed is still in review
        ("unused", "mart.quotes", ids["calypso"]),
        ("missing_table", "mart.prices", ids["bloomberg"]),
        ("stale", "mart.Risk Limits", ids["reuters"]),  # weekly, last load 15 days ago
    }
    assert kinds(run.new) == expected  # nothing about mart.trades or the queue's table
    assert (run.tables_read, run.onboarded, run.found, run.closed) == (5, 5, 4, 0)
    assert run.ran_by == "alice" and run.started_at == NOW
    by_kind = {f.kind: f for f in await findings(world.conn)}
    assert kinds(list(by_kind.values())) == expected
    gap = by_kind["gap"]
    assert gap.models == ("pnl", "risk") and gap.feed_source is None
    assert gap.detail == "read by 2 models, no onboarded feed loads it"
    assert by_kind["unused"].feed_source == "calypso"
    assert "no model reads it" in by_kind["unused"].detail
    assert by_kind["missing_table"].detail == (
        "onboarded feed bloomberg persists into it, no such table in the database"
    )
    assert by_kind["missing_table"].models == ("risk",)
    stale = by_kind["stale"]
    assert stale.detail == "last successful load 2026-11-15 06:00 UTC, expected weekly"
    assert (stale.feed_source, stale.models) == ("reuters", ("risk",))
    for finding in by_kind.values():
        assert (finding.status, finding.owner, finding.closed_at) == ("open", None, None)
        assert finding.first_seen_at == finding.last_seen_at == NOW


async def test_a_second_run_keeps_the_ids_and_reports_nothing_new(world: World) -> None:
    first = await reconcile(world.conn, "alice", NOW)
    later = NOW + timedelta(minutes=5)
    second = await reconcile(world.conn, "bob", later)
    assert second.new == () and (second.found, second.new_count, second.closed) == (4, 0, 0)
    assert second.run_id > first.run_id
    again = await findings(world.conn)
    assert sorted(f.id for f in again) == sorted(f.id for f in first.new)
    assert {f.last_seen_at for f in again} == {later}
    assert {f.first_seen_at for f in again} == {NOW}


def stale_sources(run: Reconciliation) -> set[str | None]:
    return {f.feed_source for f in run.new if f.kind == "stale"}


async def test_stale_is_judged_at_the_now_given(world: World) -> None:
    conn = world.conn
    assert stale_sources(await reconcile(conn, "t", NOW)) == {"reuters"}
    # The queue (every 15 minutes, last batch at 05:50) is stale after 06:20, not before.
    assert stale_sources(await reconcile(conn, "t", NOW + timedelta(minutes=19))) == set()
    queue = await reconcile(conn, "t", NOW + timedelta(minutes=21))
    assert [(f.feed_source, f.table_name, f.detail) for f in queue.new] == [
        (
            "queue:incoming",
            "public.historical_transactions",
            "last successful load 2026-11-30 05:50 UTC, expected 15 minutes",
        )
    ]
    # murex (daily, last successful load at 05:00) two days and an hour on, not a minute
    # before; calypso (hourly, last load at 06:00) long before that. Only murex's own
    # successful loads of its own table count.
    day = NOW + timedelta(days=1)
    await record_load(conn, Load("murex", "staging.trades", 0, "failed", day, day), "t")
    await record_load(conn, Load("murex-2", "staging.trades", 1, "succeeded", day, day), "t")
    await record_load(conn, Load("murex", "staging.other", 1, "succeeded", day, day), "t")
    await conn.commit()
    before = await reconcile(conn, "t", NOW + timedelta(days=2, minutes=-61))
    assert stale_sources(before) == {"calypso"}
    after = await reconcile(conn, "t", NOW + timedelta(days=2, minutes=1))
    assert stale_sources(after) == {"murex", "bloomberg"}
    (murex,) = [f for f in after.new if f.feed_source == "murex"]
    assert (murex.table_name, murex.feed_id, murex.models) == (
        "mart.trades",
        world.feeds["murex"],
        ("pnl", "risk"),
    )
    assert murex.detail == "last successful load 2026-11-30 05:00 UTC, expected daily"
    stale = {f.feed_source for f in await findings(conn, kind="stale")}
    assert stale == {"queue:incoming", "murex", "reuters", "calypso", "bloomberg"}


async def test_fixing_a_gap_resolves_it_and_breaking_it_again_reopens_it(world: World) -> None:
    conn = world.conn
    await reconcile(conn, "t", NOW)
    (gap,) = await findings(conn, kind="gap")
    await update_finding(conn, gap.id, "alice", status="investigating")
    await conn.execute("UPDATE ledgerflow.feeds SET state = 'onboarded' WHERE source = 'summit'")
    await conn.commit()
    fixed = await reconcile(conn, "t", NOW + timedelta(minutes=1))
    assert fixed.closed == 1 and fixed.new == ()
    (resolved,) = await findings(conn, kind="gap")
    assert resolved.id == gap.id
    assert (resolved.status, resolved.closed_at) == ("resolved", NOW + timedelta(minutes=1))
    assert resolved.updated_by == "reconciliation"
    assert await findings(conn, status="active", kind="gap") == []

    await conn.execute("UPDATE ledgerflow.feeds SET state = 'on_hold' WHERE source = 'summit'")
    await conn.commit()
    broken = await reconcile(conn, "t", NOW + timedelta(minutes=2))
    assert [(f.id, f.kind, f.status, f.closed_at) for f in broken.new] == [
        (gap.id, "gap", "open", None)
    ]
    (reopened,) = await findings(conn, kind="gap")
    assert reopened.first_seen_at == NOW and reopened.last_seen_at == NOW + timedelta(minutes=2)


async def test_a_dismissed_finding_no_longer_found_is_closed_and_stays_dismissed(
    world: World,
) -> None:
    conn = world.conn
    await reconcile(conn, "t", NOW)
    (missing,) = await findings(conn, kind="missing_table")
    await update_finding(conn, missing.id, "alice", status="dismissed")
    await conn.execute("CREATE TABLE mart.prices (id int)")
    await conn.commit()
    run = await reconcile(conn, "t", NOW)
    assert run.closed == 1
    (closed,) = await findings(conn, kind="missing_table")
    assert (closed.status, closed.closed_at, closed.updated_by) == ("dismissed", NOW, "alice")


async def test_update_finding_sets_owner_and_status_and_audits_it(world: World) -> None:
    conn = world.conn
    run = await reconcile(conn, "t", NOW)
    target = run.new[0]
    owned = await update_finding(conn, target.id, "alice", owner="risk-team")
    assert (owned.owner, owned.status, owned.updated_by) == ("risk-team", "open", "alice")
    assert owned.updated_at is not None
    moved = await update_finding(conn, target.id, "bob", status="investigating")
    assert (moved.owner, moved.status, moved.updated_by) == ("risk-team", "investigating", "bob")
    cleared = await update_finding(conn, target.id, "bob", owner="")
    assert cleared.owner is None and cleared.status == "investigating"
    entries = [e for e in await audit_log(conn) if e["action"] == "finding.update"]
    assert [(e["actor"], e["target"], e["detail"]) for e in entries] == [
        ("bob", str(target.id), {"status": None, "owner": ""}),
        ("bob", str(target.id), {"status": "investigating", "owner": None}),
        ("alice", str(target.id), {"status": None, "owner": "risk-team"}),
    ]
    assert [f.id for f in await findings(conn, status="investigating")] == [target.id]
    assert target.id in {f.id for f in await findings(conn, status="active")}


async def test_update_finding_refuses_a_bad_value_naming_its_field(world: World) -> None:
    conn = world.conn
    (finding, *_) = (await reconcile(conn, "t", NOW)).new
    with pytest.raises(FindingError, match="status: one of open") as bad_status:
        await update_finding(conn, finding.id, "alice", status="closed")
    assert bad_status.value.field == "status"
    with pytest.raises(FindingError) as unknown:
        await update_finding(conn, 999_999, "alice", status="open")
    assert unknown.value.field == "id" and "999999" in str(unknown.value)
    with pytest.raises(FindingError) as bad_owner:
        await update_finding(conn, finding.id, "alice", owner="x" * 65)
    assert bad_owner.value.field == "owner"
    with pytest.raises(FindingError) as control:
        await update_finding(conn, finding.id, "alice", owner="a\nb")
    assert control.value.field == "owner"
    with pytest.raises(FindingError) as nothing:
        await update_finding(conn, finding.id, "alice")
    assert nothing.value.field == "status"
    with pytest.raises(FindingError) as listed:
        await findings(conn, status="closed")
    assert listed.value.field == "status"
    (unchanged,) = [f for f in await findings(conn) if f.id == finding.id]
    assert (unchanged.status, unchanged.owner, unchanged.updated_by) == ("open", None, None)


async def test_findings_list_active_ones_first_then_by_kind_and_table(world: World) -> None:
    conn = world.conn
    await reconcile(conn, "t", NOW + timedelta(days=3))  # every onboarded feed is stale too
    (gap,) = await findings(conn, kind="gap")
    await update_finding(conn, gap.id, "alice", status="dismissed")
    listed = [(f.status, f.kind, f.table_name) for f in await findings(conn)]
    active = [row for row in listed if row[0] == "open"]
    assert listed == [*active, ("dismissed", "gap", "mart.positions")]
    assert [(k, t) for _, k, t in active] == [
        ("unused", "mart.quotes"),
        ("stale", "mart.Risk Limits"),
        ("stale", "mart.prices"),
        ("stale", "mart.quotes"),
        ("stale", "mart.trades"),
        ("stale", "public.historical_transactions"),
        ("missing_table", "mart.prices"),
    ]
    assert len(await findings(conn, limit=2)) == 2
    assert [f.kind for f in await findings(conn, status="dismissed")] == ["gap"]


async def test_csv_has_a_header_and_a_line_a_finding_and_the_pdf_lists_them(
    world: World,
) -> None:
    conn = world.conn
    run = await reconcile(conn, "t", NOW)
    found = await findings(conn)
    lines = findings_csv(found).decode("utf-8").splitlines()
    assert lines[0].split(",") == list(Finding.COLUMNS)
    assert len(lines) == 1 + len(found) == 5
    gap_line = next(line for line in lines if ",gap," in line)
    assert ",mart.positions,,,pnl risk," in gap_line
    document = findings_pdf(found, await last_reconciliation(conn), NOW)
    assert document.startswith(b"%PDF")
    pages = PdfReader(io.BytesIO(document)).pages
    text = "".join("".join(page.extract_text().split()) for page in pages)  # wrapped cells
    for finding in found:
        assert "".join(f"{finding.kind}{finding.table_name}".split()) in text
    assert f"{run.found}findings" in text
    assert findings_pdf([], None, NOW).startswith(b"%PDF")


async def test_last_reconciliation_is_the_newest_run(world: World) -> None:
    conn = world.conn
    assert await last_reconciliation(conn) is None
    first = await reconcile(conn, "alice", NOW)
    assert first.new_count == len(first.new) == 4
    reloaded = await last_reconciliation(conn)
    assert reloaded is not None and reloaded.run_id == first.run_id
    assert (reloaded.new, reloaded.new_count) == ((), 4)  # the count survives, not the list
    await register_model(conn, "audit", "t", tables=["mart.audit"])  # a new gap
    await conn.commit()
    newest = await reconcile(conn, "bob")  # judged at the database's clock
    assert ("gap", "mart.audit", None) in kinds(newest.new)
    assert newest.new_count == len(newest.new)
    loaded = await last_reconciliation(conn)
    assert loaded is not None
    assert loaded == Reconciliation(
        run_id=newest.run_id,
        started_at=newest.started_at,
        seconds=newest.seconds,
        ran_by="bob",
        tables_read=6,
        onboarded=5,
        found=newest.found,
        new=(),
        closed=newest.closed,
        new_count=newest.new_count,
    )
    assert abs(newest.started_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert loaded.as_json()["ran_by"] == "bob"
    assert loaded.as_json()["new_count"] == newest.new_count
    assert newest.as_json()["new_count"] == len(newest.as_json()["new"])


async def test_runs_at_once_never_both_report_the_same_finding_new(
    world: World, db_url: str
) -> None:
    conns = [await psycopg.AsyncConnection.connect(db_url, autocommit=True) for _ in range(4)]
    try:
        runs = await asyncio.gather(*(reconcile(c, f"r{i}", NOW) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(r.new) for r in runs) == [0, 0, 0, 4]
    assert len(await findings(world.conn)) == 4


async def test_reconcile_forever_hands_over_only_runs_that_found_something_new(
    world: World, db_url: str
) -> None:
    handed: list[Reconciliation] = []

    async def on_new(run: Reconciliation) -> None:
        handed.append(run)

    async def three_runs() -> bool:
        return int(await scalar(world.conn, "SELECT count(*) FROM ledgerflow.reconciliations")) >= 3

    task = asyncio.create_task(reconcile_forever(db_url, 0.02, on_new))
    try:
        await eventually(three_runs)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(handed) == 1  # the first run; the next ones found nothing new
    assert handed[0].ran_by == "ledgerflow" and len(handed[0].new) == handed[0].found >= 4


async def test_reconcile_forever_carries_on_when_the_database_fails() -> None:
    async def on_new(run: Reconciliation) -> None:
        raise AssertionError("nothing can be found without a database")

    with capture_logs() as logs:
        task = asyncio.create_task(
            reconcile_forever("postgresql://nobody@127.0.0.1:1/none", 0.01, on_new)
        )
        try:
            await eventually(lambda: sum(e["event"] == "feeds.reconcile_failed" for e in logs) >= 3)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


def etl_log(table: str = "etl.job_runs", finished_at: str = "end_ts") -> LoadLogMapping:
    """The mapping of the ETL tool's job runs (``etl`` below)."""
    columns = f"source=job_name,table=target_table,status=state,finished_at={finished_at}"
    mapping = parse_load_log_mapping(table, columns, "SUCCESS,WARNING")
    assert mapping is not None
    return mapping


async def etl_run(conn: Conn, job: str, table: str, state: str, finished_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO etl.job_runs (job_name, target_table, state, end_ts) VALUES (%s, %s, %s, %s)",
        (job, table, state, finished_at),
    )
    await conn.commit()


@pytest.fixture
async def etl(world: World) -> World:
    """The world, and an ETL tool logging its job runs in a table of its own: an onboarded
    daily feed (into mart.fx, which a model reads) that only the tool's log has loads of,
    the last successful one an hour ago; and a run of reuters' feed two days ago, which
    ledgerflow's log last saw 15 days ago."""
    conn = world.conn
    await conn.execute(
        "CREATE TABLE mart.fx (id int); CREATE SCHEMA etl;"
        " CREATE TABLE etl.job_runs (run_id serial PRIMARY KEY, job_name text,"
        " target_table text, state text, end_ts timestamptz)"
    )
    fx = await add_feed(conn, "etl-fx", "staging.fx", ("mart", "fx"), "daily")
    await register_model(conn, "fx", "t", tables=["mart.fx"])
    await conn.commit()
    for run in (
        ("etl-fx", "staging.fx", "SUCCESS", NOW - timedelta(hours=1)),
        ("etl-fx", "staging.fx", "FAILED", NOW - timedelta(minutes=10)),  # not a success
        ("etl-fx", "staging.other", "SUCCESS", NOW + timedelta(days=3)),  # not its table
        ("etl-other", "staging.fx", "SUCCESS", NOW + timedelta(days=3)),  # not its source
        ("reuters", "staging.limits", "WARNING", NOW - timedelta(days=2)),
    ):
        await etl_run(conn, *run)
    return World(conn, {**world.feeds, "etl-fx": fx})


async def stale_at(conn: Conn, moment: datetime, external: LoadLogMapping | None) -> set[str]:
    """The sources of the feeds found stale by a run at ``moment``."""
    await reconcile(conn, "t", moment, external=external)
    return {f.feed_source or "" for f in await findings(conn, status="active", kind="stale")}


async def test_a_feed_loaded_only_through_the_mapped_log_is_stale_once_its_loads_stop(
    etl: World,
) -> None:
    conn = etl.conn
    # ledgerflow's log alone has no load of etl-fx, and reuters' last is 15 days old.
    assert await stale_at(conn, NOW, None) == {"etl-fx", "reuters"}
    assert await stale_at(conn, NOW, etl_log()) == set()
    # etl-fx is daily, its last successful run finished at 05:00: stale two days later.
    due = NOW + timedelta(days=2, hours=-1)
    assert "etl-fx" not in await stale_at(conn, due - timedelta(minutes=1), etl_log())
    assert "etl-fx" in await stale_at(conn, due + timedelta(minutes=1), etl_log())
    (stale,) = [f for f in await findings(conn, kind="stale") if f.feed_source == "etl-fx"]
    assert (stale.table_name, stale.feed_id, stale.models) == (
        "mart.fx",
        etl.feeds["etl-fx"],
        ("fx",),
    )
    assert stale.detail == "last successful load 2026-11-30 05:00 UTC, expected daily"
    # Its runs come again: no longer stale (the finding resolved), until they stop again.
    await etl_run(conn, "etl-fx", "staging.fx", "SUCCESS", due)
    assert "etl-fx" not in await stale_at(conn, due + timedelta(minutes=1), etl_log())
    (resolved,) = [f for f in await findings(conn, kind="stale") if f.feed_source == "etl-fx"]
    assert (resolved.id, resolved.status) == (stale.id, "resolved")
    assert "etl-fx" in await stale_at(conn, due + timedelta(days=2, minutes=1), etl_log())
    # Loads in both logs: the later counts (reuters' run two days ago, not its load
    # ledgerflow logged 15 days ago), whichever log has it.
    assert "reuters" not in await stale_at(conn, NOW + timedelta(days=11), etl_log())
    assert "reuters" in await stale_at(conn, NOW + timedelta(days=12, minutes=1), etl_log())


@pytest.mark.parametrize(
    ("table", "finished_at", "says"),
    [
        ("etl.job_runs", "ended_at", '"ended_at" does not exist'),
        ("etl.no_such_runs", "end_ts", '"etl.no_such_runs" does not exist'),
    ],
)
async def test_an_unreadable_mapped_log_is_logged_and_the_rest_still_found(
    etl: World, table: str, finished_at: str, says: str
) -> None:
    conn = etl.conn
    with capture_logs() as logs:
        run = await reconcile(conn, "alice", NOW, external=etl_log(table, finished_at))
    (warning,) = [e for e in logs if e["event"] == "feeds.load_log_unreadable"]
    assert warning["log_level"] == "warning" and warning["table"] == table
    assert says in warning["error"]
    ids = etl.feeds
    assert kinds(run.new) == {  # judged by ledgerflow's log alone
        ("gap", "mart.positions", None),
        ("unused", "mart.quotes", ids["calypso"]),
        ("missing_table", "mart.prices", ids["bloomberg"]),
        ("stale", "mart.Risk Limits", ids["reuters"]),
        ("stale", "mart.fx", ids["etl-fx"]),
    }
    assert kinds(await findings(conn)) == kinds(run.new)  # the transaction carried on
    recorded = await last_reconciliation(conn)
    assert recorded is not None and (recorded.run_id, recorded.found) == (run.run_id, 5)


async def test_reconcile_forever_reads_the_mapped_log(etl: World, db_url: str) -> None:
    conn = etl.conn
    # Runs judge at the database's clock: the tool's runs are recent by it.
    await conn.execute(
        "UPDATE etl.job_runs SET end_ts = now() - interval '1 hour' WHERE state = 'SUCCESS'"
    )
    await conn.commit()

    async def on_new(run: Reconciliation) -> None:
        pass

    async def a_run() -> bool:
        return int(await scalar(conn, "SELECT count(*) FROM ledgerflow.reconciliations")) >= 1

    task = asyncio.create_task(reconcile_forever(db_url, 0.02, on_new, external=etl_log()))
    try:
        await eventually(a_run)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stale = {f.feed_source for f in await findings(conn, kind="stale")}
    assert "etl-fx" not in stale and "reuters" not in stale


async def test_new_findings_are_told_in_the_run_s_transaction_or_not_recorded(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await conn.set_autocommit(True)
    await conn.execute("INSERT INTO ledgerflow.models (name, registered_by) VALUES ('m', 't')")
    await conn.execute(
        "INSERT INTO ledgerflow.model_tables (model_id, table_name)"
        " SELECT id, 'md.quotes' FROM ledgerflow.models"
    )

    async def broken(_conn: psycopg.AsyncConnection[Any], _new: Any) -> None:
        raise psycopg.OperationalError("the mail could not be written")

    with pytest.raises(psycopg.OperationalError):
        await reconcile(conn, "t", tell=broken)
    told: list[str] = []

    async def tell(_conn: psycopg.AsyncConnection[Any], new: Any) -> None:
        told.extend(f.table_name for f in new)

    again = await reconcile(conn, "t", tell=tell)
    assert again.new_count == 1 and told == ["md.quotes"]  # not lost with the first run

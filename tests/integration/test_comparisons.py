"""Comparisons by message id on real PostgreSQL and Redis: the built-in source (queue ->
historical_transactions -> KeyDB), a configured source, the results, and the commands.
The lineage each test compares is written by comparison_data, outcome by outcome."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from ledgerflow.cli.reconcile import reconcile_command, sources_command
from ledgerflow.lineage.comparisons import (
    comparison_items,
    get_comparison,
    last_comparisons,
    reconcile,
)
from ledgerflow.lineage.results import Item
from ledgerflow.lineage.sources import SourceError, list_sources, remove_source, save_source
from ledgerflow.settings import load_settings

from .comparison_data import clean_pipeline, configured_tables, messy_pipeline, on_database

pytestmark = pytest.mark.integration


def found(items: list[Item]) -> set[tuple[str, str, str, bool, str | None]]:
    return {(i.kind, i.stages, i.item_id, i.explained, i.explanation) for i in items}


async def test_the_built_in_source_finds_exactly_the_unexplained_messages_rows_and_keys(
    conn: psycopg.AsyncConnection[Any], redis_url: str
) -> None:
    seeded = await messy_pipeline(conn, redis_url)
    result = await reconcile(conn, redis_url, "ledgerflow", "tester")

    assert result.unexplained == 4
    assert result.explained == 6
    pair, keys = result.stages
    assert (pair.left_ids, pair.right_ids) == (8, 8)  # 9 delivered, one of them again (A)
    assert (pair.missing, pair.missing_explained, pair.foreign, pair.foreign_explained) == (
        4,
        3,
        4,
        3,
    )
    assert pair.explanations == {
        "filtered by rule big-values v2": 1,
        "rejected: invalid_json": 1,
        "duplicate": 1,
        "loaded before ledgerflow's first batch": 3,
    }
    assert (keys.left_ids, keys.right_ids, keys.mismatched, keys.foreign) == (2, 3, 1, 1)

    items = await comparison_items(conn, result.comparison_id)
    assert found(items) == {
        ("missing", "source-persistency", "m-3", True, "filtered by rule big-values v2"),
        ("missing", "source-persistency", seeded.rejected_hash, True, "rejected: invalid_json"),
        (
            "missing",
            "source-persistency",
            "m-1",
            True,
            f"duplicate of a message counted in batch {seeded.first_batch}",
        ),
        ("missing", "source-persistency", "m-5", False, None),
        *(
            (
                "foreign",
                "source-persistency",
                str(row),
                True,
                "loaded before ledgerflow's first batch",
            )
            for row in (1, 2, 3)
        ),
        ("foreign", "source-persistency", str(seeded.foreign_row), False, None),
        ("mismatch", "persistency-target", "2_Mastercard", False, None),
        ("foreign", "persistency-target", "3_Amex", False, None),
    }
    assert len(items) == 10
    filtered = next(i for i in items if i.item_id == "m-3")
    assert (filtered.rule_version_id, filtered.batch_id, filtered.position) == (
        seeded.rule_v2,
        seeded.first_batch,
        2,
    )
    gone = next(i for i in items if i.item_id == "m-5")
    assert f"historical_transactions.id {seeded.gone_row}" in (gone.detail or "")
    mismatch = next(i for i in items if i.kind == "mismatch")
    assert (mismatch.expected, mismatch.actual) == ("1907", "1900")
    assert {i.item_id for i in result.items} == {
        "m-5",
        str(seeded.foreign_row),
        "2_Mastercard",
        "3_Amex",
    }


async def test_counts_stay_exact_when_fewer_explained_items_are_kept(
    conn: psycopg.AsyncConnection[Any], redis_url: str
) -> None:
    await messy_pipeline(conn, redis_url)
    result = await reconcile(conn, redis_url, "ledgerflow", "tester", explained_limit=2)

    assert (result.explained, result.explained_kept, result.unexplained) == (6, 2, 4)
    items = await comparison_items(conn, result.comparison_id)
    assert sum(i.explained for i in items) == 2
    assert sum(not i.explained for i in items) == 4  # every unexplained item is kept


async def test_a_clean_pipeline_has_nothing_unexplained(
    conn: psycopg.AsyncConnection[Any], redis_url: str
) -> None:
    await clean_pipeline(conn, redis_url)
    result = await reconcile(conn, redis_url, "ledgerflow", "tester")
    assert result.unexplained == 0
    assert result.explained == 5  # filtered, rejected, the three fixture rows
    assert result.items == []


async def test_a_configured_source_explains_missing_ids_from_the_lineage_and_flags_the_rest(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    batches = await configured_tables(conn)
    await save_source(
        conn,
        "orders",
        "orders_in",
        "order_id",
        "public.orders_kept",
        "order_ref",
        "orders_out",
        "ref",
        created_by="tester",
    )
    result = await reconcile(conn, None, "orders", "tester")

    first, second = result.stages
    assert (first.left, first.right) == (
        "public.orders_in.order_id",
        "public.orders_kept.order_ref",
    )
    assert (first.left_ids, first.right_ids, second.right_ids) == (13, 9, 7)
    assert (first.missing, first.missing_explained, first.foreign) == (5, 3, 1)
    assert first.explanations == {
        "filtered by rule test-provider v1": 1,
        "rejected: unknown_provider": 1,
        "duplicate": 1,
    }
    assert (second.missing, second.missing_explained, second.foreign) == (3, 0, 1)
    assert result.unexplained == 7
    items = await comparison_items(conn, result.comparison_id)
    assert found(items) == {
        ("missing", "source-persistency", "103", True, "filtered by rule test-provider v1"),
        ("missing", "source-persistency", "106", True, "rejected: unknown_provider"),
        (
            "missing",
            "source-persistency",
            "111",
            True,
            f"duplicate of a message counted in batch {batches['duplicate']}",
        ),
        ("missing", "source-persistency", "112", False, None),
        ("missing", "source-persistency", "113", False, None),
        ("foreign", "source-persistency", "999", False, None),
        ("missing", "persistency-target", "109", False, None),
        ("missing", "persistency-target", "110", False, None),
        ("missing", "persistency-target", "999", False, None),
        ("foreign", "persistency-target", "555", False, None),
    }
    details = {i.item_id: i.detail for i in items if i.kind == "missing" and not i.explained}
    assert details["112"] == f"ledgerflow stored it: batch {batches['stored']}, position 0"
    assert details["113"] == "not in ledgerflow's lineage"


@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("source_table", ("no_such_table", "order_id", "orders_kept", "order_ref")),
        ("source_id", ("orders_in", "no_such_column", "orders_kept", "order_ref")),
        ("persistency_table", ("orders_in", "order_id", "nowhere.orders_kept", "order_ref")),
        ("persistency_id", ("orders_in", "order_id", "orders_kept", "id2")),
        ("target_table", ("orders_in", "order_id", "orders_kept", "order_ref", "gone", "ref")),
        ("target_id", ("orders_in", "order_id", "orders_kept", "order_ref", "orders_out", "x")),
        ("target_id", ("orders_in", "order_id", "orders_kept", "order_ref", "orders_out")),
        ("name", ("orders_in", "order_id", "orders_kept", "order_ref", "orders_out", "ref")),
    ],
)
async def test_a_bad_source_definition_is_refused_naming_the_field(
    conn: psycopg.AsyncConnection[Any], field: str, arguments: tuple[str, ...]
) -> None:
    await configured_tables(conn)
    name = "ledgerflow" if field == "name" else "orders"
    with pytest.raises(SourceError) as refused:
        await save_source(conn, name, *arguments, created_by="tester")
    assert refused.value.field == field
    assert [s.name for s in await list_sources(conn)] == ["ledgerflow"]


async def test_a_table_dropped_after_saving_fails_the_run_naming_the_field(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await configured_tables(conn)
    await save_source(
        conn, "orders", "orders_in", "order_id", "orders_kept", "order_ref", created_by="tester"
    )
    await conn.execute("DROP TABLE orders_kept")
    await conn.commit()
    with pytest.raises(SourceError) as refused:
        await reconcile(conn, None, "orders", "tester")
    assert refused.value.field == "persistency_table"
    assert await last_comparisons(conn) == []  # nothing half-done is recorded


async def test_runs_are_listed_newest_first_with_their_items_in_pages(
    conn: psycopg.AsyncConnection[Any], redis_url: str
) -> None:
    await messy_pipeline(conn, redis_url)
    first = await reconcile(conn, redis_url, "ledgerflow", "alice")
    second = await reconcile(conn, redis_url, "ledgerflow", "bob", explained_limit=0)

    runs = await last_comparisons(conn, limit=10)
    assert [(r.comparison_id, r.ran_by) for r in runs] == [
        (second.comparison_id, "bob"),
        (first.comparison_id, "alice"),
    ]
    assert await last_comparisons(conn, 10, source="orders") == []
    stored = await get_comparison(conn, first.comparison_id)
    assert stored is not None and stored.stages == first.stages
    pages = [
        await comparison_items(conn, first.comparison_id, False, 3, offset)
        for offset in (0, 3, 6, 9)
    ]
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert [i.explained for page in pages for i in page] == [False] * 4 + [True] * 6
    unexplained = await comparison_items(conn, second.comparison_id, True, 100, 0)
    assert len(unexplained) == 4 and not any(i.explained for i in unexplained)


def cli(db_url: str, redis_url: str, command: Any, *args: str) -> Any:
    settings = load_settings(database_url=db_url, redis_url=redis_url)
    return CliRunner().invoke(command, list(args), obj=settings)


def test_the_cli_exits_1_and_names_the_unexplained_ids(db_url: str, redis_url: str) -> None:
    seeded = on_database(db_url, lambda conn: messy_pipeline(conn, redis_url))
    done = cli(db_url, redis_url, reconcile_command)
    assert done.exit_code == 1, done.output
    assert "4 unexplained" in done.stdout
    for name in ("m-5", str(seeded.foreign_row), "2_Mastercard", "3_Amex"):
        assert f" {name} " in done.stdout
    assert "filtered by rule big-values v2" in done.stdout

    as_json = cli(db_url, redis_url, reconcile_command, "ledgerflow", "--json", "--items", "2")
    assert as_json.exit_code == 1
    parsed = json.loads(as_json.stdout)
    assert parsed["unexplained"] == 4 and len(parsed["items"]) == 2
    assert parsed["stages"][0]["explanations"]["duplicate"] == 1


def test_the_cli_json_parses_and_exits_0_on_a_clean_pipeline(db_url: str, redis_url: str) -> None:
    on_database(db_url, lambda conn: clean_pipeline(conn, redis_url))
    done = cli(db_url, redis_url, reconcile_command, "--json")
    assert done.exit_code == 0, done.output
    parsed = json.loads(done.stdout)
    assert (parsed["source"], parsed["unexplained"], parsed["items"]) == ("ledgerflow", 0, [])
    assert [s["stages"] for s in parsed["stages"]] == ["source-persistency", "persistency-target"]


def test_sources_are_added_listed_compared_and_removed_from_the_cli(
    db_url: str, redis_url: str
) -> None:
    on_database(db_url, configured_tables)
    refused = cli(
        db_url, redis_url, sources_command, "add", "orders", "--source-table", "orders_in",
        "--source-id", "nope", "--persistency-table", "orders_kept", "--persistency-id", "order_ref",
    )  # fmt: skip
    assert refused.exit_code == 2
    assert "--source-id: public.orders_in has no column nope" in refused.output

    added = cli(
        db_url, redis_url, sources_command, "add", "orders", "--source-table", "orders_in",
        "--source-id", "order_id", "--persistency-table", "orders_kept", "--persistency-id", "order_ref",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = cli(db_url, redis_url, sources_command, "list", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["ledgerflow", "orders"]
    compared = cli(db_url, redis_url, reconcile_command, "orders")
    assert compared.exit_code == 1  # 112 and 113 missing, 999 foreign
    assert " 113 " in compared.stdout

    assert cli(db_url, redis_url, sources_command, "remove", "orders").exit_code == 0
    gone = cli(db_url, redis_url, reconcile_command, "orders")
    assert gone.exit_code == 2
    assert "SOURCE: no source named orders" in gone.output
    audited = on_database(db_url, audit_actions)
    assert audited == ["source.add", "source.remove"]


async def audit_actions(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    cursor = await conn.execute("SELECT action FROM ledgerflow.audit_log ORDER BY id")
    return [row[0] for row in await cursor.fetchall()]


async def test_the_built_in_source_cannot_be_removed(conn: psycopg.AsyncConnection[Any]) -> None:
    with pytest.raises(SourceError, match="built-in"):
        await remove_source(conn, "ledgerflow")
    with pytest.raises(SourceError, match="no source named nope"):
        await remove_source(conn, "nope")


async def test_stage_sizes_are_distinct_ids_with_or_without_a_unique_index(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await configured_tables(conn)
    # orders_kept holds 110 twice and has no index on order_ref; orders_out has none
    await save_source(
        conn, "plain", "orders_kept", "order_ref", "orders_out", "ref", created_by="tester"
    )
    await save_source(
        conn, "backwards", "orders_kept", "order_ref", "orders_in", "order_id", created_by="tester"
    )
    plain = await reconcile(conn, None, "plain", "tester")
    backwards = await reconcile(conn, None, "backwards", "tester")
    assert [(s.left_ids, s.right_ids, s.missing, s.foreign) for s in plain.stages] == [(9, 7, 3, 1)]
    assert [(s.left_ids, s.right_ids, s.missing, s.foreign) for s in backwards.stages] == [
        (9, 13, 1, 5)
    ]

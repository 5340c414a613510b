"""Comparisons by message id: which ids one stage holds and the next lacks, which the next
holds that nothing explains, each one explained where ledgerflow's lineage can.

``reconcile`` runs one comparison of a data source (the built-in ``ledgerflow``, or one
configured with ``save_source``) and stores it: one row in ``ledgerflow.comparisons``
with exact counts per stage pair, and in ``ledgerflow.comparison_items`` every
unexplained item and up to ``explained_limit`` explained ones. ``last_comparisons``,
``get_comparison`` and ``comparison_items`` read them back.

Everything is done in SQL, in one REPEATABLE READ transaction: every stage is read from
the same snapshot (the writer commits a batch and its rows together, so they are seen
together or not at all), and each kind of item is found and stored by one statement
(INSERT ... SELECT), never id by id. The transaction writes only the comparison's own
rows; it cannot be READ ONLY because it stores the items as it finds them.

The anti-joins are NOT EXISTS. Measured by bench/reconcile.py (2 CPUs, the source's ids
absent from the persistency table, one and ten million text ids a side): NOT EXISTS 0.53
and 7.8 s, LEFT JOIN ... IS NULL 0.51 and 7.6 s (PostgreSQL plans both as the same hash
anti-join, which spills to disk in batches when the ids outgrow work_mem), EXCEPT 0.77
and 10.3 s (a hashed set operation holding every distinct id of both sides in memory,
which cannot spill). Making all the source's ids distinct before the anti-join doubled
its time (1.33 s at a million): the ids are anti-joined first, and only the few missing
ones are made distinct. NOT EXISTS over NOT IN: a NULL id would make NOT IN find nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, LiteralString

import psycopg
import redis.asyncio as redis
from psycopg import pq, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledgerflow.db.queries import Queries
from ledgerflow.lineage import builtin
from ledgerflow.lineage.results import (
    PERSISTENCY_TARGET,
    SOURCE_PERSISTENCY,
    Comparison,
    ComparisonError,
    ComparisonResult,
    Item,
    StageCounts,
    Stages,
)
from ledgerflow.lineage.sources import DataSource, SourceError, Stage, get_source, recheck

QUERIES = Queries.of("ledgerflow.lineage")
EXPLAINED_LIMIT = 10_000  # explained items stored per run; the counts are always exact
FIRST_ITEMS = 20  # unexplained items a result carries (all are in comparison_items)


async def reconcile(
    conn: psycopg.AsyncConnection[Any],
    redis_client_or_url: redis.Redis | str | None,
    source: str,
    ran_by: str,
    explained_limit: int = EXPLAINED_LIMIT,
    *,
    first_items: int = FIRST_ITEMS,
) -> ComparisonResult:
    """Compare ``source`` and store the result; return it with its first unexplained items.

    ``redis_client_or_url`` is where the built-in source's balances are published (a
    client, or a URL to connect to for this run); configured sources do not use it.
    ``conn`` must not be inside a transaction. Raises SourceError (naming the field) for an
    unknown source or one whose table or column went away, ComparisonError when KeyDB
    cannot be read.
    """
    if explained_limit < 0:
        raise ValueError("explained_limit must be 0 or more")
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ComparisonError("reconcile needs a connection that is not in a transaction")
    definition = await get_source(conn, source)
    if definition is None:
        raise SourceError("name", f"no source named {source}")
    target = await _read_target(conn, redis_client_or_url) if definition.built_in else None
    async with conn.transaction():
        await conn.execute(QUERIES["repeatable_read"])
        await conn.execute(QUERIES["comparison_memory"])
        cursor = await conn.execute(
            QUERIES["insert_comparison"], {"source": source, "ran_by": ran_by}
        )
        row = await cursor.fetchone()
        assert row is not None
        comparison_id: int = row[0]
        if target is not None:
            stages, kept = await builtin.compare(conn, comparison_id, explained_limit, target)
        else:
            checked = await recheck(conn, definition)
            stages, kept = await _compare_configured(conn, comparison_id, explained_limit, checked)
        await conn.execute(
            QUERIES["finish_comparison"],
            {
                "id": comparison_id,
                "counts": Jsonb({"stages": [stage.as_json() for stage in stages]}),
                "unexplained": sum(stage.unexplained for stage in stages),
                "explained": sum(stage.explained for stage in stages),
                "explained_kept": kept,
            },
        )
    comparison = await get_comparison(conn, comparison_id)
    assert comparison is not None
    items = await comparison_items(conn, comparison_id, True, first_items, 0)
    return ComparisonResult(**vars(comparison), items=items)


async def _read_target(
    conn: psycopg.AsyncConnection[Any], client_or_url: redis.Redis | str | None
) -> builtin.TargetCheck:
    if client_or_url is None:
        return builtin.TargetCheck(False, "no KeyDB given: not compared")
    if not isinstance(client_or_url, str):
        return await builtin.read_target(conn, client_or_url)
    client = redis.Redis.from_url(client_or_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return await builtin.read_target(conn, client)
    finally:
        await client.aclose()


def _compose(query: LiteralString, left: Stage, right: Stage) -> sql.Composed:
    """A configured_* query with the two stages' tables and id columns as identifiers."""
    return sql.SQL(query).format(
        left_table=left.table_sql(),
        left_id=left.id_sql(),
        right_table=right.table_sql(),
        right_id=right.id_sql(),
    )


async def _ids(conn: psycopg.AsyncConnection[Any], stage: Stage) -> int:
    """How many distinct ids a stage holds: its non-null ids when a unique index says
    each row's is its own (a count, no hashing), else its distinct ones."""
    query = QUERIES["configured_ids_unique"] if stage.unique else QUERIES["configured_ids"]
    cursor = await conn.execute(sql.SQL(query).format(table=stage.table_sql(), id=stage.id_sql()))
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _compare_pair(
    conn: psycopg.AsyncConnection[Any],
    comparison_id: int,
    explained_limit: int,
    stages: Stages,
    left: Stage,
    right: Stage,
) -> tuple[StageCounts, int]:
    """One stage pair of a configured source: its missing ids (explained from the lineage
    where possible) and foreign ids, stored; their counts (the stages' sizes left out)
    and how many explained items were stored."""
    cursor = await conn.execute(
        _compose(QUERIES["configured_missing"], left, right),
        {"comparison_id": comparison_id, "stages": stages, "explained_limit": explained_limit},
    )
    explanations: dict[str, int] = {}
    missing = kept = 0
    for label, n, stored in await cursor.fetchall():
        missing += n
        kept = stored
        if label is not None:
            explanations[label] = n
    cursor = await conn.execute(
        _compose(QUERIES["configured_foreign"], left, right),
        {
            "comparison_id": comparison_id,
            "stages": stages,
            "detail": f"in {right.label}, not in {left.label}",
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    counts = StageCounts(
        stages,
        left.label,
        right.label,
        missing=missing,
        missing_explained=sum(explanations.values()),
        foreign=row[0],
        explanations=explanations,
    )
    return counts, kept


async def _compare_configured(
    conn: psycopg.AsyncConnection[Any],
    comparison_id: int,
    explained_limit: int,
    source: DataSource,
) -> tuple[list[StageCounts], int]:
    """Compare a configured source in the caller's snapshot: source -> persistency, then
    persistency -> target when it has one.

    Only one stage's ids are counted: distinct ids of one stage are those it shares with
    the next plus the missing ones, and the next's are the shared ones plus the foreign
    ones, so each other stage's size follows exactly (next = this - missing + foreign).
    The stage counted is one a unique index covers, where a count needs no hashing
    (counting ten million distinct ids costs as much as an anti-join, measured).
    """
    assert source.source is not None and source.persistency is not None
    chain = [source.source, source.persistency]
    if source.target is not None:
        chain.append(source.target)
    names = [SOURCE_PERSISTENCY, PERSISTENCY_TARGET]
    pairs: list[StageCounts] = []
    kept = 0
    for index in range(len(chain) - 1):
        counts, stored = await _compare_pair(
            conn, comparison_id, explained_limit - kept, names[index], *chain[index : index + 2]
        )
        pairs.append(counts)
        kept += stored
    anchor = next((i for i, stage in enumerate(chain) if stage.unique), 0)
    sizes = {anchor: await _ids(conn, chain[anchor])}
    for i in range(anchor + 1, len(chain)):
        sizes[i] = sizes[i - 1] - pairs[i - 1].missing + pairs[i - 1].foreign
    for i in range(anchor - 1, -1, -1):
        sizes[i] = sizes[i + 1] + pairs[i].missing - pairs[i].foreign
    results = [
        replace(counts, left_ids=sizes[i], right_ids=sizes[i + 1]) for i, counts in enumerate(pairs)
    ]
    return results, kept


async def get_comparison(
    conn: psycopg.AsyncConnection[Any], comparison_id: int
) -> Comparison | None:
    """One stored run, or None."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["comparison"], {"id": comparison_id})
        row = await cursor.fetchone()
    return None if row is None else Comparison.from_row(row)


async def last_comparisons(
    conn: psycopg.AsyncConnection[Any], limit: int = 20, source: str | None = None
) -> list[Comparison]:
    """The newest runs first, of every source or of ``source``."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["last_comparisons"], {"limit": limit, "source": source})
        rows = await cursor.fetchall()
    return [Comparison.from_row(row) for row in rows]


async def comparison_items(
    conn: psycopg.AsyncConnection[Any],
    comparison_id: int,
    only_unexplained: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[Item]:
    """One page of a run's items, unexplained ones first, each group in the order found."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            QUERIES["comparison_items"],
            {
                "comparison_id": comparison_id,
                "only_unexplained": only_unexplained,
                "limit": limit,
                "offset": offset,
            },
        )
        rows = await cursor.fetchall()
    return [Item(**row) for row in rows]

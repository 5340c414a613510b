"""Data sources: what a comparison by message id compares.

A configured source names three stages, each a table (or view) and the column holding
the message id: the *source* (where messages come from), the *persistency* table (where
they are kept) and, optionally, a *target* (where they go next). Names are checked
against PostgreSQL's catalog when the source is saved, and again before each run (a table
may be dropped or renamed in between); a wrong name is refused with a ``SourceError``
naming the field. The built-in source ``ledgerflow`` is ledgerflow's own pipeline and is
not stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ledgerflow.db.queries import Queries
from ledgerflow.lineage.results import BUILT_IN

QUERIES = Queries.of("ledgerflow.lineage")
# As rules are named (migration 016); the database checks it too.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# What each stage of the built-in source is, as the results name it.
BUILT_IN_STAGES = ("queue (ledgerflow.batches)", "historical_transactions", "KeyDB")


class SourceError(ValueError):
    """A data source that cannot be saved or compared, with the field that is wrong:
    name, source_table, source_id, persistency_table, persistency_id, target_table or
    target_id."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Stage:
    """One stage of a configured source: a table (or view) and its message-id column."""

    schema: str
    table: str
    id_column: str
    unique: bool = False  # a unique index covers the column (each row its own id)

    @property
    def label(self) -> str:
        """``schema.table.column``, as results and listings show it."""
        return f"{self.schema}.{self.table}.{self.id_column}"

    def table_sql(self) -> sql.Identifier:
        """The table, quoted for a composed statement."""
        return sql.Identifier(self.schema, self.table)

    def id_sql(self) -> sql.Identifier:
        """The id column, quoted for a composed statement."""
        return sql.Identifier(self.id_column)


@dataclass(frozen=True)
class DataSource:
    """A source to compare: the built-in one (no stages stored) or a configured one."""

    name: str
    source: Stage | None = None
    persistency: Stage | None = None
    target: Stage | None = None
    created_by: str | None = None
    created_at: datetime | None = None

    @property
    def built_in(self) -> bool:
        """Whether this is ledgerflow's own pipeline."""
        return self.name == BUILT_IN

    def labels(self) -> tuple[str, str, str | None]:
        """What the source, persistency and target stages are, for people."""
        if self.source is None or self.persistency is None:
            return BUILT_IN_STAGES
        return (
            self.source.label,
            self.persistency.label,
            self.target.label if self.target else None,
        )

    def as_json(self) -> dict[str, Any]:
        """The source as the API and ``sources list`` show it."""
        source, persistency, target = self.labels()
        return {
            "name": self.name,
            "built_in": self.built_in,
            "source": source,
            "persistency": persistency,
            "target": target,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


BUILT_IN_SOURCE = DataSource(BUILT_IN)


def _split_table(text: str, field: str) -> tuple[str | None, str]:
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise SourceError(field, f"{text!r} is not a table name (give table or schema.table)")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


async def _find_table(
    conn: psycopg.AsyncConnection[Any], schema: str | None, table: str
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["find_table"], {"schema": schema, "table": table})
        return await cursor.fetchone()


async def _find_column(
    conn: psycopg.AsyncConnection[Any], schema: str, table: str, column: str
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            QUERIES["find_column"], {"schema": schema, "table": table, "column": column}
        )
        return await cursor.fetchone()


async def check_stage(
    conn: psycopg.AsyncConnection[Any], stage: str, table: str, column: str
) -> Stage:
    """The stage ``stage`` (source, persistency or target) as the catalog knows it, or a
    SourceError naming ``<stage>_table`` or ``<stage>_id``.

    A name is looked up as written, then folded to lower case as PostgreSQL folds an
    unquoted name (``Orders`` finds the table created as ``orders``). A table without a
    schema is the first one the search path finds.
    """
    table_field, id_field = f"{stage}_table", f"{stage}_id"
    schema, name = _split_table(table, table_field)
    found = await _find_table(conn, schema, name)
    if found is None and (schema, name) != (low := (_lower(schema), name.lower())):
        found = await _find_table(conn, *low)
    if found is None:
        where = f"schema {schema}" if schema else "the search path"
        raise SourceError(table_field, f"no table or view {name} in {where}")
    if not found["readable"]:
        raise SourceError(table_field, f"no permission to read {found['nspname']}.{name}")
    schema, name = found["nspname"], found["relname"]
    if not column.strip():
        raise SourceError(id_field, "give the column holding the message id")
    attribute = await _find_column(conn, schema, name, column)
    if attribute is None and column != column.lower():
        attribute = await _find_column(conn, schema, name, column.lower())
    if attribute is None:
        raise SourceError(id_field, f"{schema}.{name} has no column {column}")
    return Stage(schema, name, attribute["attname"], attribute["is_unique"])


def _lower(text: str | None) -> str | None:
    return None if text is None else text.lower()


async def recheck(conn: psycopg.AsyncConnection[Any], source: DataSource) -> DataSource:
    """The source with each stage checked against the catalog again (and whether a unique
    index covers its column now); a SourceError if a table or column went away."""
    checked: dict[str, Stage | None] = {}
    for stage in ("source", "persistency", "target"):
        known: Stage | None = getattr(source, stage)
        checked[stage] = (
            None
            if known is None
            else await check_stage(conn, stage, f"{known.schema}.{known.table}", known.id_column)
        )
    return DataSource(
        source.name,
        checked["source"],
        checked["persistency"],
        checked["target"],
        source.created_by,
        source.created_at,
    )


async def save_source(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    source_table: str,
    source_id: str,
    persistency_table: str,
    persistency_id: str,
    target_table: str | None = None,
    target_id: str | None = None,
    *,
    created_by: str,
) -> DataSource:
    """Check a data source against the catalog and store it; raise SourceError (naming the
    field) when a name is malformed, taken, or names no table or column."""
    if not NAME.match(name):
        raise SourceError(
            "name", "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64"
        )
    if name == BUILT_IN:
        raise SourceError("name", f"{BUILT_IN} is the built-in source")
    if bool(target_table) != bool(target_id):
        missing = "target_id" if target_table else "target_table"
        raise SourceError(missing, "give both the target table and its id column, or neither")
    try:
        async with conn.transaction():
            source = await check_stage(conn, "source", source_table, source_id)
            persistency = await check_stage(conn, "persistency", persistency_table, persistency_id)
            target = (
                await check_stage(conn, "target", target_table, target_id)
                if target_table and target_id
                else None
            )
            cursor = await conn.execute(
                QUERIES["insert_source"],
                {
                    "name": name,
                    "source_schema": source.schema,
                    "source_table": source.table,
                    "source_id": source.id_column,
                    "persistency_schema": persistency.schema,
                    "persistency_table": persistency.table,
                    "persistency_id": persistency.id_column,
                    "target_schema": target.schema if target else None,
                    "target_table": target.table if target else None,
                    "target_id": target.id_column if target else None,
                    "created_by": created_by,
                },
            )
            row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation:
        raise SourceError("name", f"a source named {name} exists (remove it first)") from None
    assert row is not None
    return DataSource(name, source, persistency, target, created_by, row[0])


def _source(row: dict[str, Any]) -> DataSource:
    def stage(prefix: str) -> Stage | None:
        if row[f"{prefix}_table"] is None:
            return None
        return Stage(row[f"{prefix}_schema"], row[f"{prefix}_table"], row[f"{prefix}_id_column"])

    return DataSource(
        row["name"],
        stage("source"),
        stage("persistency"),
        stage("target"),
        row["created_by"],
        row["created_at"],
    )


async def list_sources(conn: psycopg.AsyncConnection[Any]) -> list[DataSource]:
    """Every data source: the built-in one first, then the configured ones by name."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["sources"], {"name": None})
        rows = await cursor.fetchall()
    return [BUILT_IN_SOURCE, *(_source(row) for row in rows)]


async def get_source(conn: psycopg.AsyncConnection[Any], name: str) -> DataSource | None:
    """The data source called ``name``, or None."""
    if name == BUILT_IN:
        return BUILT_IN_SOURCE
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["sources"], {"name": name})
        row = await cursor.fetchone()
    return None if row is None else _source(row)


async def remove_source(conn: psycopg.AsyncConnection[Any], name: str) -> None:
    """Remove a configured source (its past results stay); raise SourceError for the
    built-in source or an unknown name."""
    if name == BUILT_IN:
        raise SourceError("name", f"{BUILT_IN} is the built-in source; it cannot be removed")
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["delete_source"], {"name": name})
        removed = await cursor.fetchone()
    if removed is None:
        raise SourceError("name", f"no source named {name}")

"""The load-log table of another loader (an ETL tool's job runs, say), read as part of
ledgerflow's load log through a mapping of its columns given in configuration.

The mapping names the table (or view), the columns holding each load's source, the table
it loaded (one ``schema.table`` column, or a schema column and a table column), its rows,
its status, when it started and finished, and which status values mean success. Names
are read as SQL reads them: unquoted ones in lower case, double-quoted ones as written
(``etl."JobRuns"``). The queries are composed with the names quoted as identifiers and
the status values as literals, never by formatting text. Detection and reconciliation
read it; one that cannot be read (no such table or column, no right to read it) is
logged, and they carry on with ledgerflow's own log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.rows import Row

from ledgerflow.core import ConfigError
from ledgerflow.db.queries import Queries

log = structlog.get_logger(__name__)

QUERIES = Queries.of("ledgerflow.feeds", "load_logs.sql")
TABLE_VARIABLE = "LEDGERFLOW_FEEDS_LOAD_LOG_TABLE"
COLUMNS_VARIABLE = "LEDGERFLOW_FEEDS_LOAD_LOG_COLUMNS"
SUCCEEDED_VARIABLE = "LEDGERFLOW_FEEDS_LOAD_LOG_SUCCEEDED"
# The keys of the columns' mapping; the loaded table is ``table``, or ``schema`` and
# ``table_name``; ``rows`` and ``started_at`` may be left out.
KEYS = ("source", "table", "schema", "table_name", "rows", "status", "started_at", "finished_at")
REQUIRED = ("source", "status", "finished_at")
EXAMPLE = "source=job_name,table=target_table,status=state,finished_at=end_ts"
# A name as SQL writes one: double-quoted (a doubled quote inside stands for one), or
# plain letters, digits, _ and $, not starting with a digit.
_NAME = r'"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*'
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TABLE = re.compile(rf"\s*({_NAME})\.({_NAME})\s*")
_ENTRY = re.compile(rf'\s*(\w+)\s*=\s*({_NAME}|[^,"]*)\s*(?:,|$)')
_MAX_NAME_BYTES = 63  # PostgreSQL's limit; a longer name would be cut short, not refused


@dataclass(frozen=True)
class LoadLogMapping:
    """Where another loader logs its loads, and which of its columns mean what (column
    names as the catalog has them)."""

    table: tuple[str, str]  # (schema, table or view) of the log
    source: str  # the load's source (a job, a loader)
    status: str  # compared as text with ``succeeded``
    finished_at: str  # when the load finished: a successful one dates its pair's feed
    succeeded: tuple[str, ...]  # the status values meaning success
    table_column: str | None = None  # the table loaded, as schema.table ...
    schema: str | None = None  # ... or its schema here
    table_name: str | None = None  # ... and its name here
    rows: str | None = None  # rows loaded
    started_at: str | None = None

    def __post_init__(self) -> None:
        split = (self.schema, self.table_name)
        one = self.table_column is not None and split == (None, None)
        two = self.table_column is None and None not in split
        if not (one or two):
            raise ValueError("give the loaded table's column, or its schema and name columns")
        if not self.succeeded:
            raise ValueError("give at least one status value meaning success")

    @property
    def label(self) -> str:
        """``schema.table`` of the log, as logs name it."""
        return ".".join(self.table)


def _name(text: str, variable: str, what: str) -> str:
    """The name ``text`` stands for in SQL; ConfigError naming ``variable`` if none."""
    if text.startswith('"') and text.endswith('"') and len(text) > 2:
        name = text[1:-1].replace('""', '"')
    elif _PLAIN.fullmatch(text):
        name = text.lower()  # as PostgreSQL folds an unquoted name
    else:
        raise ConfigError(
            f'{variable}: {what} {text!r} is not a name (letters, digits, _ and $; "quoted"'
            " for anything else)"
        )
    if "\x00" in name or len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        raise ConfigError(f"{variable}: {what} {text!r} is not a name (at most 63 bytes)")
    return name


def _columns(text: str) -> dict[str, str]:
    """``key=column`` entries separated by commas, each key once and known."""
    found: dict[str, str] = {}
    position, text = 0, text.strip()
    while position < len(text):
        entry = _ENTRY.match(text, position)
        if entry is None or entry.end() == position:
            raise ConfigError(
                f"{COLUMNS_VARIABLE}: expected key=column entries separated by commas,"
                f" e.g. {EXAMPLE}"
            )
        key, value = entry[1], entry[2].strip()
        if key not in KEYS:
            raise ConfigError(f"{COLUMNS_VARIABLE}: unknown key {key!r}; known: {', '.join(KEYS)}")
        if key in found:
            raise ConfigError(f"{COLUMNS_VARIABLE}: {key} given twice")
        if not value:
            raise ConfigError(f"{COLUMNS_VARIABLE}: {key} names no column")
        found[key] = _name(value, COLUMNS_VARIABLE, f"{key} column")
        position = entry.end()
    return found


def parse_load_log_mapping(
    table: str | None, columns: str, succeeded: str
) -> LoadLogMapping | None:
    """The mapping of another loader's load log: ``table`` is its ``schema.table`` (or
    view), None or empty for none; ``columns`` maps keys to its columns, e.g.
    ``source=job_name,table=target_table,rows=rows_loaded,status=state,
    started_at=start_ts,finished_at=end_ts`` (``schema=...,table_name=...`` instead of
    ``table=...`` when the loaded table's schema and name are two columns; ``rows`` and
    ``started_at`` may be left out); ``succeeded`` lists, separated by commas, the status
    values meaning success. Raise ConfigError naming the variable at fault."""
    if table is None or not table.strip():
        return None
    where = _TABLE.fullmatch(table)
    if where is None:
        raise ConfigError(
            f"{TABLE_VARIABLE}: {table.strip()!r} is not schema.table (or schema.view)"
        )
    relation = (
        _name(where[1], TABLE_VARIABLE, "schema"),
        _name(where[2], TABLE_VARIABLE, "table"),
    )
    mapped = _columns(columns)
    missing = [key for key in REQUIRED if key not in mapped]
    if "table" not in mapped and not ("schema" in mapped and "table_name" in mapped):
        missing.insert(1, "table (or schema and table_name)")
    if missing:
        raise ConfigError(f"{COLUMNS_VARIABLE}: missing {', '.join(missing)}; e.g. {EXAMPLE}")
    if "table" in mapped and ("schema" in mapped or "table_name" in mapped):
        raise ConfigError(f"{COLUMNS_VARIABLE}: give table, or schema and table_name, not both")
    values = tuple(dict.fromkeys(v.strip() for v in succeeded.split(",") if v.strip()))
    if not values:
        raise ConfigError(
            f"{SUCCEEDED_VARIABLE}: list the status values meaning success, e.g. SUCCESS,WARNING"
        )
    return LoadLogMapping(
        table=relation,
        source=mapped["source"],
        status=mapped["status"],
        finished_at=mapped["finished_at"],
        succeeded=values,
        table_column=mapped.get("table"),
        schema=mapped.get("schema"),
        table_name=mapped.get("table_name"),
        rows=mapped.get("rows"),
        started_at=mapped.get("started_at"),
    )


def load_log_query(mapping: LoadLogMapping) -> sql.Composed:
    """The mapped table as rows of ``ledgerflow.load_log`` (source, table_name, row_count,
    status 'succeeded' or 'failed', started_at, finished_at, reference). Times without a
    time zone are read in the session's."""
    finished = sql.SQL("{}::timestamptz").format(sql.Identifier(mapping.finished_at))
    if mapping.table_column is not None:
        loaded = sql.SQL("{}::text").format(sql.Identifier(mapping.table_column))
    else:
        assert mapping.schema is not None and mapping.table_name is not None
        loaded = sql.SQL("{}::text || '.' || {}::text").format(
            sql.Identifier(mapping.schema), sql.Identifier(mapping.table_name)
        )
    return sql.SQL(QUERIES["load_log"]).format(
        source=sql.Identifier(mapping.source),
        table_name=loaded,
        row_count=(
            sql.SQL("NULL::bigint")
            if mapping.rows is None
            else sql.SQL("{}::bigint").format(sql.Identifier(mapping.rows))
        ),
        status=sql.Identifier(mapping.status),
        succeeded=sql.SQL(", ").join(sql.Literal(value) for value in mapping.succeeded),
        started_at=(
            finished
            if mapping.started_at is None
            else sql.SQL("{}::timestamptz").format(sql.Identifier(mapping.started_at))
        ),
        finished_at=finished,
        reference=sql.Literal(mapping.label),
        relation=sql.Identifier(*mapping.table),
    )


def load_pairs_query(mapping: LoadLogMapping | None) -> sql.Composable:
    """The (source, table_name, first_load_at, last_load_at) of each pair the mapped
    table logs a successful load of, with its first and last; no rows without a
    mapping."""
    if mapping is None:
        return sql.SQL(QUERIES["no_load_pairs"])
    return sql.SQL(QUERIES["load_pairs"]).format(load_log=load_log_query(mapping))


async def fetch_reading(
    cursor: psycopg.AsyncCursor[Row],
    statement: Callable[[LoadLogMapping | None], sql.Composed],
    external: LoadLogMapping | None,
    params: Mapping[str, Any] | None = None,
) -> list[Row]:
    """The rows of ``statement(external)``, run in a savepoint (call it inside a
    transaction); when ``external`` cannot be read, a warning
    ``feeds.load_log_unreadable`` and the rows of ``statement(None)``, which reads
    ledgerflow's own log only."""
    if external is not None:
        conn = cursor.connection
        try:
            async with conn.transaction():  # a savepoint: a failure undoes only this
                await cursor.execute(statement(external), params)
                return await cursor.fetchall()
        except psycopg.Error as exc:
            if conn.broken:
                raise
            log.warning("feeds.load_log_unreadable", table=external.label, error=str(exc))
    await cursor.execute(statement(None), params)
    return await cursor.fetchall()

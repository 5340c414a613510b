"""Production models and the tables they read: a model's SQL is parsed (sqlglot, the
PostgreSQL dialect), never matched with regular expressions; CTE names are not tables;
a table without a schema is in ``public``; a view the database knows is read through to
its base tables, as deep as views go.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlglot
from psycopg.rows import dict_row
from sqlglot import exp
from sqlglot.errors import ParseError

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.feeds")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_SCHEMA = "public"
TABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$")
MAX_VIEW_DEPTH = 16  # views of views of views: deeper than any schema people keep


class ModelError(ValueError):
    """A model that cannot be registered, naming the field that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def tables_in(sql: str) -> set[str]:
    """The tables (``schema.table``) a query reads, CTEs left out; raise ModelError when
    it is not SQL."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
    except RecursionError:
        raise ModelError("sql", "nested too deeply to read") from None
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" (line {first.get('line')}, column {first.get('col')})" if first else ""
        raise ModelError("sql", f"not SQL PostgreSQL reads{where}") from None
    if not statements:
        raise ModelError("sql", "empty")
    found: set[str] = set()
    for statement in statements:
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            name, schema = _identifier(table.this), _identifier(table.args.get("db"))
            if not name or (not schema and name.lower() in ctes):
                continue
            found.add(f"{schema or DEFAULT_SCHEMA}.{name}")
    return found


def _identifier(node: Any) -> str:
    """A name as PostgreSQL stores it: as written when quoted, in lower case when not."""
    if not isinstance(node, exp.Identifier):
        return ""
    return str(node.this) if node.quoted else str(node.this).lower()


async def resolve(conn: psycopg.AsyncConnection[Any], tables: set[str]) -> dict[str, str | None]:
    """Each table read, with views replaced by the base tables they read (mapped to the
    view they were reached through; None for a table read directly)."""
    resolved: dict[str, str | None] = {}
    pending: list[tuple[str, str | None, int]] = [(t, None, 0) for t in sorted(tables)]
    while pending:
        table, via, depth = pending.pop()
        schema, _, name = table.partition(".")
        cursor = await conn.execute(QUERIES["view_definition"], {"schema": schema, "name": name})
        row = await cursor.fetchone()
        if row is None or depth >= MAX_VIEW_DEPTH:
            if via is None:
                resolved[table] = None  # read directly: that wins over through a view
            else:
                resolved.setdefault(table, via)
            continue
        for base in sorted(tables_in(row[0]) - {table}):
            pending.append((base, via or table, depth + 1))
    return resolved


@dataclass(frozen=True)
class Model:
    """A registered model and the tables it reads."""

    name: str
    tables: tuple[str, ...]
    registered_by: str

    def as_json(self) -> dict[str, Any]:
        """The model as ``--json`` shows it."""
        return {"name": self.name, "tables": list(self.tables), "registered_by": self.registered_by}


async def register_model(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    by: str,
    *,
    sql: str | None = None,
    tables: list[str] | None = None,
) -> dict[str, str | None]:
    """Register (or replace) model ``name`` with its SQL or its tables; return the tables
    it reads, each with the view it was reached through."""
    if not NAME.fullmatch(name):
        raise ModelError("name", "1 to 64 letters, digits, '_', '.' or '-'")
    if (sql is None) == (tables is None):
        raise ModelError("sql", "give the model's SQL or its tables, one of the two")
    if sql is not None:
        if "\x00" in sql:
            raise ModelError("sql", "holds a NUL character")
        # A long query takes the parser seconds: not in the event loop's time.
        read = await asyncio.to_thread(tables_in, sql)
    else:
        for table in tables or []:
            if not TABLE.fullmatch(table):
                raise ModelError("tables", f"{table[:80]!r} is not schema.table (or table)")
        read = {t if "." in t else f"{DEFAULT_SCHEMA}.{t}" for t in tables or []}
        if not read:
            raise ModelError("tables", "at least one table")
    found = await resolve(conn, read)
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["insert_model"], {"name": name, "sql": sql, "by": by})
        row = await cursor.fetchone()
        assert row is not None
        await conn.execute(QUERIES["forget_model_tables"], {"model_id": row[0]})
        await conn.execute(
            QUERIES["insert_model_tables"],
            {"model_id": row[0], "tables": list(found), "vias": list(found.values())},
        )
    return found


async def models(conn: psycopg.AsyncConnection[Any]) -> list[Model]:
    """Every registered model with the tables it reads, by name."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["models"])
        return [
            Model(row["name"], tuple(row["tables"]), row["registered_by"])
            for row in await cursor.fetchall()
        ]

"""Loading rates data: a PostgreSQL dump like the original ``rates.sql``, or CSV files."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.rates")

# Tables in the order their foreign keys need, with the columns a load fills.
TABLES = {
    "regions": ("slug", "name", "parent_slug"),
    "ports": ("code", "name", "parent_slug"),
    "prices": ("orig_code", "dest_code", "day", "price"),
}
_COPY = re.compile(r"^COPY (?:public\.)?(\w+) \(([^)]*)\) FROM stdin;$")


class LoadError(Exception):
    """The input cannot be loaded; the message says why and where."""


@dataclass
class Block:
    """The rows of one table, in COPY text format (tab-separated, \\N for null)."""

    table: str
    columns: tuple[str, ...]
    lines: list[str]
    csv: bool = False


def read_dump(path: Path) -> list[Block]:
    """The data blocks of a pg_dump plain-text dump (its COPY ... FROM stdin sections)."""
    blocks: list[Block] = []
    lines: Iterator[str] = iter(path.read_text("utf-8").splitlines())
    for number, line in enumerate(lines, 1):
        match = _COPY.match(line)
        if not match or match[1] not in TABLES:
            continue
        columns = tuple(c.strip() for c in match[2].split(","))
        if set(columns) != set(TABLES[match[1]]):
            raise LoadError(f"{path}:{number}: unexpected columns for {match[1]}: {columns}")
        block = Block(match[1], columns, [])
        for data in lines:
            if data == "\\.":
                break
            block.lines.append(data)
        else:
            raise LoadError(f"{path}: the COPY block of {match[1]} does not end")
        blocks.append(block)
    if not blocks:
        raise LoadError(f"{path}: no COPY data for {', '.join(TABLES)}")
    return blocks


def read_csv(path: Path) -> Block:
    """A CSV file named after its table (ports.csv, regions.csv, prices.csv) with a header."""
    table = path.stem
    if table not in TABLES:
        raise LoadError(f"{path}: name a CSV file after its table: {', '.join(TABLES)}")
    text = path.read_text("utf-8").splitlines()
    if not text:
        raise LoadError(f"{path}: empty")
    columns = tuple(c.strip() for c in text[0].split(","))
    if set(columns) != set(TABLES[table]):
        raise LoadError(f"{path}: the header must name {', '.join(TABLES[table])}")
    return Block(table, columns, text[1:], csv=True)


def read(paths: Iterable[Path]) -> list[Block]:
    """Blocks from dumps (.sql) and CSV files (.csv)."""
    blocks: list[Block] = []
    for path in paths:
        if path.suffix == ".sql":
            blocks += read_dump(path)
        elif path.suffix == ".csv":
            blocks.append(read_csv(path))
        else:
            raise LoadError(f"{path}: expected a .sql dump or a .csv file")
    return blocks


def load(
    conn: psycopg.Connection[Any], blocks: list[Block], replace: bool = False
) -> dict[str, int]:
    """Load every block in one transaction; return the rows added per table.

    Regions and ports already present are kept (a load can be repeated); prices are
    appended, so loading into a non-empty prices table needs ``replace``, which empties it
    first.
    """
    added: dict[str, int] = {}
    with conn.transaction():
        if any(b.table == "prices" for b in blocks):
            row = conn.execute(QUERIES["count_prices"]).fetchone()
            if row and row[0] and not replace:
                raise LoadError(f"prices already holds {row[0]} rows: use --replace to load anew")
            if replace:
                conn.execute(QUERIES["truncate_prices"])
        # The statements below name their tables and columns from the input's COPY blocks
        # and from TABLES, so they are composed here (psycopg.sql quotes every name) rather
        # than kept in queries.sql.
        for table, columns in TABLES.items():
            staging = f"staging_{table}"
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
                    sql.Identifier(staging), sql.Identifier(table)
                )
            )
            for block in (b for b in blocks if b.table == table):
                copy = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
                    sql.Identifier(staging),
                    sql.SQL(", ").join(map(sql.Identifier, block.columns)),
                    sql.SQL(" WITH (FORMAT csv)" if block.csv else ""),
                )
                with conn.cursor().copy(copy) as writer:
                    for line in block.lines:
                        writer.write(line + "\n")
            added[table] = _merge(conn, table, columns)
    return added


def _merge(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...]) -> int:
    if table == "regions":
        return conn.execute(QUERIES["merge_regions"]).rowcount
    target = sql.Identifier(table)
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    conflict = sql.SQL(" ON CONFLICT DO NOTHING" if table == "ports" else "")
    cursor = conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}{}").format(
            target, names, names, sql.Identifier(f"staging_{table}"), conflict
        )
    )
    return cursor.rowcount


def has_prices(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``prices`` holds any row."""
    row = conn.execute(QUERIES["has_prices"]).fetchone()
    return bool(row and row[0])

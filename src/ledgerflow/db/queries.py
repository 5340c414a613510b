"""Named SQL queries, kept as SQL in a ``queries.sql`` beside the package that runs them.

Each query starts with a line ``-- name: <name>``; the lines up to the next such line are
its text::

    QUERIES = Queries.of("ledgerflow.transactions")
    await conn.execute(QUERIES["insert_batch"], {...})
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from typing import LiteralString

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """The named queries of a ``queries.sql`` text; a name given twice is an error."""
    parts = _NAME.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"query {name!r} is defined twice")
        found[name] = body.strip()
    return found


class Queries:
    """The named queries of one package, looked up by name."""

    def __init__(self, package: str, queries: dict[str, str]) -> None:
        self.package = package
        self._queries = queries

    @staticmethod
    @functools.cache
    def of(package: str, file: str = "queries.sql") -> Queries:
        """The queries in ``package``'s ``queries.sql``, or in another file of it when a
        domain's SQL is long enough to split by module (read once per process)."""
        return Queries(f"{package}/{file}", parse(files(package).joinpath(file).read_text("utf-8")))

    def __getitem__(self, name: str) -> LiteralString:
        """The SQL text of the named query (it comes from a file shipped with ledgerflow)."""
        try:
            return self._queries[name]
        except KeyError:
            raise KeyError(f"no query {name!r} in {self.package}") from None

    def names(self) -> list[str]:
        """Every query's name, in file order."""
        return list(self._queries)

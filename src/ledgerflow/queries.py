"""Named SQL queries, kept as SQL in ``sql/queries.sql`` and looked up by name."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import LiteralString

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


_QUERIES = _parse(files("ledgerflow.sql").joinpath("queries.sql").read_text("utf-8"))


def query(name: str) -> LiteralString:
    """Return the SQL text of the named query (it comes from a file shipped with ledgerflow)."""
    return _QUERIES[name]

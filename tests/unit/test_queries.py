"""Every named query a module asks for exists in its package's queries.sql, and every
query there is used: SQL kept beside its domain cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ledgerflow
from ledgerflow.db.queries import Queries, parse

SOURCE = Path(ledgerflow.__file__).parent
ASKED = re.compile(r"""QUERIES\["(\w+)"\]""")
OWNER = re.compile(r"""QUERIES = Queries\.of\("(ledgerflow(?:\.\w+)*)"\)""")


def asked_for() -> dict[str, set[str]]:
    """Query names asked for in the source, by the package whose queries.sql holds them."""
    found: dict[str, set[str]] = {}
    for module in SOURCE.rglob("*.py"):
        text = module.read_text("utf-8")
        owner = OWNER.search(text)
        if owner:
            found.setdefault(owner[1], set()).update(ASKED.findall(text))
    return found


@pytest.mark.parametrize("package", sorted(asked_for()))
def test_each_package_asks_only_for_its_own_queries_and_uses_them_all(package: str) -> None:
    available = set(Queries.of(package).names())
    asked = asked_for()[package]
    assert asked <= available, f"missing in {package}/queries.sql: {sorted(asked - available)}"
    assert available <= asked, f"unused in {package}/queries.sql: {sorted(available - asked)}"


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_an_unknown_name_says_where_it_was_looked_for() -> None:
    with pytest.raises(KeyError, match=r"ledgerflow\.rates/queries\.sql"):
        Queries.of("ledgerflow.rates")["no_such_query"]

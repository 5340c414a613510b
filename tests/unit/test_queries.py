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
OWNER = re.compile(r"""QUERIES = Queries\.of\("(ledgerflow(?:\.\w+)*)"(?:, "(\w+\.sql)")?\)""")


def asked_for() -> dict[tuple[str, str], set[str]]:
    """Query names asked for in the source, by the package and file that hold them."""
    found: dict[tuple[str, str], set[str]] = {}
    for module in SOURCE.rglob("*.py"):
        text = module.read_text("utf-8")
        owner = OWNER.search(text)
        if owner:
            key = (owner[1], owner[2] or "queries.sql")
            found.setdefault(key, set()).update(ASKED.findall(text))
    return found


@pytest.mark.parametrize("owner", sorted(asked_for()), ids="/".join)
def test_each_package_asks_only_for_its_own_queries_and_uses_them_all(
    owner: tuple[str, str],
) -> None:
    available = set(Queries.of(*owner).names())
    asked = asked_for()[owner]
    where = "/".join(owner)
    assert asked <= available, f"missing in {where}: {sorted(asked - available)}"
    assert available <= asked, f"unused in {where}: {sorted(available - asked)}"


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_an_unknown_name_says_where_it_was_looked_for() -> None:
    with pytest.raises(KeyError, match=r"ledgerflow\.rates/queries\.sql"):
        Queries.of("ledgerflow.rates")["no_such_query"]

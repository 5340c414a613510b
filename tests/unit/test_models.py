"""The tables a model's SQL reads, found by parsing it."""

from __future__ import annotations

import pytest

from ledgerflow.feeds.models import ModelError, tables_in


def test_tables_come_from_every_clause_with_their_schema_and_no_cte() -> None:
    sql = """
        WITH recent AS (SELECT * FROM staging.trades AS t WHERE t.day > now() - interval '1 day'),
             limits AS (SELECT * FROM risk.limits)
        SELECT r.id FROM recent AS r
        JOIN "Ref"."Books" AS b ON b.id = r.book
        LEFT JOIN Positions p ON p.id = r.id
        WHERE r.desk IN (SELECT desk FROM ref.desks)
        UNION ALL SELECT id FROM limits
    """
    assert tables_in(sql) == {
        "staging.trades",
        "risk.limits",
        "Ref.Books",  # quoted: as written
        "public.positions",  # unquoted: folded to lower case, in public
        "ref.desks",
    }


def test_a_name_in_a_string_or_a_comment_is_not_a_table() -> None:
    sql = "SELECT 'FROM fake.table' AS x -- JOIN other.table\nFROM real.table_a"
    assert tables_in(sql) == {"real.table_a"}


def test_what_is_not_sql_is_refused() -> None:
    with pytest.raises(ModelError, match="sql: not SQL"):
        tables_in("SELECT FROM WHERE (")


def test_sql_nested_past_what_the_parser_can_read_is_refused_not_a_crash() -> None:
    with pytest.raises(ModelError, match="nested too deeply") as refused:
        tables_in("SELECT " + "(" * 400 + "1" + ")" * 400)
    assert refused.value.field == "sql"

"""Filtering conditions are checked when saved: what they may use, and where a bad one
goes wrong."""

from __future__ import annotations

import pytest

from ledgerflow.transactions.conditions import ConditionError, compile_condition


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("value > 900", {"value"}),
        ("id == 2 && value < 0", {"id", "value"}),
        ("value >= 900.10 || id in [1, 2, 3]", {"id", "value"}),
        ('message_id.startsWith("test-") && size(message_id) > 5', {"message_id"}),
        ('has(headers.region) && headers.region == "EU"', {"headers"}),
        ('headers["amount-limit"] < value', {"headers", "value"}),
        ('"urgent" in headers || priority > 5', {"headers", "priority"}),
        ("-value > 10 ? true : id % 2 == 0", {"id", "value"}),
        ('app_id != "producer" && content_type == "application/json"', {"app_id", "content_type"}),
        ("message_id == null", {"message_id"}),
        ('message_id.matches("^[0-9a-f]{8}$")', {"message_id"}),
    ],
)
def test_a_condition_over_the_message_and_its_properties_compiles(
    text: str, variables: set[str]
) -> None:
    condition = compile_condition(text)
    assert condition.variables == variables
    assert condition.sql.as_string(None)  # renders without a connection


@pytest.mark.parametrize(
    ("text", "line", "column", "says"),
    [
        ("value >> 1", 1, 8, "syntax error near '> 1'"),
        ("value > 900 &&", 1, 13, "syntax error near '&&'"),
        ("value > 1 &&\n  amount < 5", 2, 3, "unknown name 'amount'"),
        ('value + "a" > 1', 1, 9, "+ needs numbers, not a string"),
        ("value", 1, 1, "must be true or false"),
        ("id == 'x'", 1, 1, "cannot be compared"),
        ("value > 1 && 5", 1, 14, "&& needs true or false"),
        ("message_id.lower() == 'a'", 1, 1, "unknown function 'lower'"),
        ("{'a': 1}['a'] == 1", 1, 1, "map literal"),
        ("message_id.matches(message_id)", 1, 20, "pattern written in the condition"),
        ("value > 1e999", 1, 9, "at most 100 digits"),
        ("", 1, 1, "empty"),
        ("value > 1 && id == '\\x00'", 1, 20, "NUL"),
    ],
)
def test_a_bad_condition_is_refused_with_where_it_went_wrong(
    text: str, line: int, column: int, says: str
) -> None:
    with pytest.raises(ConditionError) as refused:
        compile_condition(text)
    assert says in refused.value.message
    assert (refused.value.line, refused.value.column) == (line, column)
    assert f"(line {line}, column {column})" in str(refused.value)


def test_numbers_stay_exact_decimals_in_the_sql() -> None:
    rendered = compile_condition("value > 900.100000000001").sql.as_string(None)
    assert "900.100000000001" in rendered
    assert "float" not in rendered and "double" not in rendered


def test_a_string_cannot_smuggle_sql() -> None:
    rendered = compile_condition('message_id == "x\' OR TRUE --"').sql.as_string(None)
    assert "'x'' OR TRUE --'" in rendered


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("message_id == '\\U00110000'", "is not a character"),
        ("message_id == '\\ud800'", "is not a character"),
        ("(" * 400 + "value > 1" + ")" * 400, "nested too deeply"),
        ("id == 0x" + "f" * 3700, "at most 100 digits"),
        ("id == " + "9" * 150, "at most 100 digits"),
    ],
)
def test_what_python_itself_would_choke_on_is_a_condition_error(text: str, says: str) -> None:
    with pytest.raises(ConditionError, match=says):
        compile_condition(text)


def test_header_comparisons_do_not_match_an_absent_header() -> None:
    rendered = compile_condition('headers.region != "EU"').sql.as_string(None)
    assert "DISTINCT" not in rendered and "<>" in rendered
    # message_id is a property that may be absent: != matches a message without one.
    assert "IS DISTINCT FROM" in compile_condition('message_id != "x"').sql.as_string(None)


def test_patterns_are_collected_for_the_database_to_check() -> None:
    condition = compile_condition("message_id.matches('^a') || app_id.matches('[')")
    assert condition.patterns == {"^a", "["}

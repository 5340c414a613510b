"""BACKWARD compatibility of a new schema version with the previous one, rule by rule
(ledgerflow.treasury.registry.backward_problems; reader = new, writer = old)."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerflow.treasury.normalise import canonical_schema
from ledgerflow.treasury.registry import InvalidSchema, backward_problems


def record(*fields: dict[str, Any], name: str = "Trade", **extra: Any) -> dict[str, Any]:
    """A record schema with these fields."""
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields), **extra}


def field(name: str, kind: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, **extra}


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def problems(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    return backward_problems(new, old)


def test_the_same_schema_is_compatible() -> None:
    assert problems(canonical_schema(), canonical_schema()) == []


def test_the_canonical_trade_can_gain_an_optional_field() -> None:
    new = canonical_schema()
    new["fields"].append(field("venue", ["null", "string"], default=None))
    assert problems(new, canonical_schema()) == []
    # Removing a field is compatible too: the reader skips what the writer wrote of it.
    fewer = canonical_schema()
    fewer["fields"] = [f for f in fewer["fields"] if f["name"] != "desk"]
    assert problems(fewer, canonical_schema()) == []


# Rule 1: primitives, and Avro's promotions.


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_rule_1_a_primitive_may_be_promoted(old: str, new: str) -> None:
    assert problems(record(field("x", new)), record(field("x", old))) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("long", "int"),
        ("double", "float"),
        ("string", "int"),
        ("boolean", "int"),
        ("int", "string"),
    ],
)
def test_rule_1_a_primitive_may_not_be_narrowed_or_changed(old: str, new: str) -> None:
    assert problems(record(field("x", new)), record(field("x", old))) == [
        f"Trade.x: {old} cannot be read as {new} (rule 1)"
    ]


# Rule 2: records and their fields.


def test_rule_2_a_field_added_with_a_default_is_compatible() -> None:
    old = record(field("id", "string"))
    new = record(field("id", "string"), field("desk", "string", default="unknown"))
    assert problems(new, old) == []


def test_rule_2_a_field_added_without_a_default_is_refused() -> None:
    old = record(field("id", "string"))
    new = record(field("id", "string"), field("desk", "string"))
    assert problems(new, old) == ["Trade.desk: field added without a default (rule 2)"]


def test_rule_2_a_removed_field_is_compatible() -> None:
    old = record(field("id", "string"), field("desk", "string"))
    assert problems(record(field("id", "string")), old) == []


def test_rule_2_a_renamed_field_is_found_by_its_alias() -> None:
    old = record(field("deal_id", "string"))
    assert problems(record(field("trade_id", "string", aliases=["deal_id"])), old) == []
    assert problems(record(field("trade_id", "string")), old) == [
        "Trade.trade_id: field added without a default (rule 2)"
    ]


@pytest.mark.parametrize(
    ("kind", "default"),
    [(["string", "null"], None), (["null", "string"], "x"), (["null", "long"], 5)],
)
def test_rule_2_an_added_default_must_suit_the_first_branch_of_its_union(
    kind: Any, default: Any
) -> None:
    old = record(field("id", "string"))
    new = record(field("id", "string"), field("x", kind, default=default))
    assert problems(new, old) == [
        f"Trade.x: default {default!r} does not suit the field's type (rule 2)"
    ]


@pytest.mark.parametrize(("kind", "default"), [("int", "zero"), ("string", 0), ("boolean", 1)])
def test_rule_2_a_default_that_does_not_suit_a_plain_type_is_no_avro_schema(
    kind: str, default: Any
) -> None:
    old = record(field("id", "string"))
    with pytest.raises(InvalidSchema, match="Default value"):
        problems(record(field("id", "string"), field("x", kind, default=default)), old)


def test_rule_2_a_null_default_suits_a_union_that_starts_with_null() -> None:
    old = record(field("id", "string"))
    new = record(field("id", "string"), field("x", ["null", "string"], default=None))
    assert problems(new, old) == []


def test_rule_2_a_record_keeps_its_name_unless_it_is_aliased() -> None:
    old = record(field("id", "string"), name="Deal")
    assert problems(record(field("id", "string"), name="Trade"), old) == [
        "Trade: record Deal cannot be read as Trade (rule 2-4)"
    ]
    assert problems(record(field("id", "string"), name="Trade", aliases=["Deal"]), old) == []


def test_rule_2_a_nested_record_is_checked_with_its_path() -> None:
    leg = {"type": "record", "name": "Leg", "fields": [field("amount", "long")]}
    wider = {
        "type": "record",
        "name": "Leg",
        "fields": [field("amount", "long"), field("ccy", "string")],
    }
    assert problems(record(field("leg", wider)), record(field("leg", leg))) == [
        "Trade.leg.ccy: field added without a default (rule 2)"
    ]


def test_rule_2_a_recursive_record_is_checked_once() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [field("value", "int"), field("next", ["null", "Node"], default=None)],
    }
    wider = {
        "type": "record",
        "name": "Node",
        "fields": [field("value", "long"), field("next", ["null", "Node"], default=None)],
    }
    assert problems(wider, node) == []
    assert problems(node, wider) == ["Node.value: long cannot be read as int (rule 1)"]


# Rule 3: enums.


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Side", "symbols": list(symbols), **extra}


def test_rule_3_an_enum_may_gain_symbols() -> None:
    assert (
        problems(
            record(field("s", enum("BUY", "SELL", "SHORT"))),
            record(field("s", enum("BUY", "SELL"))),
        )
        == []
    )


def test_rule_3_an_enum_may_not_lose_a_symbol_without_a_default() -> None:
    old = record(field("s", enum("BUY", "SELL", "SHORT")))
    assert problems(record(field("s", enum("BUY", "SELL"))), old) == [
        "Trade.s: symbols ['SHORT'] removed without a default symbol (rule 3)"
    ]
    assert problems(record(field("s", enum("BUY", "SELL", default="SELL"))), old) == []


def test_rule_3_an_enum_keeps_its_name() -> None:
    other = {"type": "enum", "name": "Direction", "symbols": ["BUY", "SELL"]}
    assert problems(record(field("s", other)), record(field("s", enum("BUY", "SELL")))) == [
        "Trade.s: enum Side cannot be read as Direction (rule 2-4)"
    ]


# Rule 4: fixed, arrays and maps.


def test_rule_4_a_fixed_keeps_its_size() -> None:
    def fixed(size: int) -> dict[str, Any]:
        return {"type": "fixed", "name": "Hash", "size": size}

    assert problems(record(field("h", fixed(32))), record(field("h", fixed(32)))) == []
    assert problems(record(field("h", fixed(16))), record(field("h", fixed(32)))) == [
        "Trade.h: size 32 cannot be read as 16 (rule 4)"
    ]


def test_rule_4_array_items_and_map_values_are_checked() -> None:
    def array(items: str) -> dict[str, Any]:
        return {"type": "array", "items": items}

    def map_of(values: str) -> dict[str, Any]:
        return {"type": "map", "values": values}

    assert problems(record(field("a", array("long"))), record(field("a", array("int")))) == []
    assert problems(record(field("a", array("int"))), record(field("a", array("long")))) == [
        "Trade.a[]: long cannot be read as int (rule 1)"
    ]
    assert problems(record(field("m", map_of("double"))), record(field("m", map_of("float")))) == []
    assert problems(record(field("m", map_of("string"))), record(field("m", map_of("int")))) == [
        "Trade.m{}: int cannot be read as string (rule 1)"
    ]


# Rule 5: unions.


def test_rule_5_a_field_may_become_nullable() -> None:
    assert problems(record(field("x", ["null", "string"])), record(field("x", "string"))) == []


def test_rule_5_a_nullable_field_may_not_become_required() -> None:
    assert problems(record(field("x", "string")), record(field("x", ["null", "string"]))) == [
        "Trade.x: null cannot be read as string (rule 1)"
    ]


def test_rule_5_a_union_may_not_lose_a_branch_the_writer_used() -> None:
    old = record(field("x", ["null", "string", "long"]))
    assert problems(record(field("x", ["null", "string", "long", "boolean"])), old) == []
    assert problems(record(field("x", ["null", "double"])), old) == [
        "Trade.x: no branch reads the writer's string (rule 5)"
    ]


def test_rule_5_a_value_must_be_read_by_some_branch_of_a_union() -> None:
    assert problems(record(field("x", ["null", "boolean"])), record(field("x", "string"))) == [
        "Trade.x: no branch of the union reads the writer's string (rule 5)"
    ]


# Rule 6: logical types.


def test_rule_6_a_decimal_keeps_its_scale() -> None:
    assert problems(record(field("q", decimal(38, 4))), record(field("q", decimal(38, 10)))) == [
        "Trade.q: decimal scale 10 changed to 4 (rule 6)"
    ]


def test_rule_6_a_decimal_may_widen_but_not_narrow() -> None:
    assert problems(record(field("q", decimal(38, 10))), record(field("q", decimal(24, 10)))) == []
    assert problems(record(field("q", decimal(24, 10))), record(field("q", decimal(38, 10)))) == [
        "Trade.q: decimal precision 38 narrowed to 24 (rule 6)"
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            {"type": "long", "logicalType": "timestamp-millis"},
            {"type": "long", "logicalType": "timestamp-micros"},
        ),
        ("int", {"type": "int", "logicalType": "date"}),
        (decimal(38, 10), "bytes"),
    ],
)
def test_rule_6_another_logical_type_may_not_change(old: Any, new: Any) -> None:
    found = problems(record(field("x", new)), record(field("x", old)))
    assert len(found) == 1
    assert found[0].startswith("Trade.x: logical type") and found[0].endswith("(rule 6)")


def test_a_schema_that_is_not_avro_is_refused() -> None:
    with pytest.raises(InvalidSchema):
        problems(record(field("x", "money")), record(field("x", "string")))

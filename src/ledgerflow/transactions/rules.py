"""Filtering rules: named CEL conditions with a technical and a functional justification,
versioned, and the rule set the batch writer applies.

A message that matches an enabled rule is *filtered*: not stored as a transaction,
recorded in its batch with the rule version that filtered it, and counted. Every change
to a rule is a new version (``ledgerflow.rule_versions``), kept with who made it and
when; the rule set's version is the newest version id, so the batch writer can tell, in
the batch's own transaction, that the rules it applied are still the current ones.
Rules are evaluated in the order they were created; the first that matches names the
message's rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ledgerflow.db.queries import Queries
from ledgerflow.transactions.conditions import (
    VARIABLES,
    Condition,
    ConditionError,
    compile_condition,
)
from ledgerflow.transactions.messages import Reason

QUERIES = Queries.of("ledgerflow.transactions")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 2000
RULE_CHANGES_LOCK = 0x6C66_7275_6C65  # the advisory lock rule changes take, one at a time
# The blank message a new condition is evaluated on once, by PostgreSQL: values, not
# NULLs, since a function given NULL returns NULL without looking at its other arguments.
PROBE = {"integer": "0", "numeric": "0", "text": "", "jsonb": "{}", "boolean": "false"}

# The technical rules that ship with ledgerflow: every reason a message is rejected,
# with why, for the people who read the filtered and rejected counts side by side.
BUILT_IN: dict[Reason, tuple[str, str]] = {
    Reason.BODY_TOO_LARGE: (
        "The body is longer than LEDGERFLOW_MAX_BODY_BYTES.",
        "A transaction is a few dozen bytes; anything far larger is not one.",
    ),
    Reason.INVALID_ENCODING: ("The body is not UTF-8.", "JSON is text; the producer sent bytes."),
    Reason.INVALID_JSON: ("The body is not JSON.", "Only JSON transactions are accepted."),
    Reason.NOT_AN_OBJECT: ("The JSON is not an object.", "A transaction is an object."),
    Reason.DUPLICATE_FIELD: (
        "A field appears twice.",
        "Which of two values is meant cannot be known.",
    ),
    Reason.MISSING_FIELD: ("id or value is missing.", "A transaction needs both."),
    Reason.UNEXPECTED_FIELD: (
        "A field other than id and value.",
        "An unknown field may change the meaning of the others.",
    ),
    Reason.INVALID_PROVIDER_ID: (
        "id is not an integer from 1 to 2147483647.",
        "A provider is named by its integer id.",
    ),
    Reason.INVALID_VALUE: (
        "value is not a JSON number (booleans, strings, NaN and Infinity are refused).",
        "Amounts are exact decimals, never guessed from text.",
    ),
    Reason.VALUE_OUT_OF_RANGE: (
        "value has more digits than the ledger's column holds.",
        "An amount is never rounded or truncated.",
    ),
    Reason.UNKNOWN_PROVIDER: (
        "No provider in initial_data has this id.",
        "A balance belongs to a known provider.",
    ),
}


class RuleError(ValueError):
    """A rule that cannot be saved, with the field that is wrong (and, for a condition,
    where in it)."""

    def __init__(
        self, field: str, message: str, line: int | None = None, column: int | None = None
    ):
        super().__init__(message)
        self.field = field
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Rule:
    """A rule version as stored."""

    version_id: int
    name: str
    version: int
    condition: str
    technical: str
    functional: str
    owner: str
    enabled: bool
    change: str
    changed_by: str
    changed_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The rule as the HTTP API and ``--json`` show it."""
        return {
            "name": self.name,
            "version": self.version,
            "version_id": self.version_id,
            "condition": self.condition,
            "technical": self.technical,
            "functional": self.functional,
            "owner": self.owner,
            "enabled": self.enabled,
            "change": self.change,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at.isoformat(),
        }


@dataclass(frozen=True)
class RuleSet:
    """The enabled rules, compiled, as of one rule-set version."""

    version: int
    rules: tuple[tuple[Rule, Condition], ...]

    @property
    def variables(self) -> tuple[str, ...]:
        """The names the conditions read, besides id and value (sent per message)."""
        used = set().union(*(c.variables for _, c in self.rules)) if self.rules else set()
        return tuple(sorted(used - {"id", "value"}))

    def statement(self) -> sql.Composed:
        """The batch's insert with the rules applied (see ``filter_statement``)."""
        return filter_statement([(r.version_id, c) for r, c in self.rules], self.variables)


def filter_statement(
    rules: Sequence[tuple[int, Condition]], variables: Sequence[str]
) -> sql.Composed:
    """The batch's insert with ``rules`` (rule version id, condition) applied: one ``CASE``
    over the batch's messages, first matching rule first; the rows no rule matched are
    inserted.

    Returns the new transaction ids (ascending, so in input order) and, per input message,
    the rule version that filtered it or NULL; the filtered messages go to
    ``ledgerflow.filtered_messages`` in the same statement.
    """
    names = ["position", "id", "value", *variables]
    # position: the message's place in its batch, sent beside what conditions read.
    types = {"position": "integer", **{n: v.column_type for n, v in VARIABLES.items()}}
    arrays = sql.SQL(", ").join(
        sql.SQL("{}::{}[]").format(sql.Placeholder(n), sql.SQL(types[n])) for n in names
    )
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(_escaped(condition), sql.Literal(version_id))
        for version_id, condition in rules
    )
    return sql.SQL(
        "WITH m AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS m({columns}, n)),"
        " f AS (SELECT n, m.position, m.id, m.value, CASE {cases} END AS rule FROM m),"
        " stored AS (INSERT INTO historical_transactions (provider_id, transaction_value)"
        " SELECT id, value FROM f WHERE rule IS NULL ORDER BY n RETURNING id),"
        " filtered AS (INSERT INTO ledgerflow.filtered_messages"
        " (batch_id, position, rule_version_id, provider_id, value)"
        " SELECT {batch_id}, position, rule, id, value FROM f WHERE rule IS NOT NULL)"
        " SELECT (SELECT array_agg(id ORDER BY id) FROM stored),"
        " (SELECT array_agg(rule ORDER BY n) FROM f)"
    ).format(arrays=arrays, columns=columns, cases=cases, batch_id=sql.Placeholder("batch_id"))


def _escaped(condition: Condition) -> sql.SQL:
    """A condition's SQL with each % doubled: the statement goes out with named parameters,
    and a condition's own % (modulo, or in a string) is not one of them."""
    return sql.SQL(condition.sql.as_string(None).replace("%", "%%"))


def check_fields(name: str, technical: str, functional: str, owner: str) -> None:
    """Refuse a name or a justification that cannot be saved, naming the field."""
    if not NAME.match(name):
        raise RuleError(
            "name",
            "a rule's name is 1 to 64 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit",
        )
    for field, text in (("technical", technical), ("functional", functional), ("owner", owner)):
        if not text.strip():
            raise RuleError(
                field,
                f"the {field} justification is empty" if field != "owner" else "the owner is empty",
            )
        if len(text) > MAX_TEXT or "\x00" in text:
            raise RuleError(field, f"{field} is longer than {MAX_TEXT} characters or has a NUL")


async def check_condition(conn: psycopg.AsyncConnection[Any], text: str) -> Condition:
    """Compile ``text`` and have PostgreSQL evaluate it once on a blank message, so that
    what only the database checks (a pattern for matches()) is refused now, not when a
    batch meets it."""
    try:
        condition = compile_condition(text)
    except ConditionError as exc:
        raise RuleError("condition", str(exc), exc.line, exc.column) from None
    variables = sorted(condition.variables - {"id", "value"})
    names = ["id", "value", *variables]
    probe = sql.SQL("SELECT {} FROM (SELECT {}) AS m").format(
        condition.sql,
        sql.SQL(", ").join(
            sql.SQL("{}::{} AS {}").format(
                sql.Literal(PROBE[VARIABLES[n].column_type]),
                sql.SQL(VARIABLES[n].column_type),
                sql.Identifier(n),
            )
            for n in names
        ),
    )
    empty: dict[str, list[object]] = {n: [] for n in ("position", "id", "value", *variables)}
    try:
        async with conn.transaction(force_rollback=True):
            for pattern in sorted(condition.patterns):  # whatever the rest evaluates to
                await conn.execute(QUERIES["check_pattern"], {"pattern": pattern})
            # The very statement a batch runs, on no message: what PostgreSQL checks when
            # it plans (types, placeholders); then the condition on a blank message.
            await conn.execute(
                filter_statement([(0, condition)], variables), {**empty, "batch_id": 0}
            )
            await conn.execute(probe)
    except psycopg.Error as exc:
        raise RuleError("condition", f"PostgreSQL cannot evaluate it: {exc}", 1, 1) from None
    return condition


async def _serialise_changes(conn: psycopg.AsyncConnection[Any]) -> None:
    """One rule change at a time, until its transaction ends: version ids are then drawn
    in commit order, so the newest id (the rule set's version) changes with every commit
    and a worker that has seen it has seen every change before it."""
    await conn.execute(QUERIES["advisory_lock"], {"key": RULE_CHANGES_LOCK})


def _rule(row: dict[str, Any]) -> Rule:
    return Rule(**{k: row[k] for k in Rule.__dataclass_fields__})


async def add_rule(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    condition: str,
    technical: str,
    functional: str,
    owner: str,
    by: str,
) -> Rule:
    """Create a rule, enabled, as its version 1; raise RuleError naming the wrong field."""
    check_fields(name, technical, functional, owner)
    await check_condition(conn, condition)
    async with conn.transaction():
        await _serialise_changes(conn)
        cursor = await conn.execute(QUERIES["insert_rule"], {"name": name})
        row = await cursor.fetchone()
        if row is None:
            raise RuleError("name", f"a rule named {name!r} exists already")
        return await _new_version(
            conn, row[0], 1, condition, technical, functional, owner, True, "created", by
        )


async def change_rule(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    by: str,
    *,
    condition: str | None = None,
    technical: str | None = None,
    functional: str | None = None,
    owner: str | None = None,
    enabled: bool | None = None,
) -> Rule:
    """Save a new version of rule ``name`` with what changed; raise LookupError if there is
    no such rule, RuleError naming the wrong field."""
    async with conn.transaction():
        await _serialise_changes(conn)
        current = await _current(conn, name, lock=True)
        if current is None:
            raise LookupError(f"no rule named {name!r}")
        new = {
            "condition": current.condition if condition is None else condition,
            "technical": current.technical if technical is None else technical,
            "functional": current.functional if functional is None else functional,
            "owner": current.owner if owner is None else owner,
        }
        check_fields(name, new["technical"], new["functional"], new["owner"])
        if condition is not None:
            await check_condition(conn, condition)
        now_enabled = current.enabled if enabled is None else enabled
        if now_enabled != current.enabled and all(new[k] == getattr(current, k) for k in new):
            change = "enabled" if now_enabled else "disabled"
        elif all(new[k] == getattr(current, k) for k in new) and now_enabled == current.enabled:
            return current  # nothing changed: no new version
        else:
            change = "changed"
        cursor = await conn.execute(QUERIES["rule_id"], {"name": name})
        row = await cursor.fetchone()
        assert row is not None
        return await _new_version(
            conn,
            row[0],
            current.version + 1,
            new["condition"],
            new["technical"],
            new["functional"],
            new["owner"],
            now_enabled,
            change,
            by,
        )


async def _new_version(
    conn: psycopg.AsyncConnection[Any],
    rule_id: int,
    version: int,
    condition: str,
    technical: str,
    functional: str,
    owner: str,
    enabled: bool,
    change: str,
    by: str,
) -> Rule:
    cursor = await conn.execute(
        QUERIES["insert_rule_version"],
        {
            "rule_id": rule_id,
            "version": version,
            "condition": condition,
            "technical": technical,
            "functional": functional,
            "owner": owner,
            "enabled": enabled,
            "change": change,
            "changed_by": by,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    found = await _current(conn, None, version_id=row[0])
    assert found is not None
    return found


async def _current(
    conn: psycopg.AsyncConnection[Any],
    name: str | None,
    *,
    lock: bool = False,
    version_id: int | None = None,
) -> Rule | None:
    if lock and name is not None:
        await conn.execute(QUERIES["lock_rule"], {"name": name})
    async with conn.cursor(row_factory=dict_row) as cursor:
        if version_id is not None:
            await cursor.execute(QUERIES["rule_version"], {"id": version_id})
        else:
            await cursor.execute(QUERIES["current_rule"], {"name": name})
        row = await cursor.fetchone()
    return _rule(row) if row else None


async def get_rule(conn: psycopg.AsyncConnection[Any], name: str) -> Rule | None:
    """The newest version of rule ``name``, or None."""
    return await _current(conn, name)


async def list_rules(conn: psycopg.AsyncConnection[Any]) -> list[Rule]:
    """Every rule's newest version, in the order they are evaluated."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["current_rules"])
        return [_rule(row) for row in await cursor.fetchall()]


async def rule_history(conn: psycopg.AsyncConnection[Any], name: str) -> list[Rule]:
    """Every version of rule ``name``, newest first."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["rule_history"], {"name": name})
        return [_rule(row) for row in await cursor.fetchall()]


async def rule_set_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The current rule-set version: the newest rule version's id (0 with no rule)."""
    cursor = await conn.execute(QUERIES["rule_set_version"])
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def load_rule_set(conn: psycopg.AsyncConnection[Any]) -> RuleSet:
    """The enabled rules, compiled, with the version they are current as of (one snapshot)."""
    async with conn.transaction():
        await conn.execute(QUERIES["repeatable_read"])
        version = await rule_set_version(conn)
        rules = [r for r in await list_rules(conn) if r.enabled]
    return RuleSet(version, tuple((r, compile_condition(r.condition)) for r in rules))

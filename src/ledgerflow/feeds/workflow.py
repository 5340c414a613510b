"""Onboarding a feed: the administrators describe it, the analysts review it.

The states and the steps between them are the table ``STEPS``; nothing else moves a feed.
Each step is checked in this order, and a refusal says which check failed:

1. the feed exists (404) and the step starts from its state (409);
2. whoever asks holds the step's scope (403): ``feeds:describe`` (role operator, and
   admin) or ``feeds:review`` (role analyst, and admin);
3. the fields given are the step's own (403: an analyst cannot change what the
   administrators recorded, an administrator cannot set the review's outcome);
4. each value is valid, and every field the step needs is there afterwards (422,
   naming the field);
5. four eyes: the person who described a feed does not review it (403).

A step writes the feed, one row of its audit trail (who, when, from which state to
which, and each field's value before and after) and the mail it causes, all in one
transaction: the mail goes out exactly when the step is committed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledgerflow.auth.model import Identity
from ledgerflow.db.queries import Queries
from ledgerflow.feeds.letters import Letters
from ledgerflow.notifications.outbox import enqueue

QUERIES = Queries.of("ledgerflow.feeds", "workflow.sql")

STATES = ("detected", "described", "in_review", "onboarded", "rejected", "on_hold")
FREQUENCIES = ("15 minutes", "hourly", "daily", "weekly", "monthly")
REGULATORY = ("trade", "pre_trade", "market_data", "none")
DESCRIBE = "feeds:describe"
REVIEW = "feeds:review"

_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_QUOTED = re.compile(r'"([^"\x00-\x1f\x7f]{1,63})"')
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


class WorkflowError(Exception):
    """A step refused: ``status`` is the HTTP status that says why, ``field`` names the
    field at fault where one is."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def _text(most: int) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("give a value")
        value = value.strip()
        if len(value) > most or not _PRINTABLE.fullmatch(value):
            raise ValueError(f"1 to {most} characters, no control characters")
        return value

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[object], object]:
    def check(value: object) -> object:
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value

    return check


def _identifier(value: object) -> object:
    """A name as PostgreSQL stores it: folded to lower case unless double-quoted (as the
    models' SQL is read, so that reconciliation compares like with like)."""
    text = value.strip() if isinstance(value, str) else ""
    quoted = _QUOTED.fullmatch(text)
    if quoted:
        return quoted[1]
    if not _IDENTIFIER.fullmatch(text):
        raise ValueError(
            'a PostgreSQL name: a letter or _, then letters, digits, _ or $; or "Quoted"'
        )
    return text.lower()


def _yes_no(value: object) -> object:
    if not isinstance(value, bool):
        raise ValueError("yes or no")
    return value


def _note(value: object) -> object:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise ValueError("at most 2,000 characters")
    if _CONTROL.search(value):
        raise ValueError("no control characters but line breaks and tabs")
    return value.strip() or None


# What the administrators record, and what the analysts decide: field → check.
ADMIN_FIELDS: dict[str, Callable[[object], object]] = {
    "loader_name": _text(200),
    "frequency": _one_of(FREQUENCIES),
    "data_type": _text(100),
    "upstream_app_id": _text(64),
    "upstream_app_name": _text(200),
    "persistency_schema": _identifier,
    "persistency_table": _identifier,
    "regulatory": _one_of(REGULATORY),
}
ANALYST_FIELDS: dict[str, Callable[[object], object]] = {
    "used_by_models": _yes_no,
    "review_note": _note,
}
LABELS = {
    "loader_name": "loader name",
    "frequency": "frequency",
    "data_type": "data type",
    "upstream_app_id": "upstream application id",
    "upstream_app_name": "upstream application name",
    "persistency_schema": "persistency schema",
    "persistency_table": "persistency table",
    "regulatory": "regulatory relevance",
    "used_by_models": "used by the models",
    "review_note": "note",
}


@dataclass(frozen=True)
class Step:
    """One step of the workflow: from which states, by which scope, with which fields
    (``needs``: those that must hold a value once it is taken)."""

    name: str
    sources: tuple[str, ...]
    target: str
    scope: str
    fields: tuple[str, ...]
    needs: tuple[str, ...]

    @property
    def section(self) -> str:
        """The section of the console the step belongs to."""
        return "administrators" if self.scope == DESCRIBE else "analysts"


_ADMIN = tuple(ADMIN_FIELDS)
STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("describe", ("detected", "described"), "described", DESCRIBE, _ADMIN, _ADMIN),
        Step("submit", ("described",), "in_review", DESCRIBE, (), _ADMIN),
        Step(
            "onboard",
            ("in_review", "on_hold"),
            "onboarded",
            REVIEW,
            ("used_by_models", "review_note"),
            ("used_by_models",),
        ),
        Step(
            "reject",
            ("in_review", "on_hold"),
            "rejected",
            REVIEW,
            ("used_by_models", "review_note"),
            ("used_by_models", "review_note"),
        ),
        Step("hold", ("in_review",), "on_hold", REVIEW, ("review_note",), ("review_note",)),
        Step("resume", ("on_hold",), "in_review", REVIEW, (), ()),
    )
}


@dataclass(frozen=True)
class FeedRecord:
    """A feed with everything recorded about it (a row of ``ledgerflow.feeds``)."""

    values: Mapping[str, Any]

    @property
    def feed_id(self) -> int:
        """Its id."""
        return int(self.values["id"])

    @property
    def state(self) -> str:
        """Where its onboarding is."""
        return str(self.values["state"])

    def steps_for(self, identity: Identity) -> list[Step]:
        """The steps ``identity`` may take from the feed's state now."""
        return [s for s in STEPS.values() if self.state in s.sources and identity.allows(s.scope)]

    def as_json(self) -> dict[str, Any]:
        """The feed as the API shows it (times in ISO 8601)."""
        return {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in self.values.items()
            if k != "table_name"
        } | {"table": self.values["table_name"]}


@dataclass(frozen=True)
class TrailEntry:
    """One step in a feed's audit trail."""

    at: datetime
    actor: str
    from_state: str | None
    to_state: str
    changes: dict[str, Any]  # "step": its name; each field changed: [before, after]

    def as_json(self) -> dict[str, Any]:
        """The entry as the API shows it."""
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "from": self.from_state,
            "to": self.to_state,
            "changes": self.changes,
        }


def feed_event(feed_id: int, state: str, by: str) -> dict[str, Any]:
    """What the console's live feed says of a feed that was detected or took a step."""
    return {"type": "feed", "id": feed_id, "state": state, "by": by}


async def feed(conn: psycopg.AsyncConnection[Any], feed_id: int) -> FeedRecord | None:
    """The feed, or None."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["feed"], {"id": feed_id})
        row = await cursor.fetchone()
    return None if row is None else FeedRecord(row)


async def feeds_in(
    conn: psycopg.AsyncConnection[Any], states: tuple[str, ...], limit: int = 1000
) -> list[dict[str, Any]]:
    """The feeds in ``states``, the latest change first."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["feeds_in"], {"states": list(states), "limit": limit})
        return await cursor.fetchall()


async def trail(conn: psycopg.AsyncConnection[Any], feed_id: int) -> list[TrailEntry]:
    """The feed's audit trail, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["trail"], {"id": feed_id})
        return [
            TrailEntry(r["at"], r["actor"], r["from_state"], r["to_state"], r["changes"])
            for r in await cursor.fetchall()
        ]


def _checked(step: Step, given: Mapping[str, Any]) -> dict[str, Any]:
    """The step's fields with their values checked; WorkflowError names the first wrong."""
    foreign = [f for f in given if f not in step.fields]
    if foreign:
        name = foreign[0]
        if name in ADMIN_FIELDS or name in ANALYST_FIELDS:
            owner = "administrators" if name in ADMIN_FIELDS else "analysts"
            raise WorkflowError(
                403, f"{LABELS[name]} is for the {owner} to record, not in '{step.name}'", name
            )
        raise WorkflowError(422, f"no field {name!r} in a feed", name)
    checks = ADMIN_FIELDS | ANALYST_FIELDS
    values: dict[str, Any] = {}
    for name, value in given.items():
        try:
            values[name] = checks[name](value)
        except ValueError as exc:
            raise WorkflowError(422, f"{LABELS[name]}: {exc}", name) from None
    return values


async def take_step(
    conn: psycopg.AsyncConnection[Any],
    feed_id: int,
    step_name: str,
    identity: Identity,
    given: Mapping[str, Any],
    letters: Letters,
) -> FeedRecord:
    """Take step ``step_name`` on the feed as ``identity`` with the ``given`` fields;
    return the feed as it is afterwards. Raise WorkflowError when refused."""
    step = STEPS.get(step_name)
    if step is None:
        raise WorkflowError(422, f"no step {step_name!r}; known: {', '.join(STEPS)}", "step")
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["feed_for_update"], {"id": feed_id})
        row = await cursor.fetchone()
        if row is None:
            raise WorkflowError(404, f"no feed {feed_id}", "feed_id")
        if row["state"] not in step.sources:
            raise WorkflowError(
                409,
                f"a feed that is {row['state'].replace('_', ' ')} cannot be "
                f"{step.target.replace('_', ' ')} ('{step.name}' starts from "
                f"{' or '.join(step.sources)})",
                "state",
            )
        if not identity.allows(step.scope):
            who = f"the role {identity.role}" if identity.role else "this token"
            roles = "operator or admin" if step.scope == DESCRIBE else "analyst or admin"
            raise WorkflowError(
                403,
                f"'{step.name}' is for the {step.section} (role {roles}, scope "
                f"{step.scope}); {who} of {identity.name!r} does not allow it",
            )
        values = _checked(step, given)
        # The administrators may change part of a description; a review's answers are
        # given with the review itself, never taken from an earlier step.
        after = {**row, **values} if step.scope == DESCRIBE else values
        for name in step.needs:
            if after.get(name) is None:
                raise WorkflowError(422, f"{LABELS[name]}: needed to '{step.name}'", name)
        changes = {n: [row[n], v] for n, v in values.items() if row[n] != v}
        if step.name == "describe" and row["state"] == "described" and not changes:
            raise WorkflowError(422, "nothing to change: give the fields that change")
        if step.scope == REVIEW:
            await cursor.execute(QUERIES["describers"], {"id": feed_id})
            describers = {r["actor"] for r in await cursor.fetchall()}
            if identity.actor in describers:
                raise WorkflowError(
                    403,
                    f"four eyes: {identity.actor} described this feed or sent it to review; "
                    "another person reviews it",
                )
        by: dict[str, str] = {}
        if step.name == "describe":
            by = {"described_by": identity.actor}
        elif step.scope == REVIEW and step.name != "resume":
            by = {"reviewed_by": identity.actor}
        await cursor.execute(
            QUERIES["update_feed"],
            {"id": feed_id, "state": step.target, **_columns(after | by)},
        )
        updated = await cursor.fetchone()
        assert updated is not None
        await cursor.execute(
            QUERIES["record_step"],
            {
                "feed_id": feed_id,
                "actor": identity.actor,
                "from_state": row["state"],
                "to_state": step.target,
                "changes": Jsonb({"step": step.name, **changes}),
            },
        )
        record = FeedRecord(updated)
        await _tell(conn, record, step, identity.actor, letters)
    return record


def _columns(values: Mapping[str, Any]) -> dict[str, Any]:
    names = (*ADMIN_FIELDS, *ANALYST_FIELDS, "described_by", "reviewed_by")
    return {n: values.get(n) for n in names}


async def _tell(
    conn: psycopg.AsyncConnection[Any], record: FeedRecord, step: Step, actor: str, letters: Letters
) -> None:
    """The analysts hear of a feed to review; the administrators of the review's outcome."""
    if step.name == "submit":
        recipients = await letters.recipients(conn, "analyst")
        await enqueue(conn, letters.review(record, actor), recipients)
    elif step.target in ("onboarded", "rejected", "on_hold"):
        recipients = await letters.recipients(conn, "operator")
        await enqueue(conn, letters.decided(record, actor), recipients)


async def record_detection(
    conn: psycopg.AsyncConnection[Any], feed_id: int, source: str, table: str, letters: Letters
) -> None:
    """The first entry of a new feed's trail, and the administrators' mail (in the
    detection's transaction)."""
    await conn.execute(
        QUERIES["record_step"],
        {
            "feed_id": feed_id,
            "actor": "ledgerflow",
            "from_state": None,
            "to_state": "detected",
            "changes": Jsonb({"step": "detect", "source": [None, source], "table": [None, table]}),
        },
    )
    record = await feed(conn, feed_id)
    assert record is not None
    await enqueue(conn, letters.detected(record), await letters.recipients(conn, "operator"))

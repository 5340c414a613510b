"""Treasury's adjustments: temporary overrides of the HQLA classification, each with its
reason, its author, its window and the effect it had on the LCR when it was made.

An adjustment of kind ``instrument`` gives an instrument (its id as ``target``) another
level and Level 2B haircut category, wherever it appears: held, or as a repo's collateral.
One of kind ``trade`` does so for one repo's collateral only (the trade's id as
``target``); another trade is refused, since its instrument is what to reclassify. An
adjustment is in force from ``valid_from`` until ``valid_until`` (excluded), unless ended
before: it expires by time, with nothing to run. Adding or ending one writes the audit log
in the same transaction; rows are never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledgerflow.auth.store import audit
from ledgerflow.db.queries import Queries
from ledgerflow.treasury.lcr import DEFAULT_RATES, LEVEL_2B_CATEGORIES, Level, Rates
from ledgerflow.treasury.liquidity import REPORTING_CURRENCY, Override, liquidity_inputs

QUERIES = Queries.of("ledgerflow.treasury", "liquidity.sql")
KINDS = ("instrument", "trade")


class AdjustmentError(ValueError):
    """An adjustment refused: ``field`` names the argument at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Adjustment:
    """A row of ``ledgerflow.treasury_adjustments``. ``effect`` holds the LCR figures
    (``LcrFigures.as_json``) on ``as_of`` without it and with it, when it was made."""

    id: int
    kind: Literal["instrument", "trade"]
    target: str
    level: Level
    haircut_category: str | None
    valid_from: datetime
    valid_until: datetime
    reason: str
    created_by: str
    created_at: datetime
    ended_at: datetime | None
    ended_by: str | None
    effect: dict[str, Any]

    def in_force(self, at: datetime) -> bool:
        """Whether it overrides the classification at ``at``."""
        ended = self.ended_at is not None and self.ended_at <= at
        return self.valid_from <= at < self.valid_until and not ended


def _adjustment(row: dict[str, Any]) -> Adjustment:
    return Adjustment(**{**row, "level": Level(row["level"])})


def _level(level: Level | str) -> Level:
    try:
        return Level(level)
    except ValueError:
        known = ", ".join(repr(each.value) for each in Level)
        raise AdjustmentError("level", f"{level!r} is no HQLA level; one of {known}") from None


def _check(
    kind: str,
    level: Level,
    haircut_category: str | None,
    valid_from: datetime,
    valid_until: datetime,
    reason: str,
    by: str,
    as_of: datetime,
) -> None:
    if kind not in KINDS:
        raise AdjustmentError("kind", f"{kind!r}: one of {', '.join(KINDS)}")
    if level is Level.LEVEL_2B and haircut_category not in LEVEL_2B_CATEGORIES:
        categories = ", ".join(LEVEL_2B_CATEGORIES)
        raise AdjustmentError(
            "haircut_category", f"{haircut_category!r}: a Level 2B asset's is one of {categories}"
        )
    if level is not Level.LEVEL_2B and haircut_category is not None:
        raise AdjustmentError(
            "haircut_category", f"{haircut_category!r}: only Level 2B has a haircut category"
        )
    for name, value in (("valid_from", valid_from), ("valid_until", valid_until), ("as_of", as_of)):
        if value.utcoffset() is None:
            raise AdjustmentError(name, f"{value} has no time zone")
    if valid_until <= valid_from:
        raise AdjustmentError("valid_until", f"{valid_until} is not after valid_from {valid_from}")
    if not reason.strip():
        raise AdjustmentError("reason", "say why the classification is overridden")
    if not by.strip():
        raise AdjustmentError("by", "who makes the adjustment")


async def _check_target(conn: psycopg.AsyncConnection[Any], kind: str, target: str) -> None:
    query = QUERIES["instrument_class"] if kind == "instrument" else QUERIES["trade_class"]
    cursor = await conn.execute(query, {"target": target})
    row = await cursor.fetchone()
    if row is None:
        where = "in the reference data" if kind == "instrument" else "among the trades"
        raise AdjustmentError("target", f"no {kind} {target!r} {where}")
    if kind == "instrument" and row[0] == "currency":
        raise AdjustmentError("target", f"{target!r} is a currency: cash is Level 1")
    if kind == "trade" and row[0] != "repo":
        raise AdjustmentError(
            "target",
            f"trade {target!r} is no repo ({row[0]}): only a repo's collateral is adjusted by "
            "trade; reclassify its instrument instead",
        )


async def add_adjustment(
    conn: psycopg.AsyncConnection[Any],
    *,
    kind: Literal["instrument", "trade"],
    target: str,
    level: Level | str,
    haircut_category: str | None,
    valid_from: datetime,
    valid_until: datetime,
    reason: str,
    by: str,
    as_of: datetime,
    currency: str = REPORTING_CURRENCY,
    rates: Rates = DEFAULT_RATES,
) -> Adjustment:
    """Store an adjustment, with its effect: the LCR on ``as_of`` with the adjustments in
    force then, without it and with it (applied whatever its window), and audit it.

    Raises :class:`AdjustmentError` naming the field: an unknown kind or target (or one
    that cannot be adjusted), a level or haircut category the standard does not have, a
    naive time, ``valid_until`` not after ``valid_from``, an empty reason or author.
    """
    checked = _level(level)
    _check(kind, checked, haircut_category, valid_from, valid_until, reason, by, as_of)
    override = Override(kind, target, checked, haircut_category)
    async with conn.transaction():
        await _check_target(conn, kind, target)
        without = await liquidity_inputs(conn, as_of, currency=currency, rates=rates)
        with_it = await liquidity_inputs(
            conn, as_of, currency=currency, rates=rates, extra=override
        )
        effect = {
            "as_of": as_of.isoformat(),
            "currency": currency,
            "without": without.figures().as_json(),
            "with": with_it.figures().as_json(),
        }
        params = {
            "kind": kind,
            "target": target,
            "level": checked.value,
            "haircut_category": haircut_category,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "reason": reason,
            "by": by,
            "effect": Jsonb(effect),
        }
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(QUERIES["add_adjustment"], params)
            row = await cursor.fetchone()
        assert row is not None
        adjustment = _adjustment(row)
        detail = {
            "kind": kind,
            "target": target,
            "level": checked.value,
            "haircut_category": haircut_category,
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat(),
            "reason": reason,
            "effect": effect,
        }
        await audit(conn, by, "treasury.adjustment.add", str(adjustment.id), detail, None)
    return adjustment


async def end_adjustment(
    conn: psycopg.AsyncConnection[Any], id: int, by: str, at: datetime
) -> Adjustment:
    """End adjustment ``id`` at ``at`` (before its ``valid_until``) and audit it.

    Raises :class:`AdjustmentError` naming the field: an unknown or already ended ``id``,
    an empty ``by``, a naive ``at``."""
    if not by.strip():
        raise AdjustmentError("by", "who ends the adjustment")
    if at.utcoffset() is None:
        raise AdjustmentError("at", f"{at} has no time zone")
    async with conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(QUERIES["end_adjustment"], {"id": id, "by": by, "at": at})
            row = await cursor.fetchone()
            if row is None:
                await cursor.execute(QUERIES["adjustment_exists"], {"id": id})
                found = await cursor.fetchone()
                if found is None:
                    raise AdjustmentError("id", f"no adjustment {id}")
                raise AdjustmentError("id", f"adjustment {id} was ended at {found['ended_at']}")
        adjustment = _adjustment(row)
        detail = {
            "kind": adjustment.kind,
            "target": adjustment.target,
            "ended_at": at.isoformat(),
            "valid_until": adjustment.valid_until.isoformat(),
            "effect": adjustment.effect,
        }
        await audit(conn, by, "treasury.adjustment.end", str(id), detail, None)
    return adjustment


async def adjustments(
    conn: psycopg.AsyncConnection[Any], as_of: datetime, include_ended: bool = False
) -> list[Adjustment]:
    """The adjustments not over at ``as_of`` (in force, or to come), newest first; with
    ``include_ended``, every one ever made (ended or expired too)."""
    if as_of.utcoffset() is None:
        raise AdjustmentError("as_of", f"{as_of} has no time zone")
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["adjustments"], {"at": as_of, "include_ended": include_ended})
        return [_adjustment(row) for row in await cursor.fetchall()]

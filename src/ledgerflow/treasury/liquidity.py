"""The bridge from the treasury's ledger to the LCR (:mod:`ledgerflow.treasury.lcr`): the
holdings and flows of the stored positions, cash, trades and balances on a day, in one
reporting currency, with treasury's adjustments or without them (how each row counts:
:mod:`ledgerflow.treasury.holdings_and_flows`); the ratio recorded minute by minute; the
balances of run-off categories that are not trades.

The stock and the flows are the ledger's as stored now; ``as_of`` sets the horizon (30
days from its date in UTC), which FX trades are settled and the adjustments in force. The
reads run in one REPEATABLE READ snapshot when the connection is idle, else in the caller's
transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, LiteralString

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledgerflow.auth.store import audit
from ledgerflow.core.amounts import AmountError, check_amount
from ledgerflow.db.queries import Queries
from ledgerflow.treasury.holdings_and_flows import (
    CashBalance,
    LiquidityInputs,
    Override,
    Row,
    RunningInputs,
    ShortPosition,
    Unconvertible,
    UnknownPosition,
    build_inputs,
    running_inputs,
)
from ledgerflow.treasury.lcr import (
    DEFAULT_RATES,
    HORIZON_DAYS,
    OUTFLOW_CATEGORIES,
    SECURED_OUTFLOWS,
    LcrFigures,
    Level,
    Rates,
)

__all__ = [
    "BALANCE_CATEGORIES",
    "REPORTING_CURRENCY",
    "CashBalance",
    "LiquidityInputs",
    "Override",
    "RunningLcr",
    "ShortPosition",
    "Unconvertible",
    "UnknownPosition",
    "lcr_at",
    "lcr_history",
    "lcr_now",
    "liquidity_inputs",
    "record_figures",
    "record_minute",
    "set_balance",
]

QUERIES = Queries.of("ledgerflow.treasury", "liquidity.sql")
REPORTING_CURRENCY = "USD"
# The outflow categories a balance may have: the secured ones and FX settlements are trades.
BALANCE_CATEGORIES = tuple(
    c for c in OUTFLOW_CATEGORIES if c not in SECURED_OUTFLOWS and c != "fx_derivative_settlement"
)
# The queries whose rows build_inputs reads, by the name it reads them under.
_INPUTS = {
    "currency_prices": QUERIES["currency_prices"],
    "positions": QUERIES["positions"],
    "settled_cash": QUERIES["settled_cash"],
    "horizon_trades": QUERIES["horizon_trades"],
    "balances": QUERIES["balances"],
}


def _aware(name: str, value: datetime) -> None:
    if value.utcoffset() is None:
        raise ValueError(f"{name}: {value} has no time zone")


async def _rows(
    conn: psycopg.AsyncConnection[Any], query: LiteralString, params: Mapping[str, Any]
) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall()


async def _every_row(conn: psycopg.AsyncConnection[Any], day: date) -> dict[str, list[Row]]:
    params = {"day": day, "last_day": day + timedelta(days=HORIZON_DAYS)}
    return {name: await _rows(conn, query, params) for name, query in _INPUTS.items()}


@asynccontextmanager
async def _snapshot(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """One consistent view of the ledger for several reads."""
    if conn.info.transaction_status is not TransactionStatus.IDLE:
        yield
        return
    async with conn.transaction():
        await conn.execute(QUERIES["begin_snapshot"])
        yield


async def _overrides(conn: psycopg.AsyncConnection[Any], as_of: datetime) -> list[Override]:
    rows = await _rows(conn, QUERIES["adjustments_in_force"], {"at": as_of})
    return [
        Override(row["kind"], row["target"], Level(row["level"]), row["haircut_category"])
        for row in rows
    ]


async def liquidity_inputs(
    conn: psycopg.AsyncConnection[Any],
    as_of: datetime,
    *,
    adjusted: bool = True,
    currency: str = REPORTING_CURRENCY,
    rates: Rates = DEFAULT_RATES,
    extra: Override | None = None,
) -> LiquidityInputs:
    """The holdings and flows of the ledger on ``as_of`` in ``currency``, with the
    adjustments in force then (or none when ``adjusted`` is false), and what could not be
    counted. ``extra``: an adjustment not stored, applied last (to show its effect)."""
    _aware("as_of", as_of)
    day = as_of.astimezone(UTC).date()
    async with _snapshot(conn):
        overrides = await _overrides(conn, as_of) if adjusted else []
        rows = await _every_row(conn, day)
    if extra is not None:
        overrides.append(extra)
    return build_inputs(as_of, day, currency, adjusted, rates, overrides, rows)


async def lcr_now(
    conn: psycopg.AsyncConnection[Any],
    as_of: datetime,
    *,
    adjusted: bool = True,
    currency: str = REPORTING_CURRENCY,
    rates: Rates = DEFAULT_RATES,
) -> LcrFigures:
    """The LCR of the ledger on ``as_of`` (see :func:`liquidity_inputs`)."""
    inputs = await liquidity_inputs(conn, as_of, adjusted=adjusted, currency=currency, rates=rates)
    return inputs.figures()


async def record_minute(
    conn: psycopg.AsyncConnection[Any],
    minute: datetime,
    *,
    currency: str = REPORTING_CURRENCY,
    rates: Rates = DEFAULT_RATES,
) -> LcrFigures:
    """Record the LCR of the ledger now as the figures of ``minute`` (truncated to its
    minute) in ``ledgerflow.lcr_history``, adjusted and not; recording a minute again
    replaces its figures, so a minute keeps its last. Return the adjusted figures."""
    _aware("minute", minute)
    minute = minute.replace(second=0, microsecond=0)
    async with _snapshot(conn):
        both = [
            await lcr_now(conn, minute, adjusted=adjusted, currency=currency, rates=rates)
            for adjusted in (True, False)
        ]
    await record_figures(conn, minute, both[0], both[1])
    return both[0]


async def record_figures(
    conn: psycopg.AsyncConnection[Any],
    minute: datetime,
    adjusted: LcrFigures,
    unadjusted: LcrFigures,
) -> None:
    """Record ``adjusted`` and ``unadjusted`` as the figures of ``minute`` (truncated to
    its minute), replacing what it had."""
    _aware("minute", minute)
    await conn.execute(
        QUERIES["record_lcr"],
        {
            "minute": minute.replace(second=0, microsecond=0),
            "adjusted": [True, False],
            "figures": [Jsonb(adjusted.as_json()), Jsonb(unadjusted.as_json())],
        },
    )


class RunningLcr:
    """The LCR of the ledger kept current, adjusted and not, at a cost proportional to
    what changed (the active worker's; see docs/treasury.md).

    Each :meth:`refresh` reads, in one snapshot, where every stream's reading stands, the
    reference data's version, the adjustments in force and the balances. Built from every
    row on the first call, then again when the day (UTC), the reference data or the
    adjustments in force change; otherwise it reads only what the trades stored since the
    last call touched (their instruments' positions in every book, their currencies'
    settled cash, the trades themselves) and replaces those keys' contributions
    (:class:`~ledgerflow.treasury.holdings_and_flows.RunningInputs`). Whoever stores the
    trades, the figures are those of the snapshot, as :func:`lcr_now` would compute them.
    """

    def __init__(self, currency: str = REPORTING_CURRENCY, rates: Rates = DEFAULT_RATES) -> None:
        self.currency = currency
        self.rates = rates
        self.offsets: dict[str, int] = {}  # stream -> next offset, as folded in
        self.rebuilds = 0
        self._version: int | None = None
        self._adjusted: RunningInputs | None = None
        self._unadjusted: RunningInputs | None = None

    async def refresh(
        self, conn: psycopg.AsyncConnection[Any], now: datetime
    ) -> tuple[LcrFigures, LcrFigures]:
        """The figures of the ledger at ``now``, adjusted and not. ``conn`` must be idle:
        each refresh reads in a REPEATABLE READ snapshot of its own. Whatever fails, the
        next refresh builds everything again rather than apply a change twice."""
        _aware("now", now)
        if conn.info.transaction_status is not TransactionStatus.IDLE:
            raise ValueError("RunningLcr.refresh needs an idle connection (a snapshot of its own)")
        try:
            return await self._refresh(conn, now)
        except BaseException:
            self._adjusted = self._unadjusted = None
            raise

    async def _refresh(
        self, conn: psycopg.AsyncConnection[Any], now: datetime
    ) -> tuple[LcrFigures, LcrFigures]:
        day = now.astimezone(UTC).date()
        rows: dict[str, list[Row]] | None = None
        changes: _Changes | None = None
        async with _snapshot(conn):
            version = (await _rows(conn, QUERIES["reference_version"], {}))[0]["version"]
            overrides = await _overrides(conn, now)
            offsets = {
                row["stream"]: row["next_offset"]
                for row in await _rows(conn, QUERIES["stream_offsets"], {})
            }
            adjusted, unadjusted = self._adjusted, self._unadjusted
            if (
                adjusted is None
                or unadjusted is None
                or adjusted.day != day
                or version != self._version
                or tuple(overrides) != adjusted.overrides
                # an offset gone back or a stream gone: a restore, not trades stored
                or any(offsets.get(s, -1) < o for s, o in self.offsets.items())
            ):
                rows = await _every_row(conn, day)
            else:
                changes = await self._changes(conn, offsets)
        # Applied after the snapshot's commit, with nothing to wait for in between.
        if rows is not None:
            adjusted, unadjusted = await asyncio.to_thread(self._build, day, overrides, rows)
            self.rebuilds += 1
        elif changes is not None:
            assert adjusted is not None and unadjusted is not None
            changes.apply((adjusted, unadjusted))
        assert adjusted is not None and unadjusted is not None
        self._adjusted, self._unadjusted = adjusted, unadjusted
        self._version, self.offsets = version, offsets
        return adjusted.figures(), unadjusted.figures()

    def _build(
        self, day: date, overrides: list[Override], rows: dict[str, list[Row]]
    ) -> tuple[RunningInputs, RunningInputs]:
        """Both running inputs from every row (in a thread: it takes seconds at 100,000
        instruments, which the event loop must not wait for)."""
        return (
            running_inputs(day, self.currency, self.rates, overrides, rows),
            running_inputs(day, self.currency, self.rates, (), rows),
        )

    async def _changes(
        self, conn: psycopg.AsyncConnection[Any], offsets: dict[str, int]
    ) -> _Changes:
        """What changed since the last refresh, read in the caller's snapshot."""
        changes = _Changes(await _rows(conn, QUERIES["balances"], {}))
        moved = [s for s, o in offsets.items() if o > self.offsets.get(s, 0)]
        for stream in moved:
            changes.stored += await _rows(
                conn,
                QUERIES["trades_since"],
                {"stream": stream, "next_offset": self.offsets.get(stream, 0)},
            )
        if not changes.stored:
            return changes
        instruments = sorted({t["instrument"] for t in changes.stored})
        changes.currencies = sorted({t["currency"] for t in changes.stored})
        keys = {"instruments": instruments, "currencies": changes.currencies}
        changes.positions = {i: [] for i in instruments}
        for row in await _rows(conn, QUERIES["held_positions"], keys):
            changes.positions[row["instrument"]].append(row)
        changes.held = {
            row["currency"]: row["held"] for row in await _rows(conn, QUERIES["held_cash"], keys)
        }
        return changes


@dataclass
class _Changes:
    """What one refresh read of the ledger's changes, to apply once its snapshot is over."""

    balances: list[Row]
    stored: list[Row] = field(default_factory=list)
    positions: dict[str, list[Row]] = field(default_factory=dict)
    currencies: list[str] = field(default_factory=list)
    held: dict[str, Decimal] = field(default_factory=dict)

    def apply(self, both: tuple[RunningInputs, RunningInputs]) -> None:
        for running in both:
            running.set_balances(self.balances)
            for trade in self.stored:
                running.add_stored(trade)
            for instrument, rows in self.positions.items():
                running.set_instrument(instrument, rows)
            for currency in self.currencies:
                running.set_cash(currency, self.held.get(currency, Decimal(0)))


async def lcr_at(
    conn: psycopg.AsyncConnection[Any], at: datetime, adjusted: bool
) -> tuple[datetime, dict[str, Any]] | None:
    """The minute recorded last at or before ``at`` and its figures; ``None`` before any."""
    _aware("at", at)
    rows = await _rows(conn, QUERIES["lcr_at"], {"at": at, "adjusted": adjusted})
    return (rows[0]["minute"], rows[0]["figures"]) if rows else None


async def lcr_history(
    conn: psycopg.AsyncConnection[Any], since: datetime, until: datetime, adjusted: bool
) -> list[tuple[datetime, dict[str, Any]]]:
    """The minutes recorded from ``since`` (included) to ``until`` (excluded), in order."""
    _aware("since", since)
    _aware("until", until)
    params = {"since": since, "until": until, "adjusted": adjusted}
    return [
        (row["minute"], row["figures"]) for row in await _rows(conn, QUERIES["lcr_history"], params)
    ]


async def set_balance(
    conn: psycopg.AsyncConnection[Any],
    category: str,
    amount: Decimal,
    by: str,
    *,
    currency: str = REPORTING_CURRENCY,
) -> None:
    """Set the balance of a run-off category (one of ``BALANCE_CATEGORIES``) and audit it.

    Raises ``ValueError`` naming the field: an unknown category, an amount that is not a
    non-negative Decimal, a currency that is not an ISO 4217 code, no ``by``."""
    if category not in BALANCE_CATEGORIES:
        raise ValueError(
            f"category: {category!r} is not a balance's; one of {', '.join(BALANCE_CATEGORIES)}"
        )
    if not isinstance(amount, Decimal):
        raise ValueError(f"amount: {amount!r} is not a Decimal")
    try:
        check_amount(amount)
    except AmountError as exc:
        raise ValueError(f"amount: {exc}") from None
    if amount < 0:
        raise ValueError(f"amount: {amount} is negative")
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        raise ValueError(f"currency: {currency!r} is not an ISO 4217 code")
    if not by.strip():
        raise ValueError("by: who sets the balance")
    async with conn.transaction():
        params = {"category": category, "amount": amount, "currency": currency, "by": by}
        await conn.execute(QUERIES["set_balance"], params)
        await audit(
            conn,
            by,
            "treasury.balance.set",
            category,
            {"amount": str(amount), "currency": currency},
            None,
        )

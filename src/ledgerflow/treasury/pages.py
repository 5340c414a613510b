"""The console's treasury pages, for anyone signed in: the liquidity coverage ratio now
(with and without the adjustments, its buffers, its parts, today's history and what could
not be counted), the positions, and the adjustments, which the roles treasury, operator and
admin (scope ``treasury:write``) add and end here.

The JSON API holds ``/treasury/...`` (:mod:`ledgerflow.treasury.routes`), so the pages live
under ``/liquidity``, as the rates explorer lives beside ``/rates``. Handlers read
``request.state.treasury`` (routes.TreasuryState) and the LCR warning level from the app's
settings. The liquidity and positions pages follow the live feed (``data-live-topics``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from psycopg.rows import dict_row
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ledgerflow.auth.access import check_csrf
from ledgerflow.auth.model import AuthError, Identity
from ledgerflow.auth.pages import PageRefused, page, page_responses, pages_of
from ledgerflow.db.queries import Queries
from ledgerflow.reports.pdf import csv_report
from ledgerflow.treasury.adjustments import (
    Adjustment,
    AdjustmentError,
    add_adjustment,
    adjustments,
    end_adjustment,
)
from ledgerflow.treasury.lcr import LEVEL_2B_CATEGORIES, LcrFigures, Level
from ledgerflow.treasury.liquidity import LiquidityInputs, lcr_history, lcr_now, liquidity_inputs
from ledgerflow.treasury.routes import TreasuryState, treasury_state
from ledgerflow.web.pages import download

router = APIRouter(tags=["console"])
QUERIES = Queries.of("ledgerflow.treasury")
SNAPSHOT = Queries.of("ledgerflow.treasury", "liquidity.sql")["begin_snapshot"]
WRITE = "treasury:write"
TABS = (
    ("liquidity", "Liquidity", "/liquidity"),
    ("positions", "Positions", "/liquidity/positions"),
    ("adjustments", "Adjustments", "/liquidity/adjustments"),
)
LEVEL_NAMES = {"1": "Level 1", "2A": "Level 2A", "2B": "Level 2B", "none": "not HQLA"}
POSITION_COLUMNS = ("book", "instrument", "asset_class", "level", "quantity")
MAX_SHOWN = 2000  # positions on the page; the CSV has them all
MAX_TARGET, MAX_REASON = 200, 2000  # as POST /treasury/adjustments
FORM_FIELDS = (
    "kind",
    "target",
    "level",
    "haircut_category",
    "valid_from",
    "valid_until",
    "reason",
)
_WIDE = Context(prec=200)  # sums and differences of amounts stay exact


@dataclass(frozen=True)
class Standing:
    """Where the LCR stands against the warning level and the 100 % floor."""

    key: Literal["ok", "warning", "breach", "undefined"]
    label: str


def standing(lcr: Decimal | None, warning: Decimal) -> Standing:
    """The LCR's status: above the warning level, below it, or below 100 %."""
    if lcr is None:
        return Standing("undefined", "no net outflows: the ratio is not defined")
    if lcr < 1:
        return Standing("breach", "below 100 %")
    if lcr < warning:
        return Standing("warning", "below the warning level")
    return Standing("ok", "above the warning level")


def _market_values(inputs: LiquidityInputs) -> dict[str, Decimal]:
    """The market value held at each level, before haircuts."""
    values: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext(_WIDE):
        for holding in inputs.holdings:
            values[holding.level.value] += holding.market_value
    return dict(values)


def _buffers(figures: LcrFigures, warning: Decimal) -> dict[str, Decimal | None]:
    """HQLA beyond what the floor and the warning level need, as amounts and in points."""
    if figures.lcr is None:
        return {"floor": None, "floor_points": None, "warning": None, "warning_points": None}
    with localcontext(_WIDE):
        return {
            "floor": figures.hqla_total - figures.net_outflows,
            "floor_points": figures.lcr - 1,
            "warning": figures.hqla_total - warning * figures.net_outflows,
            "warning_points": figures.lcr - warning,
        }


def _history(
    adjusted: Sequence[tuple[datetime, dict[str, Any]]],
    unadjusted: Sequence[tuple[datetime, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Today's minutes: the adjusted and unadjusted ratios (decimal strings or None)."""
    without = {minute: figures.get("lcr") for minute, figures in unadjusted}
    return [
        {"minute": minute, "lcr": figures.get("lcr"), "unadjusted": without.get(minute)}
        for minute, figures in adjusted
    ]


def _plain(value: Decimal | int) -> str:
    """A figure for a cell's ``data-value`` (what Copy as CSV takes): exact, no separators."""
    return format(Decimal(value), "f")


def _ratio_number(text: str | None) -> str:
    """A ratio as a percentage for a chart's data (the table shows it exactly)."""
    if text is None:
        return ""
    sign, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    return format(Decimal((sign, digits, exponent + 2)), "f")


@router.get(
    "/liquidity",
    summary="The liquidity page",
    response_class=Response,
    responses=page_responses("The LCR now, its parts, today's history, what is not counted."),
)
async def liquidity(request: Request, identity: Annotated[Identity, page()]) -> Response:
    """The LCR now with the adjustments (and without), against the floor and the warning
    level; HQLA by level, cash by currency, the flows; today's history; what could not be
    counted."""
    state = treasury_state(request)
    warning: Decimal = request.app.state.settings.lcr_warning
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    async with state.pool.connection() as conn:
        async with conn.transaction():  # one view of the ledger for both ratios
            await conn.execute(SNAPSHOT)
            inputs = await liquidity_inputs(conn, now, currency=state.currency, rates=state.rates)
            unadjusted = await lcr_now(
                conn, now, adjusted=False, currency=state.currency, rates=state.rates
            )
        until = now + timedelta(minutes=1)
        recorded = await lcr_history(conn, midnight, until, True)
        recorded_unadjusted = await lcr_history(conn, midnight, until, False)
    figures = inputs.figures()
    with localcontext(_WIDE):
        cash_total = sum((c.value for c in inputs.cash if c.value is not None), Decimal(0))
    return pages_of(request).render(
        request,
        "treasury_liquidity.html",
        tabs=TABS,
        section="liquidity",
        now=now,
        midnight=midnight,
        currency=state.currency,
        figures=figures,
        unadjusted=unadjusted,
        standing=standing(figures.lcr, warning),
        unadjusted_standing=standing(unadjusted.lcr, warning),
        warning=warning,
        buffers=_buffers(figures, warning),
        market=_market_values(inputs),
        level_names=LEVEL_NAMES,
        cash=inputs.cash,
        cash_total=cash_total,
        unknown=inputs.unknown,
        short=inputs.short,
        unconvertible=inputs.unconvertible,
        history=_history(recorded, recorded_unadjusted),
        ratio_number=_ratio_number,
        plain=_plain,
        inflow_cap=state.rates.inflow_cap,
    )


def _level_of(row: dict[str, Any]) -> str:
    """A position's level: ``unknown`` without reference data; an interbank claim, which
    counts as its flow only, is no HQLA (``none``)."""
    if row["unknown_instrument"]:
        return "unknown"
    return str(row["hqla_level"] or "none")


def _matches(row: dict[str, Any], book: str, instrument: str, level: str) -> bool:
    return (
        (not book or row["book"] == book)
        and (not instrument or instrument.casefold() in row["instrument"].casefold())
        and (not level or _level_of(row) == level)
    )


@router.get(
    "/liquidity/positions",
    summary="The positions page",
    response_class=Response,
    responses=page_responses("Positions per book and instrument with their level; or as CSV."),
)
async def positions(
    request: Request,
    identity: Annotated[Identity, page()],
    book: Annotated[str, Query(max_length=200)] = "",
    instrument: Annotated[str, Query(max_length=200)] = "",
    level: Literal["", "1", "2A", "2B", "none", "unknown"] = "",
    format: Literal["html", "csv"] = "html",
) -> Response:
    """Every position (buys minus sells per book and instrument) with its instrument's HQLA
    level, ``unknown`` when the reference data lacks it; filtered by book, instrument
    (any part of its id) and level."""
    async with (
        treasury_state(request).pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cursor,
    ):
        await cursor.execute(QUERIES["positions"])
        every = await cursor.fetchall()
    shown = [row for row in every if _matches(row, book, instrument, level)]
    if format == "csv":
        rows = (
            (r["book"], r["instrument"], r["asset_class"], _level_of(r), r["quantity"])
            for r in shown
        )
        return download("positions.csv", csv_report(POSITION_COLUMNS, rows))
    return pages_of(request).render(
        request,
        "treasury_positions.html",
        tabs=TABS,
        section="positions",
        positions=shown[:MAX_SHOWN],
        more=len(shown) > MAX_SHOWN,
        total=len(every),
        books=sorted({row["book"] for row in every}),
        book=book,
        instrument=instrument,
        level=level,
        level_of=_level_of,
        level_names=LEVEL_NAMES,
        query={"book": book, "instrument": instrument, "level": level},
    )


def _form_default(now: datetime) -> dict[str, str]:
    start = now.replace(second=0, microsecond=0)
    return {
        "kind": "instrument",
        "target": "",
        "level": "1",
        "haircut_category": "",
        "valid_from": start.strftime("%Y-%m-%dT%H:%M"),
        "valid_until": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "reason": "",
    }


def _groups(found: list[Adjustment], now: datetime) -> dict[str, list[Adjustment]]:
    """In force now, to come, and over (ended early or expired)."""
    groups: dict[str, list[Adjustment]] = {"in_force": [], "to_come": [], "over": []}
    for each in found:
        ended = each.ended_at is not None and each.ended_at <= now
        if ended or each.valid_until <= now:
            groups["over"].append(each)
        elif each.valid_from > now:
            groups["to_come"].append(each)
        else:
            groups["in_force"].append(each)
    return groups


async def _adjustments_page(
    request: Request,
    identity: Identity,
    *,
    entered: dict[str, str] | None = None,
    problem: str | None = None,
    problem_field: str | None = None,
    status_code: int = 200,
) -> Response:
    now = datetime.now(UTC)
    async with treasury_state(request).pool.connection() as conn:
        found = await adjustments(conn, now, include_ended=True)
    return pages_of(request).render(
        request,
        "treasury_adjustments.html",
        status_code=status_code,
        tabs=TABS,
        section="adjustments",
        groups=_groups(found, now),
        can_write=identity.allows(WRITE),
        form=entered or _form_default(now),
        levels=LEVEL_NAMES,
        categories=LEVEL_2B_CATEGORIES,
        problem=problem,
        problem_field=problem_field,
    )


@router.get(
    "/liquidity/adjustments",
    summary="The adjustments page",
    response_class=Response,
    responses=page_responses("The adjustments in force, to come and over, with their effect."),
)
async def adjustments_page(request: Request, identity: Annotated[Identity, page()]) -> Response:
    """Treasury's overrides of the HQLA classification, each with its effect on the LCR
    when it was made; the form to add one for those who may."""
    return await _adjustments_page(request, identity)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _moment(name: str, text: str) -> datetime:
    """A time from the form: ``2026-11-30T09:00`` is UTC; an offset may be given."""
    if not text.strip():
        raise AdjustmentError(name, "give a time (UTC)")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdjustmentError(name, f"{text!r} is not a time such as 2026-11-30T09:00") from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


async def _add(state: TreasuryState, identity: Identity, entered: dict[str, str]) -> None:
    if len(entered["target"]) > MAX_TARGET:
        raise AdjustmentError("target", f"at most {MAX_TARGET} characters")
    if len(entered["reason"]) > MAX_REASON:
        raise AdjustmentError("reason", f"at most {MAX_REASON:,} characters")
    kind: Literal["instrument", "trade"] = "trade" if entered["kind"] == "trade" else "instrument"
    if entered["kind"] != kind:
        raise AdjustmentError("kind", f"{entered['kind']!r}: an instrument or a trade")
    level = entered["level"]
    if level not in LEVEL_NAMES:
        raise AdjustmentError("level", f"{level!r}: one of {', '.join(LEVEL_NAMES)}")
    async with state.pool.connection() as conn:
        await add_adjustment(
            conn,
            kind=kind,
            target=entered["target"].strip(),
            level=Level(level),
            haircut_category=entered["haircut_category"] or None,
            valid_from=_moment("valid_from", entered["valid_from"]),
            valid_until=_moment("valid_until", entered["valid_until"]),
            reason=entered["reason"],
            by=identity.actor,
            as_of=datetime.now(UTC),
            currency=state.currency,
            rates=state.rates,
        )


async def _end(state: TreasuryState, identity: Identity, form: FormData) -> None:
    try:
        adjustment_id = int(_field(form, "id"))
    except ValueError:
        raise AdjustmentError("id", "not an adjustment's id") from None
    if not 1 <= adjustment_id < 2**63:
        raise AdjustmentError("id", "not an adjustment's id")
    async with state.pool.connection() as conn:
        await end_adjustment(conn, adjustment_id, identity.actor, datetime.now(UTC))


@router.post("/liquidity/adjustments", include_in_schema=False)
async def adjustments_form(request: Request, identity: Annotated[Identity, page()]) -> Response:
    """The page's forms: add an adjustment, or end one early (scope treasury:write)."""
    try:
        await check_csrf(request, identity)
    except AuthError as exc:
        raise PageRefused(403, str(exc)) from None
    if not identity.allows(WRITE):
        raise PageRefused(
            403,
            f"adjustments are for the roles treasury, operator and admin; you are {identity.role}",
        )
    form = await request.form()
    state = treasury_state(request)
    entered: dict[str, str] | None = None
    try:
        if _field(form, "action") == "end":
            await _end(state, identity, form)
        else:
            entered = {name: _field(form, name) for name in FORM_FIELDS}
            await _add(state, identity, entered)
    except AdjustmentError as exc:
        return await _adjustments_page(
            request,
            identity,
            entered=entered,
            problem=str(exc),
            problem_field=exc.field,
            status_code=404 if exc.problem.startswith("no adjustment") else 422,
        )
    return RedirectResponse("/liquidity/adjustments", 303)

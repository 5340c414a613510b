"""The treasury over HTTP (JSON): the LCR now or at any past minute, positions, what the
streams are doing; and, with the scope ``treasury:write`` (roles treasury, operator,
admin), instruments' reference data, run-off balances and adjustments.

Handlers read ``request.state.treasury``, a TreasuryState the API process's lifespan makes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.auth.access import require
from ledgerflow.auth.model import Identity
from ledgerflow.db.queries import Queries
from ledgerflow.treasury.adjustments import (
    Adjustment,
    AdjustmentError,
    add_adjustment,
    adjustments,
    end_adjustment,
)
from ledgerflow.treasury.instruments import (
    InstrumentsCsvError,
    load_instruments,
    parse_instruments_csv,
)
from ledgerflow.treasury.lcr import Rates
from ledgerflow.treasury.liquidity import lcr_at, lcr_now, set_balance
from ledgerflow.treasury.status import treasury_status
from ledgerflow.web.errors import answers

router = APIRouter(prefix="/treasury", tags=["treasury"])
QUERIES = Queries.of("ledgerflow.treasury")
MAX_CSV_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class TreasuryState:
    """What the treasury routes need for the lifetime of the API process."""

    pool: AsyncConnectionPool
    currency: str
    rates: Rates
    control_stream: str


def treasury_state(request: Request) -> TreasuryState:
    """The TreasuryState the lifespan made."""
    state: TreasuryState = request.state.treasury
    return state


def _plain(value: Any) -> Any:
    """JSON for a value: decimals and times as strings, exact."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _refused(field: str, problem: str, status: int = 422) -> Response:
    return JSONResponse({"error": f"{field}: {problem}", "parameter": field}, status)


@router.get(
    "/lcr",
    summary="The liquidity coverage ratio",
    responses=answers(400, 401, 403, 404),
)
async def lcr(
    request: Request,
    identity: Annotated[Identity, require("read")],
    at: Annotated[datetime | None, Query(description="A past moment (ISO 8601)")] = None,
    adjusted: bool = True,
) -> Response:
    """The LCR now, or at the minute ``at`` falls in (from the per-minute history), with
    the adjustments in force (``adjusted=false``: without them). Amounts after haircuts,
    as decimal strings."""
    state = treasury_state(request)
    async with state.pool.connection() as conn:
        if at is None:
            now = datetime.now(UTC)
            figures = await lcr_now(
                conn, now, adjusted=adjusted, currency=state.currency, rates=state.rates
            )
            return JSONResponse(
                {"as_of": now.isoformat(), **figures.as_json(), "currency": state.currency}
            )
        if at.utcoffset() is None:
            return _refused("at", "give a time zone (2026-11-30T09:00:00Z)")
        found = await lcr_at(conn, at, adjusted)
    if found is None:
        return _refused("at", "no figures were recorded at or before this minute", 404)
    minute, recorded = found
    return JSONResponse({"as_of": minute.isoformat(), **recorded, "currency": state.currency})


@router.get("/positions", summary="Positions and cash", responses=answers(400, 401, 403))
async def positions(request: Request, identity: Annotated[Identity, require("read")]) -> Response:
    """Every position (buys - sells per book and instrument; ``unknown_instrument`` when
    the reference data lacks it) and the cash per book and currency."""
    async with (
        treasury_state(request).pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cursor,
    ):
        await cursor.execute(QUERIES["positions"])
        held = await cursor.fetchall()
        await cursor.execute(QUERIES["cash_positions"])
        cash = await cursor.fetchall()
    return JSONResponse(_plain({"positions": held, "cash": cash}))


@router.get("/status", summary="What the streams are doing", responses=answers(400, 401, 403))
async def status(request: Request, identity: Annotated[Identity, require("read")]) -> Response:
    """Each source's stream, since when, how far it is read, the last control message
    applied; refused control messages; instruments held without reference data."""
    state = treasury_state(request)
    async with state.pool.connection() as conn:
        found = await treasury_status(conn, state.control_stream)
    return JSONResponse(_plain(found))


@router.post(
    "/instruments",
    summary="Load instruments' reference data (CSV)",
    responses=answers(400, 401, 403, 413, 422),
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def instruments(
    request: Request, identity: Annotated[Identity, require("treasury:write")]
) -> Response:
    """A CSV with the header ``instrument,asset_class,issuer_type,hqla_level,
    haircut_category,currency,price``; every row is upserted. A row that cannot be read
    refuses the whole file, naming its line and column."""
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        return _refused("body", f"at most {MAX_CSV_BYTES:,} bytes", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _refused("body", "not UTF-8 text")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        return JSONResponse(
            {"error": f"line {line}: a NUL character", "parameter": "body", "line": line}, 422
        )
    try:
        rows = parse_instruments_csv(text)
    except InstrumentsCsvError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.column, "line": exc.line}, 422)
    async with treasury_state(request).pool.connection() as conn:
        loaded = await load_instruments(conn, rows)
    return JSONResponse({"loaded": loaded})


class BalanceIn(BaseModel):
    """A run-off category's balance."""

    # A decimal string: a JSON number would be read as a float on the way in.
    amount: str = Field(pattern=r"^\d{1,20}(\.\d{1,10})?$", examples=["1250000.00"])
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")


@router.put(
    "/balances/{category}",
    summary="Set a run-off category's balance",
    responses=answers(400, 401, 403, 422),
)
async def balance(
    request: Request,
    category: Annotated[str, Path(max_length=64)],
    body: BalanceIn,
    identity: Annotated[Identity, require("treasury:write")],
) -> Response:
    """Retail deposits, operational deposits, non-financial corporates...: their outflow
    is the balance times the category's run-off rate."""
    try:
        async with treasury_state(request).pool.connection() as conn:
            await set_balance(
                conn, category, Decimal(body.amount), identity.actor, currency=body.currency
            )
    except ValueError as exc:
        return _refused("category" if "categor" in str(exc) else "amount", str(exc))
    return JSONResponse({"category": category, "amount": body.amount})


def _adjustment(found: Adjustment) -> dict[str, Any]:
    value: dict[str, Any] = _plain(dataclasses.asdict(found))
    return value


@router.get("/adjustments", summary="The adjustments", responses=answers(400, 401, 403))
async def list_adjustments(
    request: Request,
    identity: Annotated[Identity, require("read")],
    include_ended: bool = False,
) -> Response:
    """The adjustments in force and to come (``include_ended``: every one)."""
    async with treasury_state(request).pool.connection() as conn:
        found = await adjustments(conn, datetime.now(UTC), include_ended)
    return JSONResponse([_adjustment(a) for a in found])


class AdjustmentIn(BaseModel):
    """A temporary reclassification: an instrument's level (and 2B category), or one
    repo's collateral, from ``valid_from`` until ``valid_until``, with its reason."""

    kind: Literal["instrument", "trade"]
    target: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    level: Literal["1", "2A", "2B", "none"]
    haircut_category: Literal["rmbs", "corporate_debt", "equity"] | None = None
    valid_from: datetime
    valid_until: datetime
    reason: str = Field(min_length=1, max_length=2000, pattern=r"^[^\x00]+$")

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        if value.utcoffset() is None:
            raise ValueError("give a time zone (2026-11-30T09:00:00Z)")
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("a time between the years 1 and 9999") from None
        if not 1900 <= value.astimezone(UTC).year <= 9998:
            raise ValueError("a time between the years 1900 and 9998")
        return value


@router.post(
    "/adjustments",
    summary="Add an adjustment",
    status_code=201,
    responses=answers(400, 401, 403, 422),
)
async def create_adjustment(
    request: Request,
    body: AdjustmentIn,
    identity: Annotated[Identity, require("treasury:write")],
) -> Response:
    """Stored with its effect on the LCR now (without and with it) and audited."""
    state = treasury_state(request)
    try:
        async with state.pool.connection() as conn:
            made = await add_adjustment(
                conn,
                kind=body.kind,
                target=body.target,
                level=body.level,
                haircut_category=body.haircut_category,
                valid_from=body.valid_from,
                valid_until=body.valid_until,
                reason=body.reason,
                by=identity.actor,
                as_of=datetime.now(UTC),
                currency=state.currency,
                rates=state.rates,
            )
    except AdjustmentError as exc:
        return _refused(exc.field, exc.problem)
    return JSONResponse(_adjustment(made), 201)


@router.post(
    "/adjustments/{adjustment_id}/end",
    summary="End an adjustment early",
    responses=answers(400, 401, 403, 404, 422),
)
async def finish_adjustment(
    request: Request,
    adjustment_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    identity: Annotated[Identity, require("treasury:write")],
) -> Response:
    """The adjustment stops applying now."""
    try:
        async with treasury_state(request).pool.connection() as conn:
            ended = await end_adjustment(conn, adjustment_id, identity.actor, datetime.now(UTC))
    except AdjustmentError as exc:
        status = 404 if "no adjustment" in exc.problem else 422
        return _refused(exc.field, exc.problem, status)
    return JSONResponse(_adjustment(ended))

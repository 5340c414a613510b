"""The rates HTTP routes: ``GET /rates`` and ``POST /prices/batches``.

Handlers read what they need from ``request.state.rates``, a RatesState the API process's
lifespan makes (see ledgerflow.runtime.api). The models describe the answers in the
OpenAPI document; the handlers answer with JSON they build themselves.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import structlog
from fastapi import APIRouter, Query
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.auth.access import optional, require
from ledgerflow.auth.model import AuthError, Identity
from ledgerflow.auth.store import audit
from ledgerflow.db.replicas import Connections
from ledgerflow.rates import price_batches
from ledgerflow.rates.cache import Answer, RatesCache
from ledgerflow.rates.lanes import BadRequest, lanes_for, parse_rates_query
from ledgerflow.web.errors import Error

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RatesState:
    """What the rates routes need, for the lifetime of the API process."""

    pool: AsyncConnectionPool  # writes
    reads: Connections  # reads: a replica in rotation, or the primary
    answer: Answer  # lane_rates, through the cache when it is on
    cache: RatesCache | None  # None when LEDGERFLOW_RATES_CACHE_SIZE is 0
    max_days: int
    # Large batches take connections for a while; readers must always find one.
    writers: asyncio.Semaphore
    require_token: bool  # LEDGERFLOW_RATES_REQUIRE_TOKEN

    def answering(self) -> Connections:
        """Where an answer is read: a replica, unless the cache is on. The cache keeps an
        answer until its lane changes, so one read from a replica that had not replayed
        the batch that cleared it would be kept stale; misses go to the primary, hits
        never reach the database."""
        return self.pool if self.cache is not None else self.reads


def _state(request: Request) -> RatesState:
    state: RatesState = request.state.rates
    return state


def _unavailable(exc: Exception) -> Response:
    if isinstance(exc, psycopg.errors.UndefinedTable):
        log.error("api.rates_not_installed", error=str(exc))
        return JSONResponse(
            {"error": "this database has no rates tables: run `ledgerflow migrate --rates`"},
            503,
        )
    log.warning("api.database_unavailable", error=str(exc))
    return JSONResponse({"error": "the database is unavailable; try again"}, 503)


router = APIRouter(tags=["rates"])


class DailyRate(BaseModel):
    """One day of a lane."""

    day: str = Field(description="The day, as YYYY-MM-DD.", examples=["2021-01-01"])
    count: int | None = Field(description="Prices that day; null when there are none.")
    price: float | None = Field(
        description="Their average; null with fewer than three prices (the original's rule)."
    )


class Rates(BaseModel):
    """One entry per day, from date_to down to date_from."""

    rates: list[DailyRate]


class Problem(BaseModel):
    """One invalid row of a price batch."""

    row: int
    problems: list[str]


class BatchProblems(BaseModel):
    """Why a price batch was refused; nothing of it was written."""

    error: str
    problems: list[Problem] = []
    problem_count: int = 0


class BatchOutcome(BaseModel):
    """A committed price batch (or one recognised as sent before)."""

    batch_id: str
    rows: int
    duplicate: bool
    milliseconds: float


class PriceRow(BaseModel):
    """One price: a lane, a day and an integer price."""

    orig_code: str
    dest_code: str
    day: str = Field(examples=["2021-01-01"])
    price: int = Field(gt=0, le=price_batches.MAX_PRICE)


class PriceBatchBody(BaseModel):
    """A JSON price batch (CSV with a header row is accepted too, batch_id in the query)."""

    batch_id: str = Field(min_length=1)
    prices: list[PriceRow] = Field(min_length=1)


UNAVAILABLE = {
    "model": Error,
    "description": "The database is unavailable, or lacks the rates tables.",
}
# Documented as dates, checked by parse_rates_query (whose message names the parameter).
DAY: dict[str, Any] = {"examples": ["2021-01-01"], "json_schema_extra": {"format": "date"}}
CODE = "A port code (e.g. CNSGH) or a region slug (every port of the region and below)."


@router.get(
    "/rates",
    summary="Average daily prices of a lane",
    response_model=Rates,
    responses={
        400: {"model": Error, "description": "A parameter is missing or wrong; it is named."},
        401: {"model": Error, "description": "Credentials that are not valid were sent."},
        403: {"model": Error, "description": "The token lacks the scope read."},
        503: UNAVAILABLE,
    },
)
async def rates(
    request: Request,
    date_from: Annotated[str, Query(description="The first day, as YYYY-MM-DD.", **DAY)],
    date_to: Annotated[str, Query(description="The last day, as YYYY-MM-DD.", **DAY)],
    orig_code: Annotated[str, Query(description="Where from. " + CODE, examples=["north"])],
    dest_code: Annotated[str, Query(description="Where to. " + CODE, examples=["south"])],
    identity: Annotated[Identity | None, optional()],
) -> Response:
    """The average price per day of every lane from orig_code to dest_code, as the original
    service answered: a day without prices has a null count; fewer than three prices give
    a null price. Open without credentials unless LEDGERFLOW_RATES_REQUIRE_TOKEN is set."""
    state = _state(request)
    if state.require_token:
        if identity is None:
            raise AuthError(401, "this server requires a token with the scope read for /rates")
        identity.require("read")
    try:
        asked = parse_rates_query(request.query_params, state.max_days)
        async with state.answering().connection() as conn:  # one for the whole request
            lanes = await lanes_for(conn, asked)
            answer = await state.answer(conn, lanes)
    except BadRequest as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable, PoolTimeout) as exc:
        return _unavailable(exc)
    return JSONResponse({"rates": answer})


def parse_batch(body: bytes, content_type: str, batch_id: str | None) -> price_batches.PriceBatch:
    """A batch from a request body: CSV (batch_id from the query string) or JSON."""
    if content_type.startswith("text/csv"):
        return price_batches.from_csv(batch_id, body.decode())
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise price_batches.BatchRejected(f"the body is not JSON: {exc}") from None
    return price_batches.from_json(document)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its definitions written in place (the OpenAPI document
    has no $defs of its own for a request body described by hand)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(PriceBatchBody)},
            "text/csv": {
                "schema": {"type": "string"},
                "example": "orig_code,dest_code,day,price\nCNGGZ,EETLL,2021-02-01,1200\n",
            },
        },
    }
}


@router.post(
    "/prices/batches",
    summary="Commit a price batch, whole or not at all",
    status_code=201,
    response_model=BatchOutcome,
    openapi_extra=BATCH_BODY,
    responses={
        200: {"model": BatchOutcome, "description": "A batch_id sent before: nothing written."},
        400: {"model": Error, "description": "A query parameter is wrong."},
        401: {"model": Error, "description": "No credentials, or credentials not valid."},
        403: {"model": Error, "description": "No scope prices:write, or no CSRF token."},
        413: {"model": Error, "description": "The body is larger than the limit."},
        422: {"model": BatchProblems, "description": "The batch is invalid; nothing written."},
        503: UNAVAILABLE,
    },
)
async def post_price_batch(
    request: Request,
    identity: Annotated[Identity, require("prices:write")],
    batch_id: Annotated[
        str | None, Query(description="The batch's id, for CSV bodies.", max_length=200)
    ] = None,
) -> Response:
    """Validate the batch whole and commit it in one transaction; a batch_id seen before
    inserts nothing and answers 200 with the first commit's row count. Needs the scope
    prices:write."""
    state = _state(request)
    body = await request.body()
    try:
        # Parsing tens of thousands of rows takes tens of milliseconds: off the event
        # loop, so that /rates readers keep being answered meanwhile.
        batch = await asyncio.to_thread(
            parse_batch, body, request.headers.get("content-type", ""), batch_id
        )
        async with state.writers, state.pool.connection() as conn:
            outcome = await price_batches.commit(conn, batch, source="http")
            if not outcome.duplicate:
                await audit(
                    conn,
                    identity.actor,
                    "prices.batch",
                    batch.batch_id,
                    {"rows": outcome.rows},
                    request.client.host if request.client else None,
                )
    except price_batches.BatchRejected as exc:
        return JSONResponse(exc.as_json(), 422)
    except UnicodeDecodeError:
        return JSONResponse({"error": "the CSV body is not UTF-8"}, 422)
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable, PoolTimeout) as exc:
        return _unavailable(exc)
    if not outcome.duplicate and state.cache is not None:
        await state.cache.invalidate(batch)
    log.info("prices.batch", actor=identity.actor, **outcome.as_json())
    return JSONResponse(outcome.as_json(), 200 if outcome.duplicate else 201)

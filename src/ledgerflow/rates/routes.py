"""The rates HTTP routes: ``GET /rates`` and ``POST /prices/batches``.

Handlers read what they need from ``request.state.rates``, a RatesState the API process's
lifespan makes (see ledgerflow.runtime.api).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledgerflow.rates import price_batches
from ledgerflow.rates.cache import Answer, RatesCache
from ledgerflow.rates.lanes import BadRequest, lanes_for, parse_rates_query

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RatesState:
    """What the rates routes need, for the lifetime of the API process."""

    pool: AsyncConnectionPool
    answer: Answer  # lane_rates, through the cache when it is on
    cache: RatesCache | None  # None when LEDGERFLOW_RATES_CACHE_SIZE is 0
    max_days: int
    # Large batches take connections for a while; readers must always find one.
    writers: asyncio.Semaphore


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


async def rates(request: Request) -> Response:
    """The average price per day of a lane, from date_to down to date_from."""
    state = _state(request)
    try:
        asked = parse_rates_query(request.query_params, state.max_days)
        async with state.pool.connection() as conn:  # one connection for the whole request
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
    except (ValueError, UnicodeDecodeError) as exc:
        raise price_batches.BatchRejected(f"the body is not JSON: {exc}") from None
    return price_batches.from_json(document)


async def post_price_batch(request: Request) -> Response:
    """Commit a price batch whole, or nothing of it; a batch_id seen before inserts nothing."""
    state = _state(request)
    body = await request.body()
    try:
        # Parsing tens of thousands of rows takes tens of milliseconds: off the event
        # loop, so that /rates readers keep being answered meanwhile.
        batch = await asyncio.to_thread(
            parse_batch,
            body,
            request.headers.get("content-type", ""),
            request.query_params.get("batch_id"),
        )
        async with state.writers, state.pool.connection() as conn:
            outcome = await price_batches.commit(conn, batch, source="http")
    except price_batches.BatchRejected as exc:
        return JSONResponse(exc.as_json(), 422)
    except UnicodeDecodeError:
        return JSONResponse({"error": "the CSV body is not UTF-8"}, 422)
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable, PoolTimeout) as exc:
        return _unavailable(exc)
    if not outcome.duplicate and state.cache is not None:
        await state.cache.invalidate(batch)
    log.info("prices.batch", **outcome.as_json())
    return JSONResponse(outcome.as_json(), 200 if outcome.duplicate else 201)


ROUTES = [
    Route("/rates", rates),
    Route("/prices/batches", post_price_batch, methods=["POST"]),
]

"""Feeds over HTTP: loaders report their loads (``POST /loads``, scope ``loads:write``),
and the feeds detected so far are listed (``GET /feeds``).

Handlers read ``request.state.feeds``, a FeedsState the API process's lifespan makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.auth.access import require
from ledgerflow.auth.model import Identity
from ledgerflow.feeds.loads import Load, LoadError, detect, feeds, record_load
from ledgerflow.web.errors import answers

router = APIRouter(tags=["feeds"])


@dataclass(frozen=True)
class FeedsState:
    """What the feeds routes need for the lifetime of the API process."""

    pool: AsyncConnectionPool


def _state(request: Request) -> FeedsState:
    state: FeedsState = request.state.feeds
    return state


class LoadIn(BaseModel):
    """One load, as a loader reports it."""

    source: str = Field(min_length=1, max_length=200, examples=["murex-eod"])
    table: str = Field(min_length=3, max_length=200, examples=["staging.trades"])
    rows: int = Field(ge=0, le=2**63 - 1, examples=[120_000])
    status: Literal["succeeded", "failed"] = "succeeded"
    started_at: datetime = Field(examples=["2026-11-30T06:00:00Z"])
    finished_at: datetime = Field(examples=["2026-11-30T06:04:10Z"])


@router.post(
    "/loads",
    summary="Report a load",
    status_code=201,
    responses=answers(400, 401, 403, 422),
)
async def report_load(
    request: Request, body: LoadIn, identity: Annotated[Identity, require("loads:write")]
) -> Response:
    """Record one load of a table by a loader; a source and table that load successfully
    for the first time become a new feed at once (the answer names it)."""
    load = Load(body.source, body.table, body.rows, body.status, body.started_at, body.finished_at)
    try:
        async with _state(request).pool.connection() as conn:
            load_id = await record_load(conn, load, identity.actor)
            new = await detect(conn) if load.status == "succeeded" else []
    except LoadError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.field}, 422)
    return JSONResponse({"load": load_id, "new_feeds": [f.as_json() for f in new]}, 201)


@router.get("/feeds", summary="The feeds detected", responses=answers(400, 401, 403))
async def list_feeds(
    request: Request,
    identity: Annotated[Identity, require("read")],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Every feed, newest first, with its onboarding state."""
    async with _state(request).pool.connection() as conn:
        found = await feeds(conn, limit)
    return JSONResponse([f.as_json() for f in found])

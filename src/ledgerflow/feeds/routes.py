"""Feeds over HTTP (JSON): loaders report their loads (``POST /loads``, scope
``loads:write``); the feeds are listed and read with their audit trail; the workflow's
steps are taken (``POST /feeds/{id}/steps/{step}``, scope ``feeds:describe`` or
``feeds:review``); models are registered; reconciliation runs and its findings are read
and assigned (scope ``feeds:reconcile``).

Handlers read ``request.state.feeds``, a FeedsState the API process's lifespan makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.auth.access import require
from ledgerflow.auth.model import Identity
from ledgerflow.auth.store import audit
from ledgerflow.feeds.letters import Letters, tell_findings
from ledgerflow.feeds.load_logs import LoadLogMapping
from ledgerflow.feeds.loads import Load, LoadError, detect, feeds, record_load
from ledgerflow.feeds.models import ModelError, models, register_model
from ledgerflow.feeds.reconcile import (
    FindingError,
    Reconciliation,
    findings,
    findings_csv,
    findings_pdf,
    last_reconciliation,
    reconcile,
    update_finding,
)
from ledgerflow.feeds.workflow import (
    STEPS,
    WorkflowError,
    feed,
    feed_event,
    take_step,
    trail,
)
from ledgerflow.kv.events import Discard, EventSink
from ledgerflow.web.errors import answers
from ledgerflow.web.pages import download

router = APIRouter(tags=["feeds"])
ID = Annotated[int, Path(ge=1, le=2**63 - 1)]
StepName = Literal["describe", "submit", "onboard", "reject", "hold", "resume"]
FindingStatus = Literal["open", "investigating", "resolved", "dismissed"]


@dataclass(frozen=True)
class FeedsState:
    """What the feeds routes need for the lifetime of the API process: the pool, what
    mails are made of, ``mail_now`` to send what a commit wrote to the outbox, and the
    mapping of another loader's load log."""

    pool: AsyncConnectionPool
    letters: Letters
    mail_now: Callable[[], None]
    load_log: LoadLogMapping | None = None  # another loader's load-log table, if mapped
    events: EventSink = field(default_factory=Discard)  # the console's live feed


def feeds_state(request: Request) -> FeedsState:
    """The FeedsState the lifespan made."""
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
    for the first time become a new feed at once (the answer names it), and the
    administrators are mailed."""
    state = feeds_state(request)
    load = Load(body.source, body.table, body.rows, body.status, body.started_at, body.finished_at)
    try:
        async with state.pool.connection() as conn:
            load_id = await record_load(conn, load, identity.actor)
            succeeded = load.status == "succeeded"
            new = await detect(conn, state.letters, external=state.load_log) if succeeded else []
    except LoadError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.field}, 422)
    if new:
        state.mail_now()
    for found in new:
        state.events.emit(feed_event(found.feed_id, found.state, identity.actor))
    return JSONResponse({"load": load_id, "new_feeds": [f.as_json() for f in new]}, 201)


@router.get("/feeds", summary="The feeds detected", responses=answers(400, 401, 403))
async def list_feeds(
    request: Request,
    identity: Annotated[Identity, require("read")],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Every feed, newest first, with its onboarding state."""
    async with feeds_state(request).pool.connection() as conn:
        found = await feeds(conn, limit)
    return JSONResponse([f.as_json() for f in found])


@router.get(
    "/feeds/{feed_id}", summary="One feed and its trail", responses=answers(400, 401, 403, 404)
)
async def one_feed(
    request: Request, feed_id: ID, identity: Annotated[Identity, require("read")]
) -> Response:
    """Everything recorded about the feed, its audit trail, and the steps the caller
    may take now."""
    async with feeds_state(request).pool.connection() as conn:
        found = await feed(conn, feed_id)
        steps = await trail(conn, feed_id)
    if found is None:
        return JSONResponse({"error": f"no feed {feed_id}", "parameter": "feed_id"}, 404)
    return JSONResponse(
        found.as_json()
        | {
            "trail": [t.as_json() for t in steps],
            "steps": [s.name for s in found.steps_for(identity)],
        }
    )


class StepIn(BaseModel):
    """The fields a step records; each step takes its own (see docs/feeds.md)."""

    loader_name: str | None = Field(None, examples=["murex-eod-loader"])
    frequency: Literal["15 minutes", "hourly", "daily", "weekly", "monthly"] | None = None
    data_type: str | None = Field(None, examples=["trades"])
    upstream_app_id: str | None = Field(None, examples=["APP-0042"])
    upstream_app_name: str | None = Field(None, examples=["Murex"])
    persistency_schema: str | None = Field(None, examples=["staging"])
    persistency_table: str | None = Field(None, examples=["trades"])
    regulatory: Literal["trade", "pre_trade", "market_data", "none"] | None = None
    used_by_models: bool | None = None
    review_note: str | None = Field(None, max_length=2000)


async def step(
    state: FeedsState, feed_id: int, name: str, identity: Identity, given: dict[str, Any]
) -> Any:
    """Take a step and send the mail it wrote; WorkflowError when refused."""
    async with state.pool.connection() as conn:
        record = await take_step(conn, feed_id, name, identity, given, state.letters)
    state.mail_now()
    state.events.emit(feed_event(feed_id, record.state, identity.actor))
    return record


@router.post(
    "/feeds/{feed_id}/steps/{step_name}",
    summary="Take a step of the onboarding workflow",
    responses=answers(400, 401, 403, 404, 409, 422),
)
async def take(
    request: Request,
    feed_id: ID,
    step_name: StepName,
    body: StepIn,
    identity: Annotated[Identity, require("feeds:describe", "feeds:review")],
) -> Response:
    """``describe`` and ``submit`` (administrators: scope ``feeds:describe``), ``onboard``,
    ``reject``, ``hold`` and ``resume`` (analysts: scope ``feeds:review``). The answer is
    the feed afterwards; a refusal says why: 403 (role, or the other section's field),
    409 (not from this state), 422 (a field missing or wrong, named)."""
    given = body.model_dump(exclude_unset=True)
    try:
        record = await step(feeds_state(request), feed_id, step_name, identity, given)
    except WorkflowError as exc:
        answer: dict[str, Any] = {"error": str(exc)}
        if exc.field:
            answer["parameter"] = exc.field
        return JSONResponse(answer, exc.status)
    return JSONResponse(record.as_json())


class ModelIn(BaseModel):
    """A production model: its SQL, or the tables it reads (one of the two)."""

    name: str = Field(min_length=1, max_length=64, examples=["spoofing-v2"])
    sql: str | None = Field(None, max_length=200_000, examples=["SELECT * FROM md.quotes"])
    tables: list[str] | None = Field(None, max_length=100_000, examples=[["md.quotes"]])


@router.post(
    "/models",
    summary="Register a production model",
    status_code=201,
    responses=answers(400, 401, 403, 422),
)
async def add_model(
    request: Request, body: ModelIn, identity: Annotated[Identity, require("feeds:reconcile")]
) -> Response:
    """Register (or replace) a model; the answer maps each table it reads to the view it
    was reached through (null: read directly)."""
    try:
        async with feeds_state(request).pool.connection() as conn:
            read = await register_model(
                conn, body.name, identity.actor, sql=body.sql, tables=body.tables
            )
            await audit(conn, identity.actor, "model.register", body.name, {"tables": len(read)})
    except ModelError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.field}, 422)
    return JSONResponse({"name": body.name, "tables": read}, 201)


@router.get("/models", summary="The production models", responses=answers(400, 401, 403))
async def list_models(request: Request, identity: Annotated[Identity, require("read")]) -> Response:
    """Every model with the tables it reads."""
    async with feeds_state(request).pool.connection() as conn:
        found = await models(conn)
    return JSONResponse([m.as_json() for m in found])


async def run_reconciliation(state: FeedsState, ran_by: str) -> Reconciliation:
    """Reconcile now and mail the new findings."""
    async with state.pool.connection() as conn:
        result = await reconcile(
            conn,
            ran_by,
            external=state.load_log,
            tell=lambda c, new: tell_findings(c, new, state.letters),
        )
    if result.new:
        state.mail_now()
    return result


@router.post(
    "/reconciliations",
    summary="Reconcile the models' tables against the onboarded feeds",
    status_code=201,
    responses=answers(400, 401, 403),
)
async def reconcile_now(
    request: Request, identity: Annotated[Identity, require("feeds:reconcile")]
) -> Response:
    """Run reconciliation now; the answer counts what it found and lists what is new."""
    result = await run_reconciliation(feeds_state(request), identity.actor)
    return JSONResponse(result.as_json(), 201)


@router.get(
    "/findings",
    summary="What reconciliation found",
    response_class=Response,
    responses=answers(400, 401, 403)
    | {200: {"content": {"application/json": {}, "text/csv": {}, "application/pdf": {}}}},
)
async def list_findings(
    request: Request,
    identity: Annotated[Identity, require("read")],
    status: Annotated[
        Literal["active", "open", "investigating", "resolved", "dismissed"] | None, Query()
    ] = None,
    kind: Annotated[Literal["gap", "unused", "stale", "missing_table"] | None, Query()] = None,
    format: Literal["json", "csv", "pdf"] = "json",
) -> Response:
    """The findings (open and investigating first), as JSON, CSV or PDF."""
    async with feeds_state(request).pool.connection() as conn:
        found = await findings(conn, status=status, kind=kind)
        run = await last_reconciliation(conn)
    if format == "csv":
        return download("findings.csv", findings_csv(found))
    if format == "pdf":
        document = await asyncio.to_thread(findings_pdf, found, run, datetime.now(UTC))
        return download("findings.pdf", document)
    return JSONResponse([f.as_json() for f in found])


class FindingIn(BaseModel):
    """Who investigates a finding, and where the investigation is."""

    status: FindingStatus | None = None
    owner: str | None = Field(None, max_length=64, examples=["ada"])


@router.patch(
    "/findings/{finding_id}",
    summary="Assign a finding or set its status",
    responses=answers(400, 401, 403, 404, 422),
)
async def change_finding(
    request: Request,
    finding_id: ID,
    body: FindingIn,
    identity: Annotated[Identity, require("feeds:reconcile")],
) -> Response:
    """Set the owner (an empty owner clears it) or the status of a finding."""
    try:
        async with feeds_state(request).pool.connection() as conn:
            found = await update_finding(
                conn, finding_id, identity.actor, status=body.status, owner=body.owner
            )
    except FindingError as exc:
        status = 404 if exc.field == "id" else 422
        return JSONResponse({"error": str(exc), "parameter": exc.field}, status)
    return JSONResponse(found.as_json())


__all__ = ["STEPS", "FeedsState", "feeds_state", "router", "run_reconciliation", "step"]

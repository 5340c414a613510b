"""Lineage over HTTP: the console's lineage, trace and filtered-messages pages, the
reports (CSV and PDF), and the JSON API (``/trace/{key}``, ``/stages``).

Handlers read ``request.state.lineage``, a LineageState the API process's lifespan makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.auth.access import require
from ledgerflow.auth.model import Identity
from ledgerflow.auth.pages import page, page_responses, pages_of
from ledgerflow.lineage import reports
from ledgerflow.lineage.flows import prices_flow, transactions_flow
from ledgerflow.lineage.results import ComparisonResult
from ledgerflow.lineage.stages import (
    PERIODS,
    WindowError,
    filtered_over_time,
    price_stages,
    transaction_stages,
    window_of,
)
from ledgerflow.lineage.trace import trace
from ledgerflow.reports.flow import to_svg
from ledgerflow.web.errors import answers
from ledgerflow.web.pages import download

router = APIRouter(tags=["lineage"])
Period = Literal["1h", "24h", "7d", "30d", "365d"]
PRINTABLE = r"^[^\x00-\x1f]*$"


@dataclass(frozen=True)
class LineageState:
    """What the lineage routes need for the lifetime of the API process."""

    pool: AsyncConnectionPool
    # The built-in technical rules (reason, technical, functional), shown beside the rules.
    built_in: Sequence[tuple[str, str, str]]
    # Where the balances are published (the built-in comparison reads them back).
    redis_url: str
    # Told of a comparison that found unexplained rows (the notifications); never raises.
    on_unexplained: Callable[[ComparisonResult], Awaitable[None]]


def _state(request: Request) -> LineageState:
    state: LineageState = request.state.lineage
    return state


Since = Annotated[str | None, Query(max_length=40, pattern=PRINTABLE, description="ISO 8601")]
Until = Annotated[str | None, Query(max_length=40, pattern=PRINTABLE, description="ISO 8601")]
Queue = Annotated[str | None, Query(max_length=255, pattern=PRINTABLE)]


@router.get(
    "/lineage",
    summary="The lineage page",
    response_class=Response,
    responses=page_responses("The flow from queue to KeyDB with the counts of the window."),
)
async def lineage_page(
    request: Request,
    identity: Annotated[Identity, page()],
    period: Period = "24h",
    since: Since = None,
    until: Until = None,
    queue: Queue = None,
) -> Response:
    """Both pipelines as graphs with their counts, filtering over time, the rules' counts."""
    form = {"period": period, "since": since or "", "until": until or "", "queue": queue or ""}
    try:
        window = window_of(period, since, until, queue)
    except WindowError as exc:
        return pages_of(request).render(
            request,
            "lineage.html",
            status_code=400,
            form=form,
            problem=str(exc),
            problem_field=exc.parameter,
            periods=list(PERIODS),
        )
    pool = _state(request).pool

    async def with_conn(work: Any) -> Any:
        async with pool.connection() as conn:
            return await work(conn)

    stages, prices, (starts, series) = await asyncio.gather(
        with_conn(lambda c: transaction_stages(c, window)),
        with_conn(lambda c: price_stages(c, window)),
        with_conn(lambda c: filtered_over_time(c, window)),
    )
    return pages_of(request).render(
        request,
        "lineage.html",
        form=form,
        periods=list(PERIODS),
        window=window,
        stages=stages,
        transactions_svg=to_svg(transactions_flow(stages)),
        prices=prices,
        prices_svg=to_svg(prices_flow(prices)) if prices is not None else None,
        chart_starts=starts,
        chart_series=series,
        query=request.url.query,
    )


@router.get(
    "/lineage/trace",
    summary="The trace page",
    response_class=Response,
    responses=page_responses("A form, and the message found with everything known of it."),
)
async def trace_page(
    request: Request,
    identity: Annotated[Identity, page()],
    key: Annotated[str | None, Query(max_length=512, pattern=PRINTABLE)] = None,
) -> Response:
    """Follow one message by its id or its body's SHA-256."""
    found = None
    if key:
        async with _state(request).pool.connection() as conn:
            found = await trace(conn, key.strip())
    return pages_of(request).render(request, "trace.html", key=key or "", found=found)


@router.get(
    "/lineage/filtered",
    summary="Filtered messages",
    response_class=Response,
    responses=page_responses("The filtered messages of the window, or with format=csv a CSV."),
)
async def filtered_page(
    request: Request,
    identity: Annotated[Identity, page()],
    period: Period = "24h",
    since: Since = None,
    until: Until = None,
    rule: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 200,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Every filtered message with its rule, version and justifications, newest first."""
    try:
        window = window_of(period, since, until)
    except WindowError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
    async with _state(request).pool.connection() as conn:
        rows = await reports.filtered_rows(conn, window, rule or None, limit)
    if format == "csv":
        return _download("filtered", "csv", reports.as_csv("filtered", rows).encode())
    return pages_of(request).render(
        request,
        "filtered.html",
        rows=[dict(zip(reports.FILTERED_COLUMNS, row, strict=True)) for row in rows],
        form={"period": period, "since": since or "", "until": until or "", "rule": rule or ""},
        periods=list(PERIODS),
        limit=limit,
        query=request.url.query,
    )


@router.get(
    "/lineage/report",
    summary="The lineage report, as PDF or CSV",
    response_class=Response,
    responses={
        200: {
            "description": "The PDF, or the CSV of one part.",
            "content": {"application/pdf": {}, "text/csv": {}},
        },
        **answers(400, 401, 403),
    },
)
async def report(
    request: Request,
    identity: Annotated[Identity, require("read")],
    period: Period = "24h",
    since: Since = None,
    until: Until = None,
    format: Annotated[Literal["pdf", "csv"], Query()] = "pdf",
    part: Annotated[Literal["stages", "rules", "filtered", "comparisons"], Query()] = "stages",
) -> Response:
    """The flow graphs, stage counts, rules, filtered messages and comparisons of the window
    as one PDF (``format=pdf``), or one part of it as CSV (``format=csv&part=...``)."""
    try:
        window = window_of(period, since, until)
    except WindowError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
    state = _state(request)
    async with state.pool.connection() as conn:
        if format == "pdf":
            document = await reports.lineage_pdf(conn, window, state.built_in)
            return _download("lineage", "pdf", document)
        rows = await reports.part_rows(conn, window, part)
    return _download(f"lineage-{part}", "csv", reports.as_csv(part, rows).encode())


def _download(name: str, extension: str, content: bytes) -> Response:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return download(f"{name}-{stamp}.{extension}", content)


@router.get(
    "/trace/{key}",
    summary="Trace one message",
    responses=answers(400, 401, 403, 404),
)
async def trace_api(
    request: Request,
    key: Annotated[str, Path(max_length=512, pattern=PRINTABLE)],
    identity: Annotated[Identity, require("read")],
) -> Response:
    """By message id or body SHA-256 (hex): the batch, the outcome, the rule or reason, the
    transaction row, and the publication that first included it with the value it wrote."""
    async with _state(request).pool.connection() as conn:
        found = await trace(conn, key)
    if not found["messages"]:
        return JSONResponse(
            {"error": f"no message has id or body SHA-256 {key!r}", "parameter": "key"}, 404
        )
    return JSONResponse(found)


@router.get(
    "/stages",
    summary="Stage counts of a time window",
    responses=answers(400, 401, 403),
)
async def stages_api(
    request: Request,
    identity: Annotated[Identity, require("read")],
    period: Period = "24h",
    since: Since = None,
    until: Until = None,
    queue: Queue = None,
) -> Response:
    """How many messages reached each stage, and where the others went."""
    try:
        window = window_of(period, since, until, queue)
    except WindowError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
    async with _state(request).pool.connection() as conn:
        stages = await transaction_stages(conn, window)
        prices = await price_stages(conn, window)
    return JSONResponse(
        {
            "since": window.since.isoformat(),
            "until": window.until.isoformat(),
            "transactions": {
                "received": stages.received,
                "redelivered": stages.redelivered,
                "duplicate": stages.duplicate,
                "rejected": dict(stages.rejected_by_reason),
                "parsed": stages.parsed,
                "filtered": [
                    {"rule": n, "version": v, "count": c} for n, v, c in stages.filtered_by_rule
                ],
                "stored": stages.stored,
                "published": stages.published,
            },
            "price_batches": None
            if prices is None
            else {
                "received": prices.received,
                "rejected": prices.rejected,
                "committed": prices.committed,
                "rows": prices.rows,
            },
        }
    )

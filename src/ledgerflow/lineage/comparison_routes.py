"""Comparisons by message id over HTTP: the console's page (the last results, a run on
demand for operators and administrators, one run's items as CSV or PDF) and the JSON API
(``/comparisons``; scope ``comparisons:run`` to run one).

Handlers read ``request.state.lineage`` (see lineage.routes.LineageState).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Form, Path, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ledgerflow.auth.access import check_csrf, require
from ledgerflow.auth.model import Identity, Role
from ledgerflow.auth.pages import page, page_responses, pages_of
from ledgerflow.auth.store import audit
from ledgerflow.lineage.comparisons import (
    comparison_items,
    get_comparison,
    last_comparisons,
    reconcile,
)
from ledgerflow.lineage.results import Comparison, ComparisonError, ComparisonResult, Item
from ledgerflow.lineage.routes import LineageState
from ledgerflow.lineage.sources import SourceError, list_sources
from ledgerflow.reports.pdf import Heading, Paragraph, Table, csv_report, pdf_report
from ledgerflow.web.errors import answers
from ledgerflow.web.pages import download

router = APIRouter(tags=["lineage"])
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ITEM_COLUMNS = (
    "kind",
    "stages",
    "id",
    "explained",
    "explanation",
    "detail",
    "batch_id",
    "position",
    "expected",
    "actual",
)
RUNNERS = (Role.ADMIN, Role.OPERATOR)
MAX_CSV_ITEMS = 1_000_000  # one download; ``GET /comparisons/{id}`` pages through more
MAX_PDF_ITEMS = 10_000  # a printed report; the CSV has more


def _state(request: Request) -> LineageState:
    state: LineageState = request.state.lineage
    return state


class RunComparison(BaseModel):
    """Which source to compare."""

    source: str = Field("ledgerflow", pattern=NAME_PATTERN, examples=["ledgerflow"])


async def run(request: Request, identity: Identity, source: str) -> ComparisonResult:
    """Run a comparison, audit it, and announce it when something is unexplained."""
    state = _state(request)
    async with state.pool.connection() as conn:
        result = await reconcile(conn, state.redis_url, source, identity.actor)
        await audit(
            conn,
            identity.actor,
            "comparison.run",
            source,
            {"comparison": result.comparison_id, "unexplained": result.unexplained},
            request.client.host if request.client else None,
        )
    if result.unexplained:
        await state.on_unexplained(result)
    return result


@router.post(
    "/comparisons",
    summary="Compare a data source by message id",
    status_code=201,
    responses=answers(400, 401, 403, 404, 422, 503),
)
async def run_api(
    request: Request,
    body: RunComparison,
    identity: Annotated[Identity, require("comparisons:run")],
) -> Response:
    """Compare the source's stages by message id; the result is stored, with every
    unexplained id (``GET /comparisons/{id}`` pages through them)."""
    try:
        result = await run(request, identity, body.source)
    except SourceError as exc:
        status = 404 if exc.field == "name" else 422
        return JSONResponse({"error": str(exc), "parameter": exc.field}, status)
    except (ComparisonError, psycopg.OperationalError) as exc:
        return JSONResponse({"error": f"cannot compare now: {exc}"}, 503)
    return JSONResponse(result.as_json(), 201)


@router.get("/comparisons", summary="The last comparisons", responses=answers(400, 401, 403))
async def last_api(
    request: Request,
    identity: Annotated[Identity, require("read")],
    source: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Response:
    """The newest runs first, with their counts per stage pair."""
    async with _state(request).pool.connection() as conn:
        found = await last_comparisons(conn, limit, source)
    return JSONResponse([c.as_json() for c in found])


@router.get(
    "/comparisons/{comparison_id}",
    summary="One comparison and its items",
    responses=answers(400, 401, 403, 404),
)
async def one_api(
    request: Request,
    comparison_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    identity: Annotated[Identity, require("read")],
    only_unexplained: bool = False,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The run, and a page of its items (unexplained first)."""
    async with _state(request).pool.connection() as conn:
        found = await get_comparison(conn, comparison_id)
        if found is None:
            return JSONResponse(
                {"error": f"no comparison {comparison_id}", "parameter": "comparison_id"}, 404
            )
        items = await comparison_items(conn, comparison_id, only_unexplained, limit, offset)
    return JSONResponse({**found.as_json(), "items": [i.as_json() for i in items]})


@router.get(
    "/lineage/comparisons",
    summary="The comparisons page",
    response_class=Response,
    responses=page_responses("The sources, the last runs, one run's items (or as CSV, PDF)."),
)
async def comparisons_page(
    request: Request,
    identity: Annotated[Identity, page()],
    id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    only_unexplained: bool = False,
    format: Annotated[Literal["html", "csv", "pdf"], Query()] = "html",
) -> Response:
    """Every source, the last runs, and for one run its items, unexplained first."""
    async with _state(request).pool.connection() as conn:
        sources = await list_sources(conn)
        runs = await last_comparisons(conn, 20)
        chosen = await get_comparison(conn, id) if id else None
        limit = {"html": 500, "csv": MAX_CSV_ITEMS, "pdf": MAX_PDF_ITEMS}[format]
        items = (
            await comparison_items(conn, chosen.comparison_id, only_unexplained, limit)
            if chosen
            else []
        )
    if chosen is not None and format == "csv":
        return _download(chosen, "csv", csv_report(ITEM_COLUMNS, _rows(items)).encode())
    if chosen is not None and format == "pdf":
        document = await asyncio.to_thread(comparison_pdf, chosen, items)
        return _download(chosen, "pdf", document)
    return pages_of(request).render(
        request,
        "comparisons.html",
        sources=[s.as_json() for s in sources],
        runs=runs,
        chosen=chosen,
        items=items,
        only_unexplained=only_unexplained,
        can_run=identity.role in RUNNERS,
    )


@router.post("/lineage/comparisons", include_in_schema=False)
async def comparisons_form(
    request: Request,
    identity: Annotated[Identity, page(*RUNNERS)],
    source: Annotated[str, Form(max_length=64)],
) -> Response:
    """The page's form: run a comparison now (operators and administrators)."""
    await check_csrf(request, identity)
    try:
        result = await run(request, identity, source)
    except (SourceError, ComparisonError, psycopg.OperationalError) as exc:
        async with _state(request).pool.connection() as conn:
            sources = await list_sources(conn)
            runs = await last_comparisons(conn, 20)
        return pages_of(request).render(
            request,
            "comparisons.html",
            status_code=422 if isinstance(exc, SourceError) else 503,
            sources=[s.as_json() for s in sources],
            runs=runs,
            chosen=None,
            items=[],
            only_unexplained=False,
            can_run=True,
            problem=str(exc),
        )
    return RedirectResponse(f"/lineage/comparisons?id={result.comparison_id}", 303)


def _rows(items: list[Item]) -> list[list[Any]]:
    return [[item.as_json()[c] for c in ITEM_COLUMNS] for item in items]


def comparison_pdf(comparison: Comparison, items: list[Item]) -> bytes:
    """One run as a PDF: its counts per stage pair, then its items."""
    counts = [
        (
            s.stages,
            s.left,
            s.right,
            s.left_ids,
            s.right_ids,
            s.missing,
            s.foreign,
            s.mismatched,
            s.unexplained,
        )
        for s in comparison.stages
    ]
    columns = ("kind", "stages", "id", "explained", "explanation")
    return pdf_report(
        f"ledgerflow comparison {comparison.comparison_id}: {comparison.source}",
        None,
        [
            Paragraph(
                f"Run by {comparison.ran_by} from {comparison.started_at.isoformat()} in "
                f"{comparison.seconds:.2f} s: {comparison.unexplained:,} unexplained, "
                f"{comparison.explained:,} explained."
            ),
            Heading("Counts"),
            Table(
                (
                    "stages",
                    "left",
                    "right",
                    "left ids",
                    "right ids",
                    "missing",
                    "foreign",
                    "mismatched",
                    "unexplained",
                ),
                counts,
                numeric={
                    "left ids",
                    "right ids",
                    "missing",
                    "foreign",
                    "mismatched",
                    "unexplained",
                },
            ),
            Heading(f"Items, unexplained first (at most {MAX_PDF_ITEMS:,}; the CSV has more)"),
            Table(
                columns,
                [
                    [i.as_json()[c] for c in ("kind", "stages", "id", "explained", "explanation")]
                    for i in items
                ],
            ),
        ],
        datetime.now(UTC),
    )


def _download(comparison: Comparison, extension: str, content: bytes) -> Response:
    return download(f"comparison-{comparison.comparison_id}.{extension}", content)

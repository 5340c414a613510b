"""The console's overview: every provider's balance as last published and as stored now,
and the workers. Each table can be downloaded as CSV (and copied, where scripts run)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import psycopg
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from ledgerflow.auth import store as auth_store
from ledgerflow.auth.model import Identity, Role
from ledgerflow.auth.pages import page, page_responses, pages_of
from ledgerflow.cluster.registry import workers as registered_workers
from ledgerflow.db.rejected import rejected_page, rejected_summary
from ledgerflow.db.replicas import Connections
from ledgerflow.kv.balance_store import BalanceStore, BalanceStoreError
from ledgerflow.messaging.rabbitmq import queue_backlog
from ledgerflow.notifications.notify import notification_log
from ledgerflow.rates.lanes import BadRequest, lanes_for, parse_rates_query
from ledgerflow.rates.price_feed import REJECTED_REASON
from ledgerflow.reports.pdf import csv_cell
from ledgerflow.transactions.messages import Reason
from ledgerflow.transactions.publisher import last_publications, stored_balances
from ledgerflow.transactions.stats import throughput
from ledgerflow.web.pages import download, when

router = APIRouter(tags=["console"])
T = TypeVar("T")

BALANCE_COLUMNS = ("provider", "published", "stored", "difference")
WORKER_COLUMNS = ("instance", "role", "host", "heartbeat_age_s", "last_boundary", "lag_ms")


@dataclass(frozen=True)
class ConsoleState:
    """What the console's pages and the live feed's snapshots read, for the lifetime of the
    API process: the database pool and the store the balances are published to."""

    pool: Connections  # reads: a replica in rotation, or the primary
    published: BalanceStore


def console_state(request: Request) -> ConsoleState:
    """The ConsoleState the lifespan made."""
    state: ConsoleState = request.state.console
    return state


async def balances(state: ConsoleState) -> tuple[list[dict[str, Any]], str | None]:
    """Each provider's balance as stored now and as KeyDB holds it (the last published)."""
    async with state.pool.connection() as conn:
        stored = await stored_balances(conn)
    problem = None
    try:
        published = await state.published.read_all(list(stored))
    except BalanceStoreError as exc:
        published, problem = {}, str(exc)
    rows = [
        {
            "provider": key,
            "published": published.get(key),
            "stored": value,
            "difference": "" if published.get(key) in (None, value) else "changed since",
        }
        for key, value in stored.items()
    ]
    return rows, problem


async def workers(pool: Connections) -> list[dict[str, Any]]:
    """The registered workers with their last publication."""
    async with pool.connection() as conn:
        found = await registered_workers(conn)
        publications = await last_publications(conn)
    rows = []
    for worker in found:
        publication = publications.get(worker["instance"])
        rows.append(
            {
                "instance": worker["instance"],
                "role": worker["role"],
                "host": worker["host"],
                "heartbeat_age_s": round(worker["heartbeat_age"], 1),
                "last_boundary": when(publication["boundary"]) if publication else "",
                "lag_ms": round(publication["lag_seconds"] * 1000, 1) if publication else "",
            }
        )
    return rows


async def _within(pending: asyncio.Future[Any], seconds: float) -> Any:
    """The result, or None if it takes longer than ``seconds``."""
    try:
        return await asyncio.wait_for(asyncio.shield(pending), seconds)
    except TimeoutError:
        return None


def as_csv(name: str, columns: Sequence[str], rows: list[dict[str, Any]]) -> Response:
    """A table as a CSV download (exact values: amounts stay the strings they are; text a
    spreadsheet would run as a formula is led by a quote mark)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: csv_cell(row[c]) for c in columns} for row in rows)
    return download(f"{name}.csv", out.getvalue())


@router.get(
    "/",
    summary="The console's overview",
    response_class=Response,
    responses=page_responses("The page, or with format=csv one of its tables."),
)
async def overview(
    request: Request,
    identity: Annotated[Identity, page()],
    table: Annotated[Literal["balances", "workers"] | None, Query()] = None,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Balances and workers. ``?table=balances&format=csv`` downloads one table."""
    state = console_state(request)
    pool = state.pool
    settings = request.app.state.settings
    if format == "csv":
        if table == "workers":
            return as_csv("workers", WORKER_COLUMNS, await workers(pool))
        return as_csv("balances", BALANCE_COLUMNS, (await balances(state))[0])
    # Everything at once, each on its own connection: the page waits for the slowest part,
    # not for their sum. RabbitMQ is asked in a thread (pika's blocking client), 1.5 s at most.
    backlog = asyncio.ensure_future(
        asyncio.to_thread(queue_backlog, settings.amqp_url, settings.queue)
    )
    (balance_rows, problem), worker_rows, rate, rejected = await asyncio.gather(
        balances(state),
        workers(pool),
        _with(pool, throughput),
        _with(pool, rejected_summary),
    )
    return pages_of(request).render(
        request,
        "overview.html",
        balances=balance_rows,
        balance_columns=BALANCE_COLUMNS,
        keydb_problem=problem,
        workers=worker_rows,
        worker_columns=WORKER_COLUMNS,
        queue={"name": settings.queue, "backlog": await _within(backlog, 1.5), "throughput": rate},
        rejected=rejected,
    )


async def _with(pool: Connections, query: Callable[[Any], Awaitable[T]]) -> T:
    """``query`` on a connection of its own from the pool."""
    async with pool.connection() as conn:
        return await query(conn)


async def snapshot(state: ConsoleState) -> dict[str, Any]:
    """What the live feed sends first, and again to a connection that fell behind."""
    (balance_rows, problem), worker_rows = await asyncio.gather(
        balances(state), workers(state.pool)
    )
    return {"balances": balance_rows, "keydb_problem": problem, "workers": worker_rows}


AUDIT_COLUMNS = ("at", "actor", "action", "target", "detail", "client")


@router.get(
    "/audit",
    summary="The audit log (administrators)",
    response_class=Response,
    responses=page_responses(
        "The newest entries, or with format=csv the same as CSV.", restricted=True
    ),
)
async def audit_page(
    request: Request,
    identity: Annotated[Identity, page(Role.ADMIN)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Sign-ins, failed sign-ins, sign-outs and every change, newest first."""
    async with console_state(request).pool.connection() as conn:
        entries = await auth_store.audit_log(conn, limit)
    rows = [
        {**entry, "at": entry["at"].isoformat(), "detail": _detail(entry["detail"])}
        for entry in entries
    ]
    if format == "csv":
        return as_csv("audit", AUDIT_COLUMNS, rows)
    return pages_of(request).render(request, "audit.html", entries=rows, limit=limit)


PRINTABLE = r"^[^\x00-\x1f]*$"  # no control character (PostgreSQL's text takes no NUL)
RATES_COLUMNS = ("day", "count", "price")
REJECTED_COLUMNS = ("id", "received_at", "queue", "message_id", "reason", "detail", "body")


def _detail(detail: dict[str, Any] | None) -> str:
    """An audit entry's detail as people read it: ``role: viewer; email: a@b``."""
    parts = []
    for key, value in sorted((detail or {}).items()):
        if value is None or value == "":
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        parts.append(f"{key}: {shown}")
    return "; ".join(parts)


def _text(body: bytes) -> str:
    """A body as text: UTF-8 where it is, escapes where it is not."""
    return bytes(body).decode("utf-8", "backslashreplace")


@router.get(
    "/rejected",
    summary="Rejected messages",
    response_class=Response,
    responses=page_responses("A page of them, or with format=csv the same as CSV."),
)
async def rejected_messages(
    request: Request,
    identity: Annotated[Identity, page()],
    queue: Annotated[str | None, Query(max_length=255, pattern=PRINTABLE)] = None,
    reason: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Every message that could not be used, newest first, with its reason and body;
    filtered by queue and reason, a page at a time."""
    settings = request.app.state.settings
    async with console_state(request).pool.connection() as conn:
        found = await rejected_page(conn, queue or None, reason or None, before, limit)
    rows = [
        {**row, "received_at": row["received_at"].isoformat(), "body": _text(row["body"])}
        for row in found
    ]
    if format == "csv":
        return as_csv("rejected", REJECTED_COLUMNS, rows)
    queues = [q for q in (settings.queue, settings.price_batch_queue) if q]
    reasons = sorted({r.value for r in Reason} | {REJECTED_REASON})
    return pages_of(request).render(
        request,
        "rejected.html",
        rows=rows,
        queues=queues,
        reasons=reasons,
        queue=queue or "",
        reason=reason or "",
        limit=limit,
        next_before=rows[-1]["id"] if len(rows) == limit else None,
    )


@router.get(
    "/explore/rates",
    summary="The rates explorer",
    response_class=Response,
    responses=page_responses("The form, and the daily averages of the lanes asked for."),
)
async def explore_rates(
    request: Request,
    identity: Annotated[Identity, page()],
    orig_code: Annotated[str | None, Query(max_length=100)] = None,
    dest_code: Annotated[str | None, Query(max_length=100)] = None,
    date_from: Annotated[str | None, Query(max_length=10)] = None,
    date_to: Annotated[str | None, Query(max_length=10)] = None,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Lanes or regions over a range of days: the daily averages as a table and a chart
    (``format=csv``: the table)."""
    form = {
        "orig_code": orig_code or "",
        "dest_code": dest_code or "",
        "date_from": date_from or "",
        "date_to": date_to or "",
    }
    answer, problem = None, None
    if any(form.values()):
        state = request.state.rates
        try:
            asked = parse_rates_query(form, state.max_days)
            async with state.answering().connection() as conn:
                answer = await state.answer(conn, await lanes_for(conn, asked))
        except BadRequest as exc:
            problem = exc
        except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
            problem = BadRequest("", f"the database cannot answer: {exc}")
    if format == "csv" and answer is not None:
        return as_csv("rates", RATES_COLUMNS, answer)
    return pages_of(request).render(
        request,
        "rates.html",
        form=form,
        answer=answer,
        problem=str(problem) if problem else None,
        problem_parameter=problem.parameter if problem else None,
    )


NOTIFICATION_COLUMNS = ("id", "at", "event", "channel", "target", "status", "error", "subject")


@router.get(
    "/notifications",
    summary="The notification log",
    response_class=Response,
    responses=page_responses("Every notification sent or tried, newest first, or as CSV."),
)
async def notifications_page(
    request: Request,
    identity: Annotated[Identity, page()],
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Each email and webhook ledgerflow sent or tried to send, with its outcome."""
    async with console_state(request).pool.connection() as conn:
        found = await notification_log(conn, limit, before)
    rows = [{**row, "at": row["at"].isoformat()} for row in found]
    if format == "csv":
        return as_csv("notifications", NOTIFICATION_COLUMNS, rows)
    settings = request.app.state.settings
    return pages_of(request).render(
        request,
        "notifications.html",
        rows=rows,
        limit=limit,
        configured=settings.notify_settings().configured,
        next_before=rows[-1]["id"] if len(rows) == limit else None,
    )

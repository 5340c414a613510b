"""The console's overview: every provider's balance as last published and as stored now,
and the workers. Each table can be downloaded as CSV (and copied, where scripts run)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from ledgerflow.auth import store as auth_store
from ledgerflow.auth.access import auth_state
from ledgerflow.auth.model import Identity, Role
from ledgerflow.auth.pages import HTML, page, pages_of
from ledgerflow.cluster.registry import workers as registered_workers
from ledgerflow.kv.balance_store import BalanceStoreError, RedisBalanceStore
from ledgerflow.transactions.publisher import last_publications, stored_balances

router = APIRouter(tags=["console"])

BALANCE_COLUMNS = ("provider", "published", "stored", "difference")
WORKER_COLUMNS = ("instance", "role", "host", "heartbeat_age_s", "last_boundary", "lag_ms")


async def balances(
    pool: AsyncConnectionPool, redis_url: str
) -> tuple[list[dict[str, Any]], str | None]:
    """Each provider's balance as stored now and as KeyDB holds it (the last published)."""
    async with pool.connection() as conn:
        stored = await stored_balances(conn)
    store = RedisBalanceStore(redis_url, timeout=1.0)
    problem = None
    try:
        published = await store.read_all(list(stored))
    except BalanceStoreError as exc:
        published, problem = {}, str(exc)
    finally:
        await store.close()
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


async def workers(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
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
                "last_boundary": publication["boundary"].isoformat() if publication else "",
                "lag_ms": round(publication["lag_seconds"] * 1000, 1) if publication else "",
            }
        )
    return rows


def as_csv(name: str, columns: Sequence[str], rows: list[dict[str, Any]]) -> Response:
    """A table as a CSV download (exact values: amounts stay the strings they are)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: "" if row[c] is None else row[c] for c in columns} for row in rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/",
    summary="The console's overview",
    response_class=Response,
    responses={
        200: {**HTML, "description": "The page, or with format=csv one of its tables."},
        303: {"description": "Not signed in: to /signin."},
    },
)
async def overview(
    request: Request,
    identity: Annotated[Identity, page()],
    table: Annotated[Literal["balances", "workers"] | None, Query()] = None,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Balances and workers. ``?table=balances&format=csv`` downloads one table."""
    pool = auth_state(request).pool
    settings = request.app.state.settings
    balance_rows, problem = await balances(pool, settings.redis_url)
    worker_rows = await workers(pool)
    if format == "csv":
        if table == "workers":
            return as_csv("workers", WORKER_COLUMNS, worker_rows)
        return as_csv("balances", BALANCE_COLUMNS, balance_rows)
    return pages_of(request).render(
        request,
        "overview.html",
        balances=balance_rows,
        balance_columns=BALANCE_COLUMNS,
        keydb_problem=problem,
        workers=worker_rows,
        worker_columns=WORKER_COLUMNS,
    )


AUDIT_COLUMNS = ("at", "actor", "action", "target", "detail", "client")


@router.get(
    "/audit",
    summary="The audit log (administrators)",
    response_class=Response,
    responses={
        200: {**HTML, "description": "The newest entries, or with format=csv the same as CSV."},
        303: {"description": "Not signed in: to /signin."},
        403: {**HTML, "description": "Signed in without the role admin."},
    },
)
async def audit_page(
    request: Request,
    identity: Annotated[Identity, page(Role.ADMIN)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    format: Annotated[Literal["html", "csv"], Query()] = "html",
) -> Response:
    """Sign-ins, failed sign-ins, sign-outs and every change, newest first."""
    async with auth_state(request).pool.connection() as conn:
        entries = await auth_store.audit_log(conn, limit)
    rows = [
        {
            **entry,
            "at": entry["at"].isoformat(),
            "detail": "" if not entry["detail"] else json.dumps(entry["detail"], sort_keys=True),
        }
        for entry in entries
    ]
    if format == "csv":
        return as_csv("audit", AUDIT_COLUMNS, rows)
    return pages_of(request).render(request, "audit.html", entries=rows, limit=limit)

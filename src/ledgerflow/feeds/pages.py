"""The console's feed pages: every feed (anyone signed in), the administrators' section
(role operator or admin: feeds to describe), the analysts' section (role analyst or admin:
feeds to review), reconciliation (those three roles), and one feed's page with its form,
its audit trail and its mails. A section is not shown in the menu of a role that may not
see it, and refused (403) to such a role that asks for it anyway.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ledgerflow.auth.access import check_csrf
from ledgerflow.auth.model import Identity, Role
from ledgerflow.auth.pages import page, page_responses, pages_of
from ledgerflow.auth.store import audit
from ledgerflow.feeds.models import ModelError, models, register_model
from ledgerflow.feeds.reconcile import (
    FINDING_KINDS,
    FINDING_STATUSES,
    FindingError,
    findings,
    findings_csv,
    findings_pdf,
    last_reconciliation,
    update_finding,
)
from ledgerflow.feeds.routes import FeedsState, feeds_state, run_reconciliation, step
from ledgerflow.feeds.workflow import (
    ADMIN_FIELDS,
    FREQUENCIES,
    LABELS,
    REGULATORY,
    STATES,
    WorkflowError,
    feed,
    feeds_in,
    trail,
)
from ledgerflow.notifications.outbox import outbox
from ledgerflow.web.pages import download

router = APIRouter(tags=["console"], include_in_schema=True)
ADMINISTRATORS = (Role.ADMIN, Role.OPERATOR)
ANALYSTS = (Role.ADMIN, Role.ANALYST)
RECONCILERS = (Role.ADMIN, Role.OPERATOR, Role.ANALYST)
SECTIONS = {
    "administrators": ("Administrators", ADMINISTRATORS, ("detected", "described")),
    "analysts": ("Analysts", ANALYSTS, ("in_review", "on_hold")),
}
ID = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_SQL = 200_000  # as POST /models
MAX_SHOWN = 2000  # findings on the page; the downloads have them all
REVIEW_STEPS = frozenset({"onboard", "reject", "hold", "resume"})


def _tabs(identity: Identity) -> list[tuple[str, str, str]]:
    """The sections ``identity`` may see: (key, label, path)."""
    tabs = [("all", "All feeds", "/onboarding")]
    for key, (label, roles, _) in SECTIONS.items():
        if identity.role in roles:
            tabs.append((key, label, f"/onboarding/{key}"))
    if identity.role in RECONCILERS:
        tabs.append(("reconciliation", "Reconciliation", "/onboarding/reconciliation"))
    return tabs


async def _list(request: Request, identity: Identity, section: str) -> Response:
    states = SECTIONS[section][2] if section in SECTIONS else STATES
    async with feeds_state(request).pool.connection() as conn:
        rows = await feeds_in(conn, states)
    return pages_of(request).render(
        request, "onboarding.html", tabs=_tabs(identity), section=section, feeds=rows
    )


@router.get(
    "/onboarding",
    summary="The feeds page",
    response_class=Response,
    responses=page_responses("Every feed and where its onboarding is."),
)
async def all_feeds(request: Request, identity: Annotated[Identity, page()]) -> Response:
    """Every feed, the latest change first."""
    return await _list(request, identity, "all")


@router.get(
    "/onboarding/administrators",
    summary="The administrators' section",
    response_class=Response,
    responses=page_responses("The feeds to describe.", restricted=True),
)
async def administrators(
    request: Request, identity: Annotated[Identity, page(*ADMINISTRATORS)]
) -> Response:
    """The feeds detected or described, waiting for the administrators."""
    return await _list(request, identity, "administrators")


@router.get(
    "/onboarding/analysts",
    summary="The analysts' section",
    response_class=Response,
    responses=page_responses("The feeds to review.", restricted=True),
)
async def analysts(request: Request, identity: Annotated[Identity, page(*ANALYSTS)]) -> Response:
    """The feeds in review or on hold, waiting for the analysts."""
    return await _list(request, identity, "analysts")


async def _reconciliation_page(
    request: Request,
    identity: Identity,
    status: str | None,
    kind: str | None,
    problem: str | None = None,
    problem_field: str | None = None,
    status_code: int = 200,
) -> Response:
    async with feeds_state(request).pool.connection() as conn:
        found = await findings(conn, status=status, kind=kind, limit=MAX_SHOWN + 1)
        run = await last_reconciliation(conn)
        registered = await models(conn)
    return pages_of(request).render(
        request,
        "reconciliation.html",
        status_code=status_code,
        tabs=_tabs(identity),
        section="reconciliation",
        findings=found[:MAX_SHOWN],
        more=len(found) > MAX_SHOWN,
        run=run,
        models=registered,
        status=status or "",
        kind=kind or "",
        kinds=FINDING_KINDS,
        statuses=FINDING_STATUSES,
        can_act=identity.allows("feeds:reconcile"),
        problem=problem,
        problem_field=problem_field,
    )


@router.get(
    "/onboarding/reconciliation",
    summary="The reconciliation section",
    response_class=Response,
    responses=page_responses("The findings, the last run, the models; or as CSV, PDF.", True),
)
async def reconciliation(
    request: Request,
    identity: Annotated[Identity, page(*RECONCILERS)],
    status: Annotated[
        Literal["active", "open", "investigating", "resolved", "dismissed"] | None, Query()
    ] = None,
    kind: Annotated[Literal["gap", "unused", "stale", "missing_table"] | None, Query()] = None,
    format: Literal["html", "csv", "pdf"] = "html",
) -> Response:
    """What reconciliation found, who investigates it, and the models it compares."""
    if format == "html":
        return await _reconciliation_page(request, identity, status, kind)
    async with feeds_state(request).pool.connection() as conn:
        found = await findings(conn, status=status, kind=kind)
        run = await last_reconciliation(conn)
    if format == "csv":
        return download("findings.csv", findings_csv(found))
    document = await asyncio.to_thread(findings_pdf, found, run, datetime.now(UTC))
    return download("findings.pdf", document)


@router.post("/onboarding/reconciliation", include_in_schema=False)
async def reconciliation_form(
    request: Request, identity: Annotated[Identity, page(*RECONCILERS)]
) -> Response:
    """The section's forms: reconcile now, assign a finding, register a model."""
    await check_csrf(request, identity)
    form = await request.form()
    action = _field(form, "action")
    state = feeds_state(request)
    try:
        identity.require("feeds:reconcile")
        if action == "reconcile":
            await run_reconciliation(state, identity.actor)
        elif action == "finding":
            await _update_finding(state, identity, form)
        elif action == "model":
            await _register_model(state, identity, form)
        else:
            raise FindingError("action", "reconcile, finding or model")
    except (FindingError, ModelError) as exc:
        return await _reconciliation_page(
            request, identity, None, None, str(exc), exc.field, status_code=422
        )
    return RedirectResponse("/onboarding/reconciliation", 303)


async def _update_finding(state: FeedsState, identity: Identity, form: FormData) -> None:
    try:
        finding_id = int(_field(form, "finding"))
    except ValueError:
        raise FindingError("id", "not a finding's id") from None
    async with state.pool.connection() as conn:
        await update_finding(
            conn,
            finding_id,
            identity.actor,
            status=_field(form, "status") or None,
            owner=_field(form, "owner"),
        )


async def _register_model(state: FeedsState, identity: Identity, form: FormData) -> None:
    name, sql = _field(form, "name").strip(), _field(form, "sql")
    if len(sql) > MAX_SQL:
        raise ModelError("sql", f"at most {MAX_SQL:,} characters")
    async with state.pool.connection() as conn:
        read = await register_model(conn, name, identity.actor, sql=sql)
        await audit(conn, identity.actor, "model.register", name, {"tables": len(read)})


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def _feed_page(
    request: Request,
    identity: Identity,
    feed_id: int,
    *,
    entered: dict[str, Any] | None = None,
    problem: str | None = None,
    problem_field: str | None = None,
    status_code: int = 200,
) -> Response:
    async with feeds_state(request).pool.connection() as conn:
        record = await feed(conn, feed_id)
        if record is None:
            return pages_of(request).render(
                request,
                "error.html",
                status_code=404,
                status=404,
                heading="No such feed",
                message=f"There is no feed {feed_id}.",
            )
        steps = await trail(conn, feed_id)
        mails = await outbox(conn, event_prefix="feed_", detail={"feed": feed_id})
    allowed = {s.name for s in record.steps_for(identity)}
    values = {**record.values, **(entered or {})}
    return pages_of(request).render(
        request,
        "feed.html",
        status_code=status_code,
        tabs=_tabs(identity),
        section="",
        feed=record.values,
        form=values,
        trail=steps,
        mails=mails,
        allowed=allowed,
        reviewing=bool(allowed & REVIEW_STEPS),
        frequencies=FREQUENCIES,
        regulatory=REGULATORY,
        labels=LABELS,
        problem=problem,
        problem_field=problem_field,
    )


@router.get(
    "/onboarding/{feed_id}",
    summary="One feed's page",
    response_class=Response,
    responses=page_responses("The feed, its form for the role, its trail and its mails."),
)
async def feed_page(
    request: Request, feed_id: ID, identity: Annotated[Identity, page()]
) -> Response:
    """Everything about one feed; the administrators' form or the analysts' form where
    the person may take a step now."""
    return await _feed_page(request, identity, feed_id)


@router.post("/onboarding/{feed_id}", include_in_schema=False)
async def feed_form(
    request: Request, feed_id: ID, identity: Annotated[Identity, page()]
) -> Response:
    """The feed page's forms: describe (and send to the analysts), or review."""
    await check_csrf(request, identity)
    form = await request.form()
    action = _field(form, "action")
    state = feeds_state(request)
    entered: dict[str, Any] = {}
    try:
        if action in ("describe", "submit"):
            entered = {n: _field(form, n) for n in ADMIN_FIELDS}
            async with state.pool.connection() as conn:
                record = await feed(conn, feed_id)
            if (
                record is None
                or record.state == "detected"
                or any(record.values.get(n) != v for n, v in entered.items())
            ):
                await step(state, feed_id, "describe", identity, entered)
            if action == "submit":
                await step(state, feed_id, "submit", identity, {})
        elif action in ("onboard", "reject", "hold", "resume"):
            given: dict[str, Any] = {}
            if action != "resume":
                entered = {"review_note": _field(form, "review_note")}
                given["review_note"] = entered["review_note"]
                if action != "hold":
                    used = _field(form, "used_by_models")
                    entered["used_by_models"] = {"yes": True, "no": False}.get(used)
                    given["used_by_models"] = entered["used_by_models"]
            await step(state, feed_id, action, identity, given)
        else:
            raise WorkflowError(422, "choose describe, submit, onboard, reject, hold or resume")
    except WorkflowError as exc:
        return await _feed_page(
            request,
            identity,
            feed_id,
            entered=entered,
            problem=str(exc),
            problem_field=exc.field,
            status_code=exc.status,
        )
    return RedirectResponse(f"/onboarding/{feed_id}", 303)

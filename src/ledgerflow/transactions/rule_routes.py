"""Filtering rules over HTTP: the JSON API (``/rules``, scope ``rules:write`` to change)
and the console's rules page (``/lineage/rules``; administrators change rules there).

Handlers read ``request.state.rules``, a RulesState the API process's lifespan makes.
Every change is audited and announced (``on_change``: the notifications).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Path
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ledgerflow.auth.access import check_csrf, require
from ledgerflow.auth.model import Identity, Role
from ledgerflow.auth.pages import page, page_responses, pages_of
from ledgerflow.auth.store import audit
from ledgerflow.transactions import rules
from ledgerflow.transactions.rules import BUILT_IN, Rule, RuleError
from ledgerflow.web.errors import answers

router = APIRouter(tags=["rules"])
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


@dataclass(frozen=True)
class RulesState:
    """What the rules routes need for the lifetime of the API process."""

    pool: AsyncConnectionPool
    # Told of every saved change (the notifications); never raises.
    on_change: Callable[[Rule, str], Awaitable[None]]


def _state(request: Request) -> RulesState:
    state: RulesState = request.state.rules
    return state


class RuleIn(BaseModel):
    """A new rule."""

    name: str = Field(pattern=NAME_PATTERN, examples=["big-values"])
    condition: str = Field(min_length=1, max_length=4000, examples=["value > 900"])
    technical: str = Field(min_length=1, max_length=2000, examples=["Above the desk limit"])
    functional: str = Field(min_length=1, max_length=2000, examples=["Reviewed by risk first"])
    owner: str | None = Field(None, max_length=2000)


class RuleChange(BaseModel):
    """What to change in a rule; what is left out stays."""

    condition: str | None = Field(None, min_length=1, max_length=4000)
    technical: str | None = Field(None, min_length=1, max_length=2000)
    functional: str | None = Field(None, min_length=1, max_length=2000)
    owner: str | None = Field(None, min_length=1, max_length=2000)
    enabled: bool | None = None


class RuleOut(BaseModel):
    """A rule version."""

    name: str
    version: int
    version_id: int
    condition: str
    technical: str
    functional: str
    owner: str
    enabled: bool
    change: str
    changed_by: str
    changed_at: str


class BuiltIn(BaseModel):
    """A technical rule that ships with ledgerflow: a reason messages are rejected."""

    reason: str
    technical: str
    functional: str


class RuleList(BaseModel):
    """Every rule in evaluation order, and the built-in technical rules."""

    rules: list[RuleOut]
    built_in: list[BuiltIn]


class RuleRefused(BaseModel):
    """Why a rule was not saved: the field, and for a condition where in it."""

    error: str
    parameter: str
    line: int | None = None
    column: int | None = None


def _refused(exc: RuleError) -> JSONResponse:
    return JSONResponse(
        {"error": str(exc), "parameter": exc.field, "line": exc.line, "column": exc.column}, 422
    )


def built_in() -> list[dict[str, str]]:
    """The built-in technical rules, as listed beside the user's."""
    return [
        {"reason": r.value, "technical": technical, "functional": functional}
        for r, (technical, functional) in BUILT_IN.items()
    ]


@router.get(
    "/rules", summary="Filtering rules", response_model=RuleList, responses=answers(400, 401, 403)
)
async def list_rules(request: Request, identity: Annotated[Identity, require("read")]) -> Response:
    """Every rule's newest version, in the order they are evaluated (the first that matches
    names a message's rule), and the built-in technical rules."""
    async with _state(request).pool.connection() as conn:
        found = await rules.list_rules(conn)
    return JSONResponse({"rules": [r.as_json() for r in found], "built_in": built_in()})


@router.post(
    "/rules",
    summary="Add a filtering rule",
    status_code=201,
    response_model=RuleOut,
    responses=answers(400, 401, 403, 409, 422, s409=RuleRefused, s422=RuleRefused),
)
async def add_rule(
    request: Request, body: RuleIn, identity: Annotated[Identity, require("rules:write")]
) -> Response:
    """Add a rule, enabled. It filters from the next batch on. Needs rules:write."""
    state = _state(request)
    try:
        rule = await _save_new(state, request, identity, body)
    except RuleError as exc:
        response = _refused(exc)
        if "exists already" in str(exc):
            response.status_code = 409
        return response
    return JSONResponse(rule.as_json(), 201)


@router.patch(
    "/rules/{name}",
    summary="Change a filtering rule",
    response_model=RuleOut,
    responses=answers(400, 401, 403, 404, 422, s422=RuleRefused),
)
async def change_rule(
    request: Request,
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    body: RuleChange,
    identity: Annotated[Identity, require("rules:write")],
) -> Response:
    """Save a new version with what is given (``enabled: false`` disables it). The
    previous versions stay; messages keep pointing at the version that filtered them."""
    try:
        rule = await _save_change(_state(request), request, identity, name, body)
    except LookupError as exc:
        return JSONResponse({"error": str(exc).strip("'\""), "parameter": "name"}, 404)
    except RuleError as exc:
        return _refused(exc)
    return JSONResponse(rule.as_json())


@router.get(
    "/rules/{name}/history",
    summary="Every version of a rule",
    response_model=list[RuleOut],
    responses=answers(400, 401, 403, 404),
)
async def history(
    request: Request,
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    identity: Annotated[Identity, require("read")],
) -> Response:
    """Every version, newest first, with who changed what and when."""
    async with _state(request).pool.connection() as conn:
        versions = await rules.rule_history(conn, name)
    if not versions:
        return JSONResponse({"error": f"no rule named {name!r}", "parameter": "name"}, 404)
    return JSONResponse([v.as_json() for v in versions])


async def _save_new(state: RulesState, request: Request, identity: Identity, body: RuleIn) -> Rule:
    async with state.pool.connection() as conn, conn.transaction():
        rule = await rules.add_rule(
            conn,
            body.name,
            body.condition,
            body.technical,
            body.functional,
            body.owner or identity.name,
            identity.actor,
        )
        await audit(
            conn,
            identity.actor,
            "rule.add",
            rule.name,
            {"condition": rule.condition},
            _client(request),
        )
    await state.on_change(rule, identity.actor)
    return rule


async def _save_change(
    state: RulesState, request: Request, identity: Identity, name: str, body: RuleChange
) -> Rule:
    async with state.pool.connection() as conn, conn.transaction():
        before = await rules.get_rule(conn, name)
        rule = await rules.change_rule(
            conn,
            name,
            identity.actor,
            condition=body.condition,
            technical=body.technical,
            functional=body.functional,
            owner=body.owner,
            enabled=body.enabled,
        )
        if before is not None and rule.version != before.version:
            action = {"enabled": "rule.enable", "disabled": "rule.disable"}.get(
                rule.change, "rule.change"
            )
            await audit(
                conn, identity.actor, action, name, {"version": rule.version}, _client(request)
            )
    if before is not None and rule.version != before.version:
        await state.on_change(rule, identity.actor)
    return rule


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


# The console's page: everyone signed in reads the rules; administrators change them.


@router.get(
    "/lineage/rules",
    summary="The rules page",
    response_class=Response,
    responses=page_responses("The rules, their history, and for administrators the forms."),
    include_in_schema=True,
)
async def rules_page(
    request: Request,
    identity: Annotated[Identity, page()],
    name: str | None = None,
) -> Response:
    """Every rule with its justifications and, for one rule, its history."""
    return await _render(request, identity, focus=name)


async def _render(
    request: Request,
    identity: Identity,
    focus: str | None = None,
    problem: RuleError | str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    async with _state(request).pool.connection() as conn:
        found = await rules.list_rules(conn)
        versions = await rules.rule_history(conn, focus) if focus else []
    field = problem.field if isinstance(problem, RuleError) else None
    return pages_of(request).render(
        request,
        "rules.html",
        status_code=status_code,
        rules=found,
        built_in=built_in(),
        focus=focus,
        history=versions,
        can_change=identity.role == Role.ADMIN,
        problem=str(problem) if problem else None,
        problem_field=field,
        form=form or {},
    )


@router.post("/lineage/rules", include_in_schema=False)
async def rules_form(
    request: Request,
    identity: Annotated[Identity, page(Role.ADMIN)],
    action: Annotated[str, Form(pattern="^(add|enable|disable|change)$")],
    name: Annotated[str, Form(max_length=64)],
    condition: Annotated[str, Form(max_length=4000)] = "",
    technical: Annotated[str, Form(max_length=2000)] = "",
    functional: Annotated[str, Form(max_length=2000)] = "",
    owner: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The page's forms: add a rule, change one, enable or disable one (administrators)."""
    await check_csrf(request, identity)
    state = _state(request)
    form = {
        "name": name,
        "condition": condition,
        "technical": technical,
        "functional": functional,
        "owner": owner,
    }
    try:
        if action == "add":
            body = RuleIn.model_construct(
                name=name,
                condition=condition,
                technical=technical,
                functional=functional,
                owner=owner or None,
            )
            await _save_new(state, request, identity, body)
        else:
            change = RuleChange.model_construct(
                condition=condition or None if action == "change" else None,
                technical=technical or None if action == "change" else None,
                functional=functional or None if action == "change" else None,
                owner=owner or None if action == "change" else None,
                enabled={"enable": True, "disable": False}.get(action),
            )
            await _save_change(state, request, identity, name, change)
    except RuleError as exc:
        return await _render(request, identity, problem=exc, form=form, status_code=422)
    except LookupError:
        return await _render(
            request, identity, problem=f"no rule named {name!r}", form=form, status_code=404
        )
    return RedirectResponse(f"/lineage/rules?name={quote(name)}", 303)

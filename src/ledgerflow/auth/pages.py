"""Signing in and out of the console, and what every console page needs: a signed-in
person with one of the page's roles."""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ledgerflow.auth import store
from ledgerflow.auth.access import (
    SESSION_COOKIE,
    auth_state,
    check_csrf,
    client_of,
    identify,
    same_secret,
    session_cookie,
)
from ledgerflow.auth.model import AuthError, Identity, Role
from ledgerflow.web.errors import Error
from ledgerflow.web.pages import Pages

router = APIRouter(tags=["console"])
PRE_SESSION_COOKIE = "ledgerflow_signin"  # the sign-in form's own CSRF token
HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}


def page_responses(description: str, restricted: bool = False) -> dict[int | str, Any]:
    """What a console page may answer, for the OpenAPI document: the page (or, where it
    says so, its table as CSV), the way to the sign-in page, and 403 for a page that only
    some roles may see."""
    responses: dict[int | str, Any] = {
        200: {**HTML, "description": description},
        303: {"description": "Not signed in: to /signin."},
        400: {"model": Error, "description": "A query parameter is wrong; it is named."},
    }
    if restricted:
        responses[403] = {**HTML, "description": "Signed in without the role the page needs."}
    return responses


class PageRefused(Exception):
    """A page asked for by someone not signed in (redirect) or without the role (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def pages_of(request: Request) -> Pages:
    """The app's templates."""
    pages: Pages = request.app.state.pages
    return pages


def page(*roles: Role) -> Any:
    """A dependency for a console page: the signed-in person, who must have one of
    ``roles`` (any role when none is given)."""

    async def dependency(
        request: Request, session: Annotated[str | None, Depends(session_cookie)]
    ) -> Identity:
        try:
            identity = await identify(request, None, session)
        except AuthError as exc:
            raise PageRefused(exc.status, str(exc)) from None
        if identity is None or identity.kind != "user":
            raise PageRefused(401, "sign in to see this page")
        request.state.identity = identity
        if roles and identity.role not in roles:
            wanted = " or ".join(roles)
            raise PageRefused(403, f"this page is for the role {wanted}; you are {identity.role}")
        return identity

    return Depends(dependency)


async def page_refused(request: Request, exc: Exception) -> Response:
    """Not signed in: to the sign-in page, and back afterwards. Not allowed: a 403 page."""
    assert isinstance(exc, PageRefused)
    if exc.status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target)}", 303)
    return pages_of(request).render(
        request,
        "error.html",
        exc.status,
        status=exc.status,
        heading="Not for you",
        message=str(exc),
    )


def _local(target: str | None) -> str:
    """Where to go after signing in: a path of this site only. Anything a browser could
    read as another site (``//host``, a backslash, a tab or newline it would strip) is
    refused for the overview."""
    if not target or any(ord(c) <= 0x20 or c in "\\\x7f" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _sign_in_form(
    request: Request, status: int, next_: str, name: str = "", problem: str | None = None
) -> Response:
    token = secrets.token_urlsafe(32)
    response = pages_of(request).render(
        request, "signin.html", status, csrf_token=token, next=next_, name=name, problem=problem
    )
    response.set_cookie(
        PRE_SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/signin",
    )
    return response


@router.get("/signin", summary="The sign-in page", response_class=Response, responses={200: HTML})
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    """The form to sign in to the console."""
    return _sign_in_form(request, 200, _local(next))


@router.post(
    "/signin",
    summary="Sign in",
    response_class=Response,
    responses={
        303: {"description": "Signed in: the session cookie is set."},
        400: {**HTML, "description": "A field is missing, or the form's CSRF token is wrong."},
        401: {**HTML, "description": "Wrong name or password, or a locked user."},
    },
)
async def sign_in(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the name and password; start a session. Repeated failures lock the user."""
    # The fields are checked here, not by the framework, so that a person always gets the
    # form back with the problem (never a bare JSON error).
    target = _local(next if len(next) <= 2000 else "/")
    expected = request.cookies.get(PRE_SESSION_COOKIE)
    if not same_secret(csrf_token, expected):
        return _sign_in_form(request, 400, target, name, "the form expired: please sign in again")
    if "\x00" in name + password:  # no user's name has one; PostgreSQL's text takes none
        return _sign_in_form(request, 401, target, "", "wrong name or password")
    if not name.strip() or not password:
        missing = "your name" if not name.strip() else "your password"
        return _sign_in_form(request, 400, target, name, f"give {missing}")
    state = auth_state(request)
    async with state.pool.connection() as conn:
        outcome = await store.sign_in(
            conn, name, password, state.sign_in_attempts, state.lockout_seconds
        )
        action = "sign_in" if outcome.identity else "sign_in_failed"
        await store.audit(
            conn,
            name,
            action,
            detail={"problem": outcome.problem} if outcome.problem else {},
            client=client_of(request),
        )
        if outcome.identity is None:
            return _sign_in_form(request, 401, target, name, outcome.problem)
        assert outcome.user_id is not None
        session = await store.start_session(conn, outcome.user_id, state.session_seconds)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=int(state.session_seconds),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(PRE_SESSION_COOKIE, path="/signin")
    return response


@router.post(
    "/signout",
    summary="Sign out",
    response_class=Response,
    responses={303: {"description": "Signed out: the session is over."}, 403: HTML},
)
async def sign_out(request: Request, identity: Annotated[Identity, page()]) -> Response:
    """End the session (the form carries its CSRF token)."""
    try:
        await check_csrf(request, identity)
    except AuthError as exc:
        raise PageRefused(403, str(exc)) from None
    session = request.cookies.get(SESSION_COOKIE)
    state = auth_state(request)
    async with state.pool.connection() as conn:
        if session:
            await store.end_session(conn, session)
        await store.audit(conn, identity.actor, "sign_out", client=client_of(request))
    response = RedirectResponse("/signin", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

"""Errors as JSON, whatever raised them: a person reading them and a program parsing them
both learn what to fix."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from fastapi.exceptions import RequestValidationError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.web.middleware import BodyTooLarge

log = structlog.get_logger("ledgerflow.http")


class Error(BaseModel):
    """Every error answer: what went wrong, and the parameter at fault if one was."""

    error: str
    parameter: str | None = None


async def http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and the like, as JSON."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)


async def invalid_request(_request: Request, exc: Exception) -> Response:
    """A parameter that is missing or malformed: 400, naming it."""
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = exc.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "body")]
    parameter = ".".join(location) or None
    message = "required" if first.get("type") == "missing" else str(first.get("msg"))
    text = f"{parameter}: {message}" if parameter else message
    return JSONResponse({"error": text, "parameter": parameter}, 400)


async def too_large(_request: Request, exc: Exception) -> Response:
    """A body past the limit, found while reading it."""
    assert isinstance(exc, BodyTooLarge)
    return JSONResponse({"error": str(exc)}, 413, headers={"connection": "close"})


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its details, answered without them."""
    log.error("http.error", path=request.url.path, error=repr(exc))
    return JSONResponse({"error": "internal error; the server log has the details"}, 500)


async def domain_missing(request: Request, exc: Exception) -> Response:
    """A table of an optional domain this database was not migrated with: say how to add
    it, rather than a bare 500."""
    log.error("http.domain_missing", path=request.url.path, error=str(exc).splitlines()[0])
    return JSONResponse(
        {
            "error": "this database lacks the tables this needs: migrate it with the domain "
            "(ledgerflow migrate --treasury, or --rates)"
        },
        503,
    )


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """The database (or a read replica) dropped the connection or could not answer:
    503, try again (a replica that failed is out of rotation by then)."""
    log.warning("http.database_unavailable", path=request.url.path, error=str(exc)[:300])
    return JSONResponse({"error": "the database is unavailable; try again"}, 503)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: http_error,
    psycopg.errors.UndefinedTable: domain_missing,
    psycopg.OperationalError: database_unavailable,
    PoolTimeout: database_unavailable,
    RequestValidationError: invalid_request,
    BodyTooLarge: too_large,
    500: internal_error,
}


_ANSWERS = {
    400: "A parameter or the body is wrong; the answer names it.",
    401: "No credentials, or credentials that are not valid.",
    403: "The credentials lack the scope (or a session its CSRF token).",
    404: "Nothing has that name or id.",
    409: "The name is taken.",
    503: "A service it depends on cannot answer now; try again.",
}


def answers(*statuses: int, **models: Any) -> dict[int | str, dict[str, Any]]:
    """A JSON endpoint's error answers for its OpenAPI document, each an Error unless
    ``models`` gives another model (``s422=RuleRefused``)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model = models.get(f"s{status}", Error)
        description = getattr(model, "__doc__", None) if status not in _ANSWERS else None
        documented[status] = {"model": model, "description": description or _ANSWERS[status]}
    return documented

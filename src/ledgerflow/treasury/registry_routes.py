"""ledgerflow's schema store over HTTP, as a Confluent-compatible schema registry answers
(``/registry``): what ``HttpSchemaRegistry`` talks to, so one client serves both.

- ``GET /registry/schemas/ids/{id}``: ``{"schema": "<text>"}`` (scope ``read``)
- ``GET /registry/subjects/{subject}/versions/latest``: ``{"subject", "id", "version",
  "schema"}`` (scope ``read``)
- ``POST /registry/subjects/{subject}/versions`` with ``{"schema": "<text>"}``: ``{"id"}``
  (scope ``schemas:write``); 409 when incompatible, 422 when not an Avro schema

Errors have Confluent's body, ``{"error_code": 40403, "message": "..."}``, and every answer
its content type. Handlers read ``request.state.schema_registry``, a RegistryState the
API process's lifespan makes. The two scopes are the dependencies ``can_read`` and
``can_register``: an application may override them (``app.dependency_overrides[
can_read.dependency]``), as the contract tests do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.auth.access import client_of, require
from ledgerflow.auth.model import Identity
from ledgerflow.auth.store import audit
from ledgerflow.treasury.registry import (
    CONTENT_TYPE,
    IncompatibleSchema,
    InvalidSchema,
    PostgresSchemaStore,
    SchemaNotFound,
    SubjectNotFound,
    schema_text,
)
from ledgerflow.web.errors import answers

router = APIRouter(prefix="/registry", tags=["schema registry"])
can_read = require("read")
can_register = require("schemas:write")
SchemaId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Subject = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")]


@dataclass(frozen=True)
class RegistryState:
    """What the registry routes need for the lifetime of the API process."""

    store: PostgresSchemaStore


def registry_state(request: Request) -> RegistryState:
    """The RegistryState the lifespan made."""
    state: RegistryState = request.state.schema_registry
    return state


class RegistryError(BaseModel):
    """A registry error, in Confluent's form."""

    error_code: int = Field(examples=[40403])
    message: str = Field(examples=["Schema 7 not found"])


def answer(request: Request, body: dict[str, Any], status: int = 200) -> Response:
    """A registry answer: in the registry's own content type to a client that asks for
    it (Confluent's clients do), plain JSON to any other."""
    wanted = CONTENT_TYPE in request.headers.get("accept", "")
    return JSONResponse(body, status, media_type=CONTENT_TYPE if wanted else "application/json")


def error(request: Request, status: int, code: int, message: str) -> Response:
    """A registry error, with Confluent's body."""
    return answer(request, {"error_code": code, "message": message}, status)


@router.get(
    "/schemas/ids/{schema_id}",
    summary="A schema by its id",
    responses=answers(400, 401, 403, 404, s404=RegistryError),
)
async def schema_by_id(
    request: Request, schema_id: SchemaId, identity: Annotated[Identity, can_read]
) -> Response:
    """The schema with this id, as text (404, error code 40403, when there is none)."""
    try:
        schema = await registry_state(request).store.schema_by_id(schema_id)
    except SchemaNotFound as exc:
        return error(request, 404, 40403, str(exc))
    return answer(request, {"schema": schema_text(schema)})


@router.get(
    "/subjects/{subject}/versions/latest",
    summary="A subject's latest version",
    responses=answers(400, 401, 403, 404, s404=RegistryError),
)
async def latest(
    request: Request, subject: Subject, identity: Annotated[Identity, can_read]
) -> Response:
    """The subject's newest version (404, error code 40401, for an unknown subject)."""
    try:
        found = await registry_state(request).store.latest(subject)
    except SubjectNotFound as exc:
        return error(request, 404, 40401, str(exc))
    return answer(
        request,
        {
            "subject": subject,
            "version": found.version,
            "id": found.id,
            "schema": schema_text(found.schema),
        },
    )


@router.post(
    "/subjects/{subject}/versions",
    summary="Register a schema under a subject",
    responses=answers(400, 401, 403, 409, 413, 422, s409=RegistryError, s422=RegistryError),
)
async def register(
    request: Request, subject: Subject, identity: Annotated[Identity, can_register]
) -> Response:
    """Register ``{"schema": "<Avro schema as text>"}`` under the subject; its id. A schema
    the subject has already answers with its id; one that could not read the latest
    version's data is refused (409)."""
    try:
        body = json.loads(await request.body())
        if body.get("schemaType", "AVRO") != "AVRO":
            return error(request, 422, 42201, "only Avro schemas are kept here")
        schema = json.loads(body["schema"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return error(
            request, 422, 42201, 'Invalid schema: the body must be {"schema": "<Avro schema>"}'
        )
    store = registry_state(request).store
    try:
        schema_id = await store.register(subject, schema)
    except IncompatibleSchema as exc:
        return error(request, 409, 409, str(exc))
    except InvalidSchema as exc:
        return error(request, 422, 42201, f"Invalid schema: {exc}")
    except RecursionError:
        return error(request, 422, 42201, "Invalid schema: nested too deeply")
    async with store.pool.connection() as conn:
        await audit(
            conn,
            identity.actor,
            "schema.register",
            subject,
            {"id": schema_id},
            client_of(request),
        )
    return answer(request, {"id": schema_id})

"""The schema store: one contract suite run against ledgerflow's own store in PostgreSQL,
against HttpSchemaRegistry talking to ledgerflow's /registry routes (served by uvicorn on
that store), and against the in-memory registry the unit tests use; then what only the
HTTP side has (Confluent's bodies, the scopes)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import fastavro
import httpx2
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from ledgerflow.auth import store as auth_store
from ledgerflow.auth.access import AuthState, auth_error
from ledgerflow.auth.model import AuthError, Identity
from ledgerflow.core import ConfigError
from ledgerflow.db.connections import connect
from ledgerflow.testing.registry import MemoryRegistry
from ledgerflow.treasury.normalise import Normaliser, frame, source_schema
from ledgerflow.treasury.registry import (
    CONTENT_TYPE,
    HttpSchemaRegistry,
    IncompatibleSchema,
    InvalidSchema,
    PostgresSchemaStore,
    SchemaNotFound,
    SchemaRegistry,
    SchemaRegistryError,
    SubjectNotFound,
    SubjectVersion,
    check_url,
)
from ledgerflow.treasury.registry_routes import RegistryState, can_read, can_register, router

from ..conftest import free_port

pytestmark = pytest.mark.integration


def schema(*extra: dict[str, Any], name: str = "Deal") -> dict[str, Any]:
    """A record with an id and an amount, and ``extra`` fields."""
    return {
        "type": "record",
        "name": name,
        "namespace": "test",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "amount", "type": "int"},
            *extra,
        ],
    }


OPTIONAL_DESK = {"name": "desk", "type": ["null", "string"], "default": None}
REQUIRED_BOOK = {"name": "book", "type": "string"}


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, open=False, kwargs={"autocommit": True}) as opened:
        yield opened


def registry_app(pool: AsyncConnectionPool, *, scopes_granted: bool) -> FastAPI:
    """An application serving only the registry routes on ``pool``: with its scopes
    granted to every request (the dependencies overridden), or checked as the API does."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {
            "schema_registry": RegistryState(PostgresSchemaStore(pool)),
            "auth": AuthState(pool, 3600, 5, 60, None),
        }

    app = FastAPI(lifespan=lifespan, exception_handlers={AuthError: auth_error})
    app.include_router(router)
    if scopes_granted:
        contract = Identity("contract", "token", frozenset({"read", "schemas:write"}), via="token")
        for dependency in (can_read, can_register):
            app.dependency_overrides[dependency.dependency] = lambda: contract
    return app


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free port of this machine; its /registry URL."""
    port = free_port()
    config = uvicorn.Config(app, "127.0.0.1", port, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}/registry"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture(params=["postgres", "http", "memory"])
async def registry(
    request: pytest.FixtureRequest, pool: AsyncConnectionPool
) -> AsyncIterator[SchemaRegistry]:
    """Each adapter of the port, on this test's database."""
    if request.param == "postgres":
        yield PostgresSchemaStore(pool)
    elif request.param == "memory":
        yield MemoryRegistry()
    else:
        async with (
            served(registry_app(pool, scopes_granted=True)) as url,
            HttpSchemaRegistry(url) as client,
        ):
            yield client


# The contract.


async def test_versions_count_from_one_per_subject_and_ids_are_global(
    registry: SchemaRegistry,
) -> None:
    first = await registry.register("deals-value", schema())
    second = await registry.register("deals-value", schema(OPTIONAL_DESK))
    other = await registry.register("loans-value", schema(name="Loan"))
    assert [first, second, other] == [1, 2, 3]
    assert await registry.latest("deals-value") == SubjectVersion(2, 2, schema(OPTIONAL_DESK))
    assert await registry.latest("loans-value") == SubjectVersion(1, 3, schema(name="Loan"))
    assert await registry.schema_by_id(1) == schema()


async def test_a_schema_registered_again_keeps_its_version_and_id(
    registry: SchemaRegistry,
) -> None:
    first = await registry.register("deals-value", schema())
    assert await registry.register("deals-value", schema()) == first
    # Key order and whitespace do not make another schema.
    reordered = json.loads(
        json.dumps(schema(), sort_keys=True), object_pairs_hook=lambda p: dict(reversed(p))
    )
    assert await registry.register("deals-value", reordered) == first
    second = await registry.register("deals-value", schema(OPTIONAL_DESK))
    # An older version registered again answers its id, and adds no version.
    assert await registry.register("deals-value", schema()) == first
    assert await registry.latest("deals-value") == SubjectVersion(2, second, schema(OPTIONAL_DESK))


async def test_the_same_schema_under_two_subjects_shares_its_id(registry: SchemaRegistry) -> None:
    shared = await registry.register("deals-value", schema())
    await registry.register("loans-value", schema(name="Loan"))
    assert await registry.register("archive-value", schema()) == shared
    assert await registry.latest("archive-value") == SubjectVersion(1, shared, schema())


async def test_an_incompatible_version_is_refused(registry: SchemaRegistry) -> None:
    first = await registry.register("deals-value", schema(OPTIONAL_DESK))
    with pytest.raises(IncompatibleSchema, match="deals-value") as caught:
        await registry.register("deals-value", schema(OPTIONAL_DESK, REQUIRED_BOOK))
    assert "Deal.book: field added without a default" in str(caught.value)
    narrowed = schema(OPTIONAL_DESK)
    narrowed["fields"][1]["type"] = "string"
    with pytest.raises(IncompatibleSchema, match="int cannot be read as string"):
        await registry.register("deals-value", narrowed)
    assert await registry.latest("deals-value") == SubjectVersion(1, first, schema(OPTIONAL_DESK))
    # Removing a field and promoting another are BACKWARD compatible; a new subject has no
    # earlier version to be compatible with.
    promoted = schema()
    promoted["fields"][1]["type"] = "long"
    assert await registry.register("deals-value", promoted) > first
    assert (await registry.latest("deals-value")).version == 2
    assert await registry.register("other-value", schema(REQUIRED_BOOK))


async def test_unknown_ids_and_subjects_are_clear_errors(registry: SchemaRegistry) -> None:
    await registry.register("deals-value", schema())
    with pytest.raises(SchemaNotFound, match="Schema 424242 not found"):
        await registry.schema_by_id(424242)
    with pytest.raises(SubjectNotFound, match="Subject 'nobody' not found"):
        await registry.latest("nobody")


async def test_a_schema_that_is_not_avro_is_refused(registry: SchemaRegistry) -> None:
    with pytest.raises(InvalidSchema):
        await registry.register("deals-value", schema({"name": "x", "type": "money"}))
    with pytest.raises(SubjectNotFound):
        await registry.latest("deals-value")


async def test_the_normaliser_works_on_every_adapter(registry: SchemaRegistry) -> None:
    source_id = await registry.register("trades.fx-value", source_schema("fx"))
    normaliser = await Normaliser.start(registry)
    assert normaliser.canonical_id != source_id
    values = {
        "deal_id": "FX-1",
        "desk": "fx",
        "book": "B",
        "currency_pair": "GBP/JPY",
        "direction": "SELL",
        "amount": Decimal("250000"),
        "rate": 191.237,
        "counter_amount": Decimal("47809250"),
        "trade_time": 1_772_442_930_250,
        "value_date": 20_516,
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(source_schema("fx")), values)
    normalised = await normaliser.normalise("fx", frame(source_id, out.getvalue()))
    assert normalised.trade["settlement_amount"] == Decimal("47809250")
    assert normalised.trade["price"] == Decimal("191.237")
    assert (normalised.trade["instrument"], normalised.trade["currency"]) == ("GBP", "JPY")
    assert await normaliser.read(normalised.body) == normalised.trade


# What only one side has.


async def test_registrations_under_one_subject_at_once_get_one_version_each(
    pool: AsyncConnectionPool,
) -> None:
    store = PostgresSchemaStore(pool)
    versions = [
        schema({"name": f"extra{n}", "type": ["null", "string"], "default": None}) for n in range(6)
    ]
    ids = await asyncio.gather(*(store.register("deals-value", s) for s in versions))
    assert sorted(ids) == [1, 2, 3, 4, 5, 6]
    assert (await store.latest("deals-value")).version == 6


async def test_schemas_are_cached_by_id(pool: AsyncConnectionPool) -> None:
    store = PostgresSchemaStore(pool)
    schema_id = await store.register("deals-value", schema())
    (await store.schema_by_id(schema_id))["name"] = "Changed"  # a copy: the cache keeps its own
    async with served(registry_app(pool, scopes_granted=True)) as url:
        client = HttpSchemaRegistry(url)
        assert await client.schema_by_id(schema_id) == schema()
    await pool.close()
    try:
        # The server is gone and the pool closed: the ids already read are still known.
        assert await store.schema_by_id(schema_id) == schema()
        assert await client.schema_by_id(schema_id) == schema()
        with pytest.raises(SchemaRegistryError, match="does not answer"):
            await client.schema_by_id(schema_id + 1)
    finally:
        await client.aclose()


async def test_the_http_answers_are_confluents(pool: AsyncConnectionPool, db_url: str) -> None:
    headers = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}
    async with (
        served(registry_app(pool, scopes_granted=True)) as url,
        httpx2.AsyncClient(base_url=url + "/", timeout=5) as http,
    ):
        created = await http.post(
            "subjects/deals-value/versions", json={"schema": json.dumps(schema())}, headers=headers
        )
        assert (created.status_code, created.json()) == (200, {"id": 1})
        assert created.headers["content-type"] == CONTENT_TYPE
        found = await http.get("schemas/ids/1")  # a client asking for nothing: plain JSON
        assert found.headers["content-type"] == "application/json"
        assert json.loads(found.json()["schema"]) == schema()
        latest = await http.get("subjects/deals-value/versions/latest")
        assert latest.json() | {"schema": None} == {
            "subject": "deals-value",
            "version": 1,
            "id": 1,
            "schema": None,
        }
        missing = await http.get("schemas/ids/7")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error_code": 40403, "message": "Schema 7 not found"},
        )
        nobody = await http.get("subjects/nobody/versions/latest")
        assert (nobody.status_code, nobody.json()["error_code"]) == (404, 40401)
        refused = await http.post(
            "subjects/deals-value/versions",
            json={"schema": json.dumps(schema(REQUIRED_BOOK))},
            headers=headers,
        )
        assert refused.status_code == 409
        assert refused.json()["error_code"] == 409
        assert refused.json()["message"].startswith(
            'Schema being registered is incompatible with an earlier schema for subject "deals-value"'
        )
        for body in (
            {"schema": "{"},
            {"schema": json.dumps({"type": "nothing"})},
            {"no": "schema"},
            [1],
        ):
            invalid = await http.post("subjects/deals-value/versions", json=body, headers=headers)
            assert (invalid.status_code, invalid.json()["error_code"]) == (422, 42201), body
    conn = await connect(db_url)
    async with conn:
        cursor = await conn.execute("SELECT actor, action, target FROM ledgerflow.audit_log")
        assert await cursor.fetchall() == [("token:contract", "schema.register", "deals-value")]


async def test_the_registry_routes_need_their_scopes(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        token = await auth_store.create_token(conn, "reader", ["read"], "test")
    body = {"schema": json.dumps(schema())}
    async with (
        served(registry_app(pool, scopes_granted=False)) as url,
        httpx2.AsyncClient(base_url=url + "/", timeout=5) as http,
    ):
        assert (await http.get("schemas/ids/1")).status_code == 401
        assert (await http.post("subjects/s/versions", json=body)).status_code == 401
        reader = {"authorization": f"Bearer {token}"}
        assert (await http.get("schemas/ids/1", headers=reader)).json()["error_code"] == 40403
        assert (
            await http.post("subjects/s/versions", json=body, headers=reader)
        ).status_code == 403
        async with HttpSchemaRegistry(url, token=token) as client:
            with pytest.raises(SchemaRegistryError, match="HTTP 403"):
                await client.register("s", schema())
            with pytest.raises(SubjectNotFound):
                await client.latest("s")


def test_a_registry_url_that_is_not_http_names_its_variable() -> None:
    assert check_url("https://registry.example:8081") == "https://registry.example:8081/"
    for bad in ("registry:8081", "ftp://registry", "http://"):
        with pytest.raises(ConfigError, match="LEDGERFLOW_SCHEMA_REGISTRY_URL"):
            check_url(bad)

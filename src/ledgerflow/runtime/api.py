"""`ledgerflow api`: the stateless HTTP API process and the console, any number of replicas.

It serves ``GET /rates`` and ``POST /prices/batches``, the console's pages, the OpenAPI
document at ``/openapi.json`` with its reference at ``/docs``, and the same probes and
metrics as the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypedDict

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

import ledgerflow
from ledgerflow.auth import pages as auth_pages
from ledgerflow.auth.access import SESSION_COOKIE, AuthState, auth_error, identify
from ledgerflow.auth.model import AuthError
from ledgerflow.core.health import Health
from ledgerflow.db.connections import keep_search_path_off_our_schema
from ledgerflow.db.replicas import ReadPools
from ledgerflow.feeds import pages as feeds_pages
from ledgerflow.feeds import routes as feeds_routes
from ledgerflow.kv.balance_store import RedisBalanceStore
from ledgerflow.kv.events import KeyDBPublisher
from ledgerflow.lineage import comparison_routes
from ledgerflow.lineage import routes as lineage_routes
from ledgerflow.notifications.notify import Notifier
from ledgerflow.rates import routes as rates_routes
from ledgerflow.rates.cache import RatesCache
from ledgerflow.rates.lanes import lane_rates
from ledgerflow.runtime import console, live
from ledgerflow.runtime.announce import Announcer, postman
from ledgerflow.runtime.checks import dependency_checks
from ledgerflow.runtime.live import LiveHub
from ledgerflow.runtime.metrics import ApiMetrics
from ledgerflow.settings import Settings
from ledgerflow.transactions import rule_routes
from ledgerflow.transactions.rules import BUILT_IN
from ledgerflow.treasury import pages as treasury_pages
from ledgerflow.treasury import registry_routes
from ledgerflow.treasury import routes as treasury_routes
from ledgerflow.treasury.registry import PostgresSchemaStore
from ledgerflow.web import probes
from ledgerflow.web.errors import EXCEPTION_HANDLERS
from ledgerflow.web.middleware import (
    AccessLog,
    BodyLimit,
    CsrfCookie,
    RequestMetrics,
    SecurityHeaders,
)
from ledgerflow.web.pages import STATIC_PATH, Pages, static_files

DESCRIPTION = """\
ledgerflow's HTTP API. `GET /rates` answers as the original rates service did, without
credentials unless the server requires a token. Every change needs a token with its scope
(`Authorization: Bearer <token>`, made with `ledgerflow tokens create`) or a signed-in
console session with the role that allows it and the session's CSRF token
(`X-CSRF-Token`). Errors are JSON: `{"error": "...", "parameter": "..."}`.
"""


class ApiState(TypedDict):
    """What the lifespan makes and every request sees as ``request.state``."""

    auth: AuthState
    console: console.ConsoleState
    rates: rates_routes.RatesState
    live: LiveHub
    rules: rule_routes.RulesState
    lineage: lineage_routes.LineageState
    announce: Announcer
    feeds: feeds_routes.FeedsState
    schema_registry: registry_routes.RegistryState
    treasury: treasury_routes.TreasuryState


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[ApiState]:
    """Open the database pool and the rates cache for the process's lifetime."""
    settings: Settings = app.state.settings
    metrics: ApiMetrics = app.state.metrics
    pool = AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=settings.api_pool_size,
        open=False,
        kwargs={"application_name": "ledgerflow-api", "autocommit": True},
        check=AsyncConnectionPool.check_connection,  # a connection that died is replaced
        configure=keep_search_path_off_our_schema,
    )
    cache = (
        RatesCache.from_url(settings.cache_url, settings.rates_cache_size, metrics.rates_cache)
        if settings.rates_cache_size
        else None
    )
    await pool.open(wait=False)
    # The console's and /rates' reads: on replicas when there are (docs/scaling.md).
    reads = ReadPools(
        pool,
        settings.read_urls(),
        max_lag=settings.read_replica_max_lag,
        pool_size=settings.api_pool_size,
        metrics=metrics.replicas,
    )
    await reads.open()
    published = RedisBalanceStore(settings.redis_url, timeout=1.0)
    pages = console.ConsoleState(reads, published)
    hub = LiveHub(settings.redis_url, snapshot=lambda: console.snapshot(pages))
    announcer = Announcer(Notifier(settings.notify_settings(), pool.connection))
    mail = postman(settings, pool.connection)
    fan_out = asyncio.create_task(hub.run(), name="live")
    # What this replica has to tell every replica's browsers (a feed's step).
    events = KeyDBPublisher(settings.redis_url)
    sending = asyncio.create_task(events.run(), name="live-events")
    health: Health = app.state.health
    health.supervise(fan_out)  # a replica without its live feed is not live
    health.supervise(sending)
    try:
        yield {
            "console": pages,
            "live": hub,
            "auth": AuthState(
                pool=pool,
                session_seconds=settings.session_hours * 3600,
                sign_in_attempts=settings.sign_in_attempts,
                lockout_seconds=settings.lockout_seconds,
                trusted_auth_header=settings.trusted_auth_header,
            ),
            "rates": rates_routes.RatesState(
                pool=pool,
                reads=reads,
                answer=cache.cached() if cache else lane_rates,
                cache=cache,
                max_days=settings.rates_max_days,
                writers=asyncio.Semaphore(max(1, settings.api_pool_size // 4)),
                require_token=settings.rates_require_token,
            ),
            "rules": rule_routes.RulesState(pool=pool, on_change=announcer.rule_changed),
            "lineage": lineage_routes.LineageState(
                pool=pool,
                built_in=[(r.value, t, f) for r, (t, f) in BUILT_IN.items()],
                redis_url=settings.redis_url,
                on_unexplained=announcer.comparison_unexplained,
            ),
            "announce": announcer,
            "feeds": feeds_routes.FeedsState(
                pool=pool,
                letters=settings.feed_letters(),
                mail_now=mail.kick,
                load_log=settings.feeds_load_log(),
                events=events,
            ),
            "schema_registry": registry_routes.RegistryState(PostgresSchemaStore(pool)),
            "treasury": treasury_routes.TreasuryState(
                pool=pool,
                currency=settings.treasury_currency,
                rates=settings.lcr_rates(),
                control_stream=settings.treasury_control_stream,
            ),
        }
    finally:
        await reads.close()
        await announcer.close()
        await mail.close()
        for task in (fan_out, sending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await events.close()
        await pool.close()
        await published.close()
        if cache is not None:
            await cache.close()


async def reference(request: Request) -> Response:
    """The API's reference, drawn from the OpenAPI document (no script needed); open to
    all, with the console's menu for a person signed in."""
    app: FastAPI = request.app
    pages: Pages = app.state.pages
    with contextlib.suppress(AuthError):
        identity = await identify(request, None, request.cookies.get(SESSION_COOKIE))
        if identity is not None and identity.kind == "user":
            request.state.identity = identity
    return pages.render(request, "reference.html", spec=app.openapi())


def document(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI document, made once: FastAPI's, without the 422 answers it adds
    for parameter validation (ledgerflow answers those 400, documented on each route)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for operations in spec["paths"].values():
                for operation in operations.values():
                    unused = operation["responses"].get("422", {})
                    if unused.get("description") == "Validation Error":
                        del operation["responses"]["422"]
            schemas = spec.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = spec
        return app.openapi_schema

    return openapi


def create_app(settings: Settings) -> Any:
    """The API application: rates, console, probes, metrics, JSON errors, access logs."""
    checks = dependency_checks(settings)
    health = Health(role="serving", checks={k: checks[k] for k in ("postgres", "keydb")})
    metrics = ApiMetrics()
    app = FastAPI(
        title="ledgerflow",
        version=ledgerflow.__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        exception_handlers={
            **EXCEPTION_HANDLERS,
            AuthError: auth_error,
            auth_pages.PageRefused: auth_pages.page_refused,
        },
    )
    app.openapi = document(app)  # type: ignore[method-assign]
    app.include_router(rates_routes.router)
    app.include_router(auth_pages.router)
    app.include_router(console.router)
    app.include_router(rule_routes.router)
    app.include_router(lineage_routes.router)
    app.include_router(comparison_routes.router)
    app.include_router(feeds_routes.router)
    app.include_router(feeds_pages.router)
    app.include_router(registry_routes.router)
    app.include_router(treasury_routes.router)
    app.include_router(treasury_pages.router)
    app.include_router(live.router)
    app.include_router(probes.router)
    app.add_api_route(
        "/docs",
        reference,
        methods=["GET"],
        summary="This reference",
        tags=["console"],
        response_class=Response,
        responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
    )
    app.mount(STATIC_PATH, static_files(), name="static")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.pages = Pages(
        [
            "ledgerflow.auth",
            "ledgerflow.runtime",
            "ledgerflow.transactions",
            "ledgerflow.lineage",
            "ledgerflow.feeds",
            "ledgerflow.treasury",
        ]
    )
    probes.probed(app, health, metrics.registry)
    limited = BodyLimit(CsrfCookie(app), settings.max_request_bytes)
    counted = RequestMetrics(SecurityHeaders(limited), metrics.http)
    return AccessLog(counted)

"""Access logs and probes of the HTTP side, in process."""

import asyncio
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

from ledgerflow.core.health import Health
from ledgerflow.runtime.metrics import WorkerMetrics
from ledgerflow.web import middleware, serving
from ledgerflow.web.probes import probe_app

TRUSTED = ["10.0.0.1", "10.0.0.2"]


def behind_proxies(app: Any, trusted: list[str]) -> Any:
    """``app`` as ledgerflow's uvicorn configuration serves it (proxy headers included)."""
    config = serving.config(app, "127.0.0.1", 0, trusted)
    config.load()
    return config.loaded_app


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("198.51.100.7", [], "198.51.100.7"),
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # untrusted peer: header ignored
        ("10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        ("10.0.0.1", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),  # the client cannot forge
        ("10.0.0.1", ["203.0.113.9, 10.0.0.2"], "203.0.113.9"),  # two proxies deep
        ("10.0.0.1", ["203.0.113.9", "10.0.0.2"], "203.0.113.9"),  # repeated headers
        ("10.0.0.1", [], "10.0.0.1"),
    ],
)
async def test_client_address_believes_forwarded_for_only_from_trusted_proxies(
    peer: str, forwarded: list[str], client: str
) -> None:
    seen: list[str] = []

    async def app(scope: Scope, _receive: Receive, _send: Send) -> None:
        seen.append(scope["client"][0])

    scope = {
        "type": "http",
        "client": (peer, 50000),
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }

    async def receive() -> Any:
        return {"type": "http.request"}

    async def send(_message: Any) -> None:
        return None

    await behind_proxies(app, TRUSTED)(scope, receive, send)
    assert seen == [client]


def test_access_lines_carry_client_method_path_status_bytes_and_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A command run in this process earlier (the CLI tests) configures loggers that cache
    # themselves on first use, which capture_logs cannot see: a fresh one for this test.
    structlog.reset_defaults()
    monkeypatch.setattr(middleware, "log", structlog.get_logger("ledgerflow.http"))
    app = probe_app(Health(role="standby"), WorkerMetrics().registry)
    with capture_logs() as logs, TestClient(behind_proxies(app, ["testclient"])) as client:
        response = client.get(
            "/healthz", headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "probe/1"}
        )
    assert response.status_code == 200
    [line] = [entry for entry in logs if entry["event"] == "http.access"]
    assert line["client"] == "203.0.113.9"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["bytes"] == len(response.content)
    assert line["user_agent"] == "probe/1"


def test_metrics_expose_the_process_registry() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics()
    metrics.leader.set(1)
    with TestClient(probe_app(Health(), metrics.registry)) as client:
        text = client.get("/metrics").text
    assert "ledgerflow_leader 1.0" in text
    with TestClient(probe_app(Health(), registry)) as client:
        assert "ledgerflow_leader" not in client.get("/metrics").text


def test_errors_are_json() -> None:
    with TestClient(probe_app(Health(), None)) as client:
        response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"error": "no route /nowhere"}


async def test_liveness_fails_when_a_supervised_task_has_died() -> None:
    health = Health(role="active")

    async def dies() -> None:
        raise RuntimeError("boom")

    async def runs() -> None:
        await asyncio.sleep(10)

    failed = health.supervise(asyncio.create_task(dies(), name="publish"))
    stopped = health.supervise(asyncio.create_task(runs(), name="heartbeat"))
    assert health.liveness()[0]
    await asyncio.gather(failed, return_exceptions=True)
    live, body = health.liveness()
    assert not live and body["dead_tasks"] == ["publish"]
    stopped.cancel()  # cancelled on purpose, as at shutdown: not a death
    await asyncio.gather(stopped, return_exceptions=True)
    assert health.liveness()[1]["dead_tasks"] == ["publish"]


async def test_readiness_reports_each_dependency_and_stale_publications() -> None:
    async def fine() -> None:
        return None

    async def down() -> None:
        raise ConnectionRefusedError("connection refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    health = Health(role="standby", checks={"postgres": fine, "keydb": down, "rabbitmq": hangs})
    health.check_timeout = 0.05
    ready, body = await health.readiness()
    assert not ready
    assert body["checks"] == {
        "postgres": "ok",
        "keydb": "connection refused",
        "rabbitmq": "no answer in time",
    }

    health = Health(role="active", checks={"postgres": fine}, last_publish=0.0)
    ready, body = await health.readiness()
    assert not ready and "no publication" in body["problem"]

"""Access logs and probes of the HTTP side, in process."""

import asyncio

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from ledgerflow.health import Health
from ledgerflow.http import client_address, probe_app
from ledgerflow.metrics import Metrics

TRUSTED = frozenset({"10.0.0.1", "10.0.0.2"})


def scope(peer: str, *forwarded: str) -> dict[str, object]:
    return {
        "client": (peer, 50000),
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


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
def test_client_address_believes_forwarded_for_only_from_trusted_proxies(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert client_address(scope(peer, *forwarded), TRUSTED) == client


def test_access_lines_carry_client_method_path_status_bytes_and_agent() -> None:
    app = probe_app(Health(role="standby"), Metrics(), trusted_proxies=["testclient"])
    with capture_logs() as logs, TestClient(app) as client:
        response = client.get(
            "/healthz", headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "probe/1"}
        )
    assert response.status_code == 200
    [line] = [entry for entry in logs if entry["event"] == "http.access"]
    assert line["client"] == "203.0.113.9"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["bytes"] == len(response.content)
    assert line["user_agent"] == "probe/1"


def test_errors_are_json() -> None:
    with TestClient(probe_app(Health(), None, [])) as client:
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

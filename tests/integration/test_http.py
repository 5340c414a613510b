"""The worker's HTTP endpoints, against the real services."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from ..conftest import free_port
from .conftest import eventually

pytestmark = pytest.mark.integration


class Switch:
    """A TCP relay to a real service that can be cut and restored, as an outage would."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def on(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def off(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.close()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def worker_with_http(
    redis_url: str, start_worker: Callable[..., Any]
) -> AsyncIterator[tuple[str, Switch]]:
    keydb = Switch(6379)
    await keydb.on()
    index = redis_url.rsplit("/", 1)[1]
    port = free_port()
    running = await start_worker(
        redis_url=f"redis://127.0.0.1:{keydb.port}/{index}",
        metrics_port=port,
        http_host="127.0.0.1",
        instance="http-test",
    )
    await eventually(lambda: _listening(port))
    yield f"http://127.0.0.1:{port}", keydb
    await running.stop()
    await keydb.off()


async def test_probes_and_metrics_of_an_active_worker(
    worker_with_http: tuple[str, Switch], publish: Callable[..., None]
) -> None:
    base, _ = worker_with_http
    async with httpx2.AsyncClient(base_url=base, timeout=5) as client:

        async def ready() -> Any:
            response = await client.get("/readyz")
            return response.status_code == 200 and response.json()

        body = await eventually(ready)
        assert body["role"] == "active"
        assert body["checks"] == {"postgres": "ok", "rabbitmq": "ok", "keydb": "ok"}
        assert (await client.get("/healthz")).json() == {
            "live": True,
            "role": "active",
            "dead_tasks": [],
        }
        publish(b'{"id": 1, "value": 600}')
        publish(b"not json")

        async def counted() -> str | None:
            text = (await client.get("/metrics")).text
            return text if 'ledgerflow_messages_total{outcome="stored"} 1.0' in text else None

        metrics = await eventually(counted)
        assert 'ledgerflow_messages_total{outcome="rejected"} 1.0' in metrics
        assert 'ledgerflow_rejected_total{reason="invalid_json"} 1.0' in metrics
        assert "ledgerflow_leader 1.0" in metrics
        assert "ledgerflow_publish_lag_seconds_count" in metrics
        assert "ledgerflow_batch_commit_duration_seconds_bucket" in metrics
        assert "ledgerflow_last_publish_timestamp_seconds" in metrics


async def test_readiness_fails_while_keydb_is_down_and_recovers(
    worker_with_http: tuple[str, Switch],
) -> None:
    base, keydb = worker_with_http
    async with httpx2.AsyncClient(base_url=base, timeout=5) as client:

        async def status() -> int:
            return (await client.get("/readyz")).status_code

        await eventually(lambda: _is(status, 200))
        await keydb.off()
        response = await eventually(lambda: _answer_with(client, 503))
        assert response.json()["checks"]["keydb"] != "ok"
        assert response.json()["checks"]["postgres"] == "ok"
        assert (await client.get("/healthz")).status_code == 200  # alive all the same
        await keydb.on()
        await eventually(lambda: _is(status, 200))


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def _is(get: Callable[[], Any], expected: int) -> bool:
    return bool(await get() == expected)


async def _answer_with(client: httpx2.AsyncClient, status: int) -> Any:
    response = await client.get("/readyz")
    return response if response.status_code == status else None

"""/live: the console's WebSocket, fed through KeyDB by the workers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.kv.events import KeyDBPublisher
from ledgerflow.runtime.api import create_app
from ledgerflow.runtime.live import QUEUE_SIZE, Listener
from ledgerflow.settings import load_settings

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@pytest.fixture
def app_for(db_url: str, redis_url: str) -> Callable[[], TestClient]:
    def make() -> TestClient:
        settings = load_settings(
            database_url=db_url, rates_cache_url=redis_url, redis_url=redis_url
        )
        return TestClient(create_app(settings), base_url="http://console.test")

    return make


def signed_in(client: TestClient, name: str) -> None:
    form = client.get("/signin").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    response = client.post(
        "/signin",
        data={"name": name, "password": PASSWORD, "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert response.status_code == 303


async def publish_until_heard(
    redis_url: str, events: list[dict[str, Any]], heard: Callable[[], bool]
) -> None:
    """Publish ``events`` (again and again, while the replica subscribes) until heard."""
    publisher = KeyDBPublisher(redis_url)
    sending = asyncio.create_task(publisher.run())
    deadline = time.monotonic() + 10
    while not heard():
        assert time.monotonic() < deadline, "the event never arrived"
        for event in events:
            publisher.emit(event)
        await asyncio.sleep(0.1)
    sending.cancel()
    await asyncio.gather(sending, return_exceptions=True)
    await publisher.close()


def session_headers(client: TestClient) -> dict[str, str]:
    """What a browser on the console's own page sends when it opens the socket."""
    return {
        "cookie": f"ledgerflow_session={client.cookies['ledgerflow_session']}",
        "origin": "http://console.test",
    }


async def test_a_signed_in_browser_gets_a_snapshot_then_the_events_it_asked_for(
    conn: psycopg.AsyncConnection[Any], app_for: Callable[[], TestClient], redis_url: str
) -> None:
    await store.add_user(conn, "vic", Role.VIEWER, PASSWORD)
    await conn.execute("INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 5)")
    await conn.commit()
    balances = {
        "type": "balances",
        "boundary": "2027-01-01T00:00:00+00:00",
        "balances": {"1_Visa": "7.10"},
    }
    received: list[dict[str, Any]] = []
    with app_for() as client:
        signed_in(client, "vic")
        with client.websocket_connect(
            "ws://console.test/live", headers=session_headers(client)
        ) as ws:
            ws.send_json({"subscribe": ["balances"]})
            snapshot = ws.receive_json()
            assert snapshot["type"] == "snapshot"
            assert snapshot["balances"][0]["provider"] == "1_Visa"
            assert snapshot["balances"][0]["stored"] == "5"
            reading = asyncio.create_task(asyncio.to_thread(ws.receive_json))
            reading.add_done_callback(lambda done: received.append(done.result()))
            await publish_until_heard(
                redis_url, [{"type": "batch", "stored": 1}, balances], lambda: bool(received)
            )
    # Exact, as published; the batch events before it were not asked for.
    assert received[0] == balances


async def test_no_credentials_no_feed(app_for: Callable[[], TestClient]) -> None:
    with (
        app_for() as client,
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("ws://console.test/live"),
    ):
        pass
    assert refused.value.code == 4401


async def test_a_page_of_another_site_cannot_use_the_session(
    conn: psycopg.AsyncConnection[Any], app_for: Callable[[], TestClient]
) -> None:
    await store.add_user(conn, "vic", Role.VIEWER, PASSWORD)
    with app_for() as client:
        signed_in(client, "vic")
        headers = {**session_headers(client), "origin": "http://evil.test"}
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("ws://console.test/live", headers=headers),
        ):
            pass
    assert refused.value.code == 4403


async def test_a_token_with_read_may_listen_without_a_cookie(
    conn: psycopg.AsyncConnection[Any], app_for: Callable[[], TestClient]
) -> None:
    reader = await store.create_token(conn, "screen", ["read"], "test")
    writer = await store.create_token(conn, "ci", ["prices:write"], "test")
    with app_for() as client:
        with client.websocket_connect(
            "ws://console.test/live", headers={"authorization": f"Bearer {reader}"}
        ) as ws:
            ws.send_json({"subscribe": []})
            assert ws.receive_json()["type"] == "snapshot"
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(
                "ws://console.test/live", headers={"authorization": f"Bearer {writer}"}
            ),
        ):
            pass
    assert refused.value.code == 4403


def test_a_listener_that_falls_behind_is_emptied_for_a_snapshot() -> None:
    listener = Listener(frozenset({"batch"}))
    for n in range(QUEUE_SIZE):
        listener.offer({"type": "batch", "n": n})
    listener.offer({"type": "balances"})  # not asked for: ignored
    assert listener.queue.qsize() == QUEUE_SIZE and not listener.behind.is_set()
    listener.offer({"type": "batch", "n": QUEUE_SIZE})  # one too many
    assert listener.queue.empty() and listener.behind.is_set()

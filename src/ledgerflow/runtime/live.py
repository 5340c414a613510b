"""``/live``: the console's one WebSocket. A browser (or a client with a ``read`` token)
subscribes to topics and receives JSON messages with a ``type``: ``snapshot`` first, then
``balances`` at each publication, ``batch`` summaries, ``rejected`` counts and ``worker``
changes, as the workers publish them through KeyDB to every API replica.

A slow browser never slows anyone: each connection has a bounded queue; when it overflows
the queue is emptied and the connection gets a fresh snapshot instead, as it does after
reconnecting, and as every connection does when the replica lost its subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.security import HTTPAuthorizationCredentials

from ledgerflow.auth.access import SESSION_COOKIE, identify
from ledgerflow.auth.model import AuthError
from ledgerflow.kv.events import subscribe

log = structlog.get_logger(__name__)

TOPICS = frozenset({"balances", "batch", "rejected", "worker", "feed", "trades", "lcr"})
QUEUE_SIZE = 256  # messages a connection may fall behind before it is sent a snapshot

Snapshot = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class Listener:
    """One connected WebSocket: what it asked for, and what waits to be sent to it."""

    topics: frozenset[str]
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    behind: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: dict[str, Any]) -> None:
        """Queue an event, or, when the queue is full, drop it all for a snapshot."""
        if event.get("type") not in self.topics:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.behind.set()


@dataclass
class LiveHub:
    """This replica's listeners, fed from the KeyDB subscription."""

    redis_url: str
    snapshot: Snapshot
    listeners: set[Listener] = field(default_factory=set)
    received: int = 0

    async def run(self) -> None:
        """Hand every published event to the listeners that want it, until cancelled."""
        async for event in subscribe(self.redis_url):
            self.received += 1
            if event.get("type") == "reconnected":  # events were lost meanwhile
                for listener in self.listeners:
                    listener.behind.set()
                continue
            for listener in list(self.listeners):
                listener.offer(event)


router = APIRouter()


def _same_origin(websocket: WebSocket) -> bool:
    """Whether the page that opened the socket is served by this host (a browser sends the
    session cookie to a WebSocket whoever opens it: the origin must be ours)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc == host


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    """Subscribe with ``{"subscribe": ["balances", ...]}`` (all topics when the list is
    empty); receive a snapshot, then events. Closes with 4401 without credentials, 4403
    without the scope read or from a page of another site."""
    hub: LiveHub = websocket.state.live
    header = websocket.headers.get("authorization")
    credentials = None
    if header:
        scheme, _, token = header.partition(" ")
        credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
    try:
        identity = await identify(websocket, credentials, websocket.cookies.get(SESSION_COOKIE))
    except AuthError as exc:
        await websocket.close(code=4401, reason=str(exc)[:120])
        return
    if identity is None:
        await websocket.close(code=4401, reason="sign in, or send a token with the scope read")
        return
    if not identity.allows("read") or (identity.csrf_token and not _same_origin(websocket)):
        await websocket.close(code=4403, reason="not allowed")
        return
    await websocket.accept()
    try:
        request = await asyncio.wait_for(websocket.receive_json(), 10)
    except WebSocketDisconnect:
        return  # gone before it asked for anything (a page left at once)
    except (TimeoutError, ValueError):
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=4400, reason='send {"subscribe": [topics]} first')
        return
    asked = request.get("subscribe") if isinstance(request, dict) else None
    wanted = frozenset(t for t in asked if t in TOPICS) if isinstance(asked, list) else TOPICS
    listener = Listener(wanted or TOPICS)
    hub.listeners.add(listener)
    try:
        await _serve(websocket, hub, listener)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the browser went away, during a send or between two
    finally:
        hub.listeners.discard(listener)


async def _serve(websocket: WebSocket, hub: LiveHub, listener: Listener) -> None:
    await websocket.send_json({"type": "snapshot", **(await hub.snapshot())})
    closed = asyncio.create_task(_until_closed(websocket))
    try:
        while not closed.done():
            if listener.behind.is_set():
                listener.behind.clear()
                await websocket.send_json({"type": "snapshot", **(await hub.snapshot())})
                continue
            next_event = asyncio.create_task(listener.queue.get())
            behind = asyncio.create_task(listener.behind.wait())
            done, pending = await asyncio.wait(
                {next_event, behind, closed}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending - {closed}:
                task.cancel()
            if next_event in done:
                await websocket.send_json(next_event.result())
    finally:
        closed.cancel()


async def _until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the browser sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()

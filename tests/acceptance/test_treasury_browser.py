"""The liquidity page live, with the real worker and API processes, RabbitMQ streams and
Debian's Chromium: an FX trade published on the desk's stream moves the LCR and the cash
shown, without a reload.

The book: USD 1,000,000 of cash and retail deposits of 2,000,000 (5 % run-off: 100,000
out), so the LCR is 1,000 %. The trade buys EUR 100,000 at 1.25 for USD 125,000, settling
today; EUR is worth 1.10 in the reference data: cash becomes 875,000 + 110,000 = 985,000
and the LCR 985 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import expect

from ledgerflow.treasury.ingest import SOURCES
from ledgerflow.treasury.streams import DEFAULT_URL, RabbitStreams, StreamError, StreamServer

from ..conftest import free_port
from ..integration.test_treasury_ingest import fx_trade
from .browser import PASSWORD, add_user, answers, browser, needs_chromium
from .conftest import Process, eventually, query

pytestmark = needs_chromium
__all__ = ["browser"]  # a fixture


def run_apart(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` in a thread of its own: Playwright's loop runs in the test's."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, work).result()


def streams_of(prefix: str) -> list[str]:
    return [*(f"{prefix}{source}" for source in SOURCES), f"{prefix}control", f"{prefix}normalised"]


async def _create(stream: str) -> None:
    broker = RabbitStreams(StreamServer.from_url(DEFAULT_URL))
    try:
        await broker.create(stream)
    finally:
        await broker.close()


async def _send(stream: str, body: bytes) -> None:
    broker = RabbitStreams(StreamServer.from_url(DEFAULT_URL))
    try:
        await broker.send(stream, [body])
    finally:
        await broker.close()


async def _delete(streams: list[str]) -> None:
    broker = RabbitStreams(StreamServer.from_url(DEFAULT_URL))
    try:
        for stream in streams:
            with contextlib.suppress(StreamError):  # one the worker never made
                await broker.delete(stream)
    finally:
        await broker.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    """This test's stream prefix; its streams are deleted at the end."""
    made = f"lf_test_{uuid.uuid4().hex[:8]}."
    yield made
    run_apart(_delete(streams_of(made)))


def euro_purchase(stream: str) -> bytes:
    """An FX desk's trade (the ingest tests' shape): EUR 100,000 bought at 1.25, today."""
    deal = json.loads(fx_trade(random.Random(1), 0, stream))
    now = datetime.now(UTC)
    deal.update(
        currency_pair="EUR/USD",
        direction="BUY",
        amount="100000.00",
        rate="1.25",
        counter_amount="125000.00",
        trade_time=now.isoformat().replace("+00:00", "Z"),
        value_date=now.date().isoformat(),
    )
    return json.dumps(deal).encode()


def test_an_fx_trade_moves_the_lcr_and_the_cash_shown_without_a_reload(
    db_url: str,
    prefix: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    browser: Any,
) -> None:
    query(
        db_url,
        "INSERT INTO ledgerflow.instruments (instrument, asset_class, hqla_level, currency,"
        " price) VALUES ('USD', 'currency', '1', 'USD', 1), ('EUR', 'currency', '1', 'USD', 1.10)",
    )
    query(db_url, "INSERT INTO ledgerflow.cash_positions VALUES ('treasury', 'USD', 1000000)")
    query(
        db_url,
        "INSERT INTO ledgerflow.treasury_balances (category, amount, currency, updated_by)"
        " VALUES ('retail_stable', 2000000, 'USD', 'test')",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = make_env(
        db_url,
        http_port=str(port),
        treasury="true",
        treasury_stream_prefix=prefix,
        treasury_control_stream=f"{prefix}control",
        treasury_normalised_stream=f"{prefix}normalised",
    )
    add_user(env, "tess", "treasury")
    stream = f"{prefix}fx"
    run_apart(_create(stream))
    worker = spawn(["worker"], env)
    spawn(["api"], env)
    eventually(lambda: answers(f"{base}/healthz"), 20, "the API to listen")

    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.goto(f"{base}/liquidity")
    page.fill("#name", "tess")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/liquidity")
    expect(page.locator("#lcr-value")).to_have_text("1,000.00 %")
    expect(page.locator("#cash-total")).to_have_text("1,000,000.00")
    expect(page.locator("#lcr .lcr-status").first).to_have_text("above the warning level")
    page.wait_for_selector('html[data-live="ready"]')  # the WebSocket listens
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    run_apart(_send(stream, euro_purchase(stream)))
    expect(page.locator("#lcr-value")).to_have_text("985.00 %", timeout=60_000)
    expect(page.locator("#cash-total")).to_have_text("985,000.00")
    expect(page.locator('#cash tr[data-currency="EUR"] td').nth(2)).to_have_text("110,000.00")
    assert page.evaluate("window.loadedOnce") is True
    (stored,) = query(db_url, "SELECT count(*) FROM ledgerflow.trades")[0]
    assert stored == 1
    worker.stop()  # before its streams are deleted: a reader would make them again

"""The console's treasury pages, signed in: the liquidity page shows the LCR exactly as
``lcr_now`` computes it, level by level, and lists what it could not count; the positions
filter and download; an adjustment added through the form moves the LCR shown, a refused
one marks its field and keeps what was typed; a viewer reads but may not adjust.

The book seeded, in USD: cash 50,000 USD + 9,000 EUR at 1.10 (GBP 500 has no rate); UST
1,000 at 100 (Level 1); XS2A 1,600 at 50 (Level 2A, 15 % haircut); DE2B 500 at EUR 20
(Level 2B equity, 50 %); MYSTERY, not in the reference data. Outflows: retail stable
200,000 at 5 % and non-financial corporates 50,000 at 40 %, so 30,000. HQLA = 159,900 +
68,000 + 5,500 = 233,400; LCR 7.78.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings
from ledgerflow.treasury.instruments import load_instruments, parse_instruments_csv
from ledgerflow.treasury.liquidity import lcr_now, set_balance
from ledgerflow.web.pages import amount, percent

from ..web import PASSWORD, csrf_of, signed_in

pytestmark = pytest.mark.integration
Conn = psycopg.AsyncConnection[Any]

INSTRUMENTS = """instrument,asset_class,issuer_type,hqla_level,haircut_category,currency,price
USD,currency,,1,,USD,1
EUR,currency,,1,,USD,1.10
GBP,currency,,1,,USD,
UST,bond,sovereign,1,,USD,100
XS2A,bond,corporate,2A,,USD,50
DE2B,equity,corporate,2B,equity,EUR,20
"""
POSITIONS = [
    ("rates", "UST", "1000"),
    ("credit", "XS2A", "1600"),
    ("equity", "DE2B", "500"),
    ("credit", "MYSTERY", "250"),
]
CASH = [("treasury", "USD", "50000"), ("treasury", "EUR", "9000"), ("treasury", "GBP", "500")]


@pytest.fixture
async def console(conn: Conn, db_url: str, redis_url: str) -> Any:
    """An app over the seeded book, with a treasurer and a viewer."""
    await conn.set_autocommit(True)
    await store.add_user(conn, "tess", Role.TREASURY, PASSWORD, "tess@example.com")
    await store.add_user(conn, "vic", Role.VIEWER, PASSWORD, "vic@example.com")
    await load_instruments(conn, parse_instruments_csv(INSTRUMENTS))
    for book, instrument, quantity in POSITIONS:
        await conn.execute(
            "INSERT INTO ledgerflow.positions (book, instrument, quantity) VALUES (%s, %s, %s)",
            (book, instrument, Decimal(quantity)),
        )
    for book, currency, cash in CASH:
        await conn.execute(
            "INSERT INTO ledgerflow.cash_positions (book, currency, amount) VALUES (%s, %s, %s)",
            (book, currency, Decimal(cash)),
        )
    await set_balance(conn, "retail_stable", Decimal("200000"), "treasurer")
    await set_balance(conn, "non_financial_corporate", Decimal("50000"), "treasurer")
    settings = load_settings(database_url=db_url, redis_url=redis_url, rates_cache_url=redis_url)
    return create_app(settings)


def as_person(app: Any, name: str, work: Callable[[TestClient], Any]) -> Any:
    client = signed_in(app, name)
    try:
        return work(client)
    finally:
        client.__exit__(None, None, None)


def get(app: Any, name: str, path: str) -> Any:
    return as_person(app, name, lambda client: client.get(path))


def shown_lcr(page: str) -> str:
    found = re.search(r'id="lcr-value"[^>]*>([^<]+)<', page)
    assert found, page
    return found[1]


def cell(page: str, label: str) -> str:
    """The figure after haircuts on the HQLA table's row ``label``."""
    found = re.search(rf"<td[^>]*>{re.escape(label)}</td>.*?data-bar-value>([^<]+)<", page, re.S)
    assert found, label
    return found[1]


async def test_the_liquidity_page_shows_the_lcr_exactly_and_what_it_could_not_count(
    console: Any, conn: Conn
) -> None:
    answer = await asyncio.to_thread(get, console, "vic", "/liquidity")
    assert answer.status_code == 200
    page = answer.text
    figures = await lcr_now(conn, datetime.now(UTC))
    assert figures.lcr == Decimal("7.78")
    assert shown_lcr(page) == percent(figures.lcr) == "778.00 %"
    assert "above the warning level" in page
    assert cell(page, "Level 1") == amount(figures.level1) == "159,900.00"
    assert cell(page, "Level 2A") == "68,000.00"
    assert cell(page, "Level 2B") == "5,500.00"
    assert 'id="hqla-total">233,400.00<' in page
    assert 'id="net-outflows">30,000.00<' in page
    assert 'data-currency="EUR"><td>EUR</td><td class="number" data-value="9000">9,000.00' in page
    uncounted = page[page.index('id="uncounted"') : page.index('id="hqla"')]
    assert 'data-uncounted="unknown"' in uncounted and "MYSTERY" in uncounted
    assert 'data-uncounted="unconvertible"' in uncounted and "GBP" in uncounted
    assert 'data-live-topics="trades lcr"' in page
    assert 'href="/liquidity" aria-current="page">Treasury</a>' in page


async def test_positions_filter_by_book_instrument_and_level_and_download_as_csv(
    console: Any,
) -> None:
    def work(client: TestClient) -> dict[str, Any]:
        pages = {
            "all": client.get("/liquidity/positions").text,
            "credit": client.get("/liquidity/positions?book=credit").text,
            "xs": client.get("/liquidity/positions?instrument=xs2").text,
            "unknown": client.get("/liquidity/positions?level=unknown").text,
        }
        return {
            **{k: re.findall(r'data-instrument="([^"]+)"', v) for k, v in pages.items()},
            "csv": client.get("/liquidity/positions?level=unknown&format=csv"),
            "bad": client.get("/liquidity/positions?level=3").status_code,
        }

    found = await asyncio.to_thread(as_person, console, "vic", work)
    assert sorted(found["all"]) == ["DE2B", "MYSTERY", "UST", "XS2A"]
    assert found["credit"] == ["MYSTERY", "XS2A"]
    assert found["xs"] == ["XS2A"]
    assert found["unknown"] == ["MYSTERY"]
    csv = found["csv"]
    assert csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]
    assert csv.text == "book,instrument,asset_class,level,quantity\ncredit,MYSTERY,,unknown,250\n"
    assert found["bad"] == 400


def form_of(client: TestClient, **fields: str) -> dict[str, str]:
    now = datetime.now(UTC)
    token = csrf_of(client.get("/liquidity/adjustments").text)
    return {
        "csrf_token": token,
        "action": "add",
        "kind": "instrument",
        "target": "XS2A",
        "level": "none",
        "haircut_category": "",
        "valid_from": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "valid_until": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "reason": "issuer downgraded",
        **fields,
    }


async def test_an_adjustment_added_through_the_form_changes_the_lcr_shown(
    console: Any, conn: Conn
) -> None:
    def work(client: TestClient) -> tuple[str, Any, str, str]:
        before = client.get("/liquidity").text
        added = client.post("/liquidity/adjustments", data=form_of(client), follow_redirects=False)
        return (
            before,
            added,
            client.get("/liquidity").text,
            client.get(added.headers["location"]).text,
        )

    before, added, after, listed = await asyncio.to_thread(as_person, console, "tess", work)
    assert added.status_code == 303
    assert shown_lcr(before) == "778.00 %"
    figures = await lcr_now(conn, datetime.now(UTC))
    assert figures.lcr == Decimal("5.513333")  # XS2A's 68,000 no longer counts
    assert shown_lcr(after) == percent(figures.lcr) == "551.3333 %"
    assert 'id="lcr-unadjusted"' in after and "778.00 %" in after  # without the adjustment
    in_force = listed[listed.index('id="in-force"') : listed.index('id="to-come"')]
    assert "XS2A" in in_force and "issuer downgraded" in in_force
    assert "778.00 % → <strong>551.3333 %</strong>" in in_force
    assert "End now" in in_force

    def end(client: TestClient) -> tuple[int, str]:
        page = client.get("/liquidity/adjustments").text
        (adjustment,) = re.findall(r'name="id" value="(\d+)"', page)
        ended = client.post(
            "/liquidity/adjustments",
            data={"csrf_token": csrf_of(page), "action": "end", "id": adjustment},
        )
        return ended.status_code, client.get("/liquidity").text

    status, restored = await asyncio.to_thread(as_person, console, "tess", end)
    assert status == 200  # after the redirect
    assert shown_lcr(restored) == "778.00 %"


async def test_a_refused_adjustment_marks_its_field_and_keeps_what_was_typed(
    console: Any,
) -> None:
    def work(client: TestClient) -> list[Any]:
        return [
            client.post("/liquidity/adjustments", data=form_of(client, **fields))
            for fields in (
                {"level": "2B", "reason": "typed by hand"},
                {"target": "NOSUCH"},
                {"valid_until": "yesterday-ish"},
            )
        ]

    category, target, until = await asyncio.to_thread(as_person, console, "tess", work)
    assert category.status_code == 422
    assert re.search(r'name="haircut_category" aria-invalid="true"', category.text)
    assert "typed by hand</textarea>" in category.text
    assert 'value="2B" selected' in category.text
    assert "a Level 2B asset&#39;s is one of rmbs, corporate_debt, equity" in category.text
    assert re.search(
        r'name="target" value="NOSUCH" maxlength="200" required aria-invalid', target.text
    )
    assert re.search(r'name="valid_until" value="yesterday-ish" required aria-invalid', until.text)


async def test_a_viewer_sees_no_form_and_may_not_post_one(console: Any, conn: Conn) -> None:
    def work(client: TestClient) -> tuple[str, int]:
        page = client.get("/liquidity/adjustments").text
        refused = client.post("/liquidity/adjustments", data=form_of(client))
        return page, refused.status_code

    page, status = await asyncio.to_thread(as_person, console, "vic", work)
    assert 'id="add"' not in page and 'action="/liquidity/adjustments"' not in page
    assert status == 403
    cursor = await conn.execute("SELECT count(*) FROM ledgerflow.treasury_adjustments")
    assert await cursor.fetchone() == (0,)

"""The console's pages in process: the overview, rejected messages, the rates explorer and
their CSV downloads, on the real PostgreSQL."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@pytest.fixture
async def ledger(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    """Two providers with transactions, 120 rejected messages, a lane with prices."""
    await store.add_user(conn, "vic", Role.VIEWER, PASSWORD)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value)"
            " VALUES ('Visa', 1000), ('Mastercard', 2000.5)"
        )
        await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value)"
            " VALUES (1, 0.1), (1, 0.2), (2, -0.5)"
        )
        await conn.execute(
            "INSERT INTO ledgerflow.rejected_messages"
            " (queue, message_id, reason, detail, body, properties, received_at)"
            " SELECT 'incoming_transactions', 'm-' || n,"
            " CASE WHEN n % 3 = 0 THEN 'invalid_json' ELSE 'unknown_provider' END,"
            " 'detail ' || n, convert_to('body ' || n, 'UTF8'), '{}', now()"
            " FROM generate_series(1, 120) AS n"
        )
        await conn.execute("INSERT INTO regions VALUES ('world', 'World', NULL)")
        await conn.execute(
            "INSERT INTO ports VALUES ('AAAAA', 'A', 'world'), ('BBBBB', 'B', 'world')"
        )
        await conn.execute(
            "INSERT INTO prices VALUES ('AAAAA', 'BBBBB', '2021-01-02', 10),"
            " ('AAAAA', 'BBBBB', '2021-01-02', 20), ('AAAAA', 'BBBBB', '2021-01-02', 33)"
        )
    return conn


@pytest.fixture
def client(ledger: Any, db_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = load_settings(database_url=db_url, rates_cache_url=redis_url, redis_url=redis_url)
    with TestClient(create_app(settings)) as made:
        form = made.get("/signin").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token
        made.post("/signin", data={"name": "vic", "password": PASSWORD, "csrf_token": token[1]})
        yield made


def rows_of(response: Any) -> list[dict[str, str]]:
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_the_overview_shows_balances_stored_and_published_exactly(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "1_Visa" in page.text and "1000.3" in page.text and "2000" in page.text
    assert "120 in all" in page.text  # rejected messages
    balances = rows_of(client.get("/", params={"table": "balances", "format": "csv"}))
    assert balances == [
        {"provider": "1_Visa", "published": "", "stored": "1000.3", "difference": ""},
        {"provider": "2_Mastercard", "published": "", "stored": "2000", "difference": ""},
    ]


def test_rejected_messages_filter_and_page(client: TestClient) -> None:
    first = client.get("/rejected", params={"reason": "invalid_json", "limit": 25})
    assert first.status_code == 200
    ids = [int(n) for n in re.findall(r'<td class="number">(\d+)</td>', first.text)]
    assert len(ids) == 25 and ids == sorted(ids, reverse=True)
    older = re.search(r'before=(\d+)">Older', first.text)
    assert older and int(older[1]) == ids[-1]
    second = client.get(
        "/rejected", params={"reason": "invalid_json", "limit": 25, "before": older[1]}
    )
    rest = [int(n) for n in re.findall(r'<td class="number">(\d+)</td>', second.text)]
    assert len(rest) == 15 and max(rest) < min(ids)  # 40 invalid_json in all
    everything = rows_of(
        client.get("/rejected", params={"reason": "invalid_json", "limit": 1000, "format": "csv"})
    )
    assert len(everything) == 40
    assert {row["reason"] for row in everything} == {"invalid_json"}
    assert everything[0]["body"].startswith("body ")


def test_the_rates_explorer_answers_and_says_which_field_is_wrong(client: TestClient) -> None:
    shown = client.get(
        "/explore/rates",
        params={
            "orig_code": "AAAAA",
            "dest_code": "world",
            "date_from": "2021-01-01",
            "date_to": "2021-01-03",
        },
    )
    assert shown.status_code == 200
    assert 'data-day="2021-01-02" data-price="21.0"' in shown.text
    wrong = client.get(
        "/explore/rates",
        params={
            "orig_code": "nowhere",
            "dest_code": "world",
            "date_from": "2021-01-01",
            "date_to": "2021-01-03",
        },
    )
    assert "no port or region 'nowhere'" in html.unescape(wrong.text)
    assert re.search(r'id="orig_code"[^>]*aria-invalid="true"', wrong.text)


def test_pages_show_times_and_averages_as_people_read_them(client: TestClient) -> None:
    rejected = client.get("/rejected").text
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", rejected)
    assert "+00:00" not in rejected  # ISO 8601 stays in the CSV
    params = {
        "orig_code": "AAAAA",
        "dest_code": "world",
        "date_from": "2021-01-01",
        "date_to": "2021-01-03",
    }
    shown = client.get("/explore/rates", params=params).text
    assert ">21.00</td>" in shown  # (10 + 20 + 33) / 3, to the cent
    table = rows_of(client.get("/explore/rates", params={**params, "format": "csv"}))
    assert table[1] == {"day": "2021-01-02", "count": "3", "price": "21.0"}


def test_the_reference_lists_no_answer_the_api_never_gives(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            described = operation["responses"].get("422", {}).get("description")
            assert described != "Validation Error", (method, path)  # ledgerflow says 400
    assert "HTTPValidationError" not in document.get("components", {}).get("schemas", {})
    reference = client.get("/docs").text
    assert "<code>GET /rates</code>" in reference  # backquotes read as code
    assert 'href="/rejected"' in reference  # the console's menu, signed in


def test_a_nul_in_any_text_field_is_refused_not_a_crash(client: TestClient) -> None:
    assert client.get("/rejected", params={"reason": "a\x00b"}).status_code == 400
    rates = client.get(
        "/rates",
        params={
            "orig_code": "A\x00",
            "dest_code": "world",
            "date_from": "2021-01-01",
            "date_to": "2021-01-02",
        },
    )
    assert rates.status_code == 400 and rates.json()["parameter"] == "orig_code"
    shown = client.get(
        "/explore/rates",
        params={
            "orig_code": "A\x00",
            "dest_code": "world",
            "date_from": "2021-01-01",
            "date_to": "2021-01-02",
        },
    )
    assert shown.status_code == 200 and "control characters" in shown.text

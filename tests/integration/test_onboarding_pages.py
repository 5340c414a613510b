"""The console's feed sections, signed in as each role: who sees which section, the feed
page's forms for the role that may use them, a form that names its wrong field, and the
reconciliation section's run, assignment and downloads."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.feeds.letters import Letters
from ledgerflow.feeds.loads import Load, detect, record_load
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings

from ..web import PASSWORD, csrf_of, signed_in

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
SECTIONS = ("/onboarding/administrators", "/onboarding/analysts", "/onboarding/reconciliation")


@pytest.fixture
async def console(conn: psycopg.AsyncConnection[Any], db_url: str, redis_url: str) -> Any:
    """An app with one detected feed and a person of each role."""
    await conn.set_autocommit(True)
    for name, role in (("olga", Role.OPERATOR), ("anna", Role.ANALYST), ("vic", Role.VIEWER)):
        await store.add_user(conn, name, role, PASSWORD, f"{name}@example.com")
    await record_load(conn, Load("eod", "staging.trades", 5, "succeeded", NOW, NOW), "t")
    await detect(conn, Letters("http://console.test"))
    settings = load_settings(database_url=db_url, redis_url=redis_url, rates_cache_url=redis_url)
    return create_app(settings)


def as_person(app: Any, name: str, work: Callable[[TestClient], Any]) -> Any:
    client = signed_in(app, name)
    try:
        return work(client)
    finally:
        client.__exit__(None, None, None)


def section_answers(client: TestClient) -> dict[str, int]:
    return {path: client.get(path).status_code for path in ("/onboarding", *SECTIONS)}


async def test_each_section_is_shown_and_served_only_to_its_roles(console: Any) -> None:
    def check(name: str) -> tuple[dict[str, int], list[str]]:
        def work(client: TestClient) -> tuple[dict[str, int], list[str]]:
            tabs = re.findall(r'<nav class="tabs".*?</nav>', client.get("/onboarding").text, re.S)
            return section_answers(client), re.findall(r'href="(/onboarding[^"]*)"', tabs[0])

        result: tuple[dict[str, int], list[str]] = as_person(console, name, work)
        return result

    viewer, viewer_tabs = await asyncio.to_thread(check, "vic")
    assert viewer == {"/onboarding": 200, **dict.fromkeys(SECTIONS, 403)}
    assert viewer_tabs == ["/onboarding"]
    operator, operator_tabs = await asyncio.to_thread(check, "olga")
    assert operator == {
        "/onboarding": 200,
        "/onboarding/administrators": 200,
        "/onboarding/analysts": 403,
        "/onboarding/reconciliation": 200,
    }
    assert operator_tabs == [
        "/onboarding",
        "/onboarding/administrators",
        "/onboarding/reconciliation",
    ]
    analyst, _ = await asyncio.to_thread(check, "anna")
    assert analyst["/onboarding/administrators"] == 403
    assert analyst["/onboarding/analysts"] == 200


async def test_the_feed_page_takes_each_section_through_its_own_form(console: Any) -> None:
    description = {
        "loader_name": "eod-loader",
        "frequency": "daily",
        "data_type": "trades",
        "upstream_app_id": "APP-1",
        "upstream_app_name": "Front office",
        "persistency_schema": "staging",
        "persistency_table": "trades",
        "regulatory": "trade",
    }

    def analyst_first(client: TestClient) -> tuple[str, int]:
        page = client.get("/onboarding/1").text
        refused = client.post(
            "/onboarding/1",
            data={**description, "action": "describe", "csrf_token": csrf_of(page)},
        )
        return page, refused.status_code

    analyst_page, analyst_refused = await asyncio.to_thread(
        as_person, console, "anna", analyst_first
    )
    assert 'id="describe"' not in analyst_page and 'id="review"' not in analyst_page
    assert analyst_refused == 403

    def operator(client: TestClient) -> tuple[str, int, str, str]:
        page = client.get("/onboarding/1").text
        token = csrf_of(page)
        wrong = client.post(
            "/onboarding/1",
            data={**description, "frequency": "", "action": "submit", "csrf_token": token},
        )
        done = client.post(
            "/onboarding/1",
            data={**description, "action": "submit", "csrf_token": token},
            follow_redirects=False,
        )
        return page, wrong.status_code, wrong.text, done.headers.get("location", "")

    page, wrong_status, wrong_page, location = await asyncio.to_thread(
        as_person, console, "olga", operator
    )
    assert 'id="describe"' in page
    # The feed's page lists its mail: to olga, waiting (no mail server in this test).
    mails = re.search(r'data-table="mails">(.*?)</table>', page, re.S)
    assert mails is not None and "please describe it" in mails[1]
    assert "olga@example.com" in mails[1] and "waiting" in mails[1]
    assert wrong_status == 422
    assert re.search(r'<select id="f-frequency" name="frequency" aria-invalid="true"', wrong_page)
    assert 'value="Front office"' in wrong_page  # what was typed is kept
    assert location == "/onboarding/1"

    def analyst_reviews(client: TestClient) -> str:
        page = client.get("/onboarding/1").text
        assert 'id="review"' in page and 'id="describe"' not in page
        client.post(
            "/onboarding/1",
            data={"action": "onboard", "used_by_models": "yes", "csrf_token": csrf_of(page)},
        )
        return client.get("/onboarding/1").text

    final = await asyncio.to_thread(as_person, console, "anna", analyst_reviews)
    assert "state-onboarded" in final
    trail = re.search(r'data-table="trail">(.*?)</table>', final, re.S)
    assert trail is not None
    actors = re.findall(r'<td class="nowrap">[^<]*</td><td>([^<]+)</td>', trail[1])
    assert actors == ["ledgerflow", "olga", "olga", "anna"]


async def test_the_reconciliation_section_runs_assigns_and_downloads(
    console: Any, conn: psycopg.AsyncConnection[Any]
) -> None:
    await conn.execute(
        "INSERT INTO ledgerflow.models (name, registered_by) VALUES ('m1', 't') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO ledgerflow.model_tables (model_id, table_name)"
        " SELECT id, 'md.quotes' FROM ledgerflow.models WHERE name = 'm1'"
    )

    def work(client: TestClient) -> tuple[str, str, bytes, int]:
        page = client.get("/onboarding/reconciliation").text
        token = csrf_of(page)
        client.post("/onboarding/reconciliation", data={"action": "reconcile", "csrf_token": token})
        ran = client.get("/onboarding/reconciliation").text
        finding = re.search(r'data-finding="(\d+)" data-kind="gap"', ran)
        assert finding, ran
        client.post(
            "/onboarding/reconciliation",
            data={
                "action": "finding",
                "finding": finding[1],
                "owner": "olga",
                "status": "investigating",
                "csrf_token": token,
            },
        )
        bad_model = client.post(
            "/onboarding/reconciliation",
            data={"action": "model", "name": "m2", "sql": "SELEKT 1", "csrf_token": token},
        )
        csv_text = client.get("/onboarding/reconciliation?format=csv").text
        pdf = client.get("/onboarding/reconciliation?format=pdf").content
        return ran, csv_text, pdf, bad_model.status_code

    ran, csv_text, pdf, bad_model = await asyncio.to_thread(as_person, console, "olga", work)
    assert "md.quotes" in ran and "m1" in ran
    lines = csv_text.strip().splitlines()
    assert len(lines) == 2 and "md.quotes" in lines[1] and "investigating" in lines[1]
    assert "olga" in lines[1]
    assert pdf.startswith(b"%PDF")
    assert bad_model == 422

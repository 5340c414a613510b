"""Lineage over HTTP, in process on the real PostgreSQL: rules managed by administrators
and tokens with rules:write, the lineage, trace and filtered pages, the reports read back,
and a rule change announced by webhook and shown in the notification log."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import psycopg
import pytest
from pypdf import PdfReader
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings
from ledgerflow.transactions.writer import BatchWriter

from ..web import PASSWORD, csrf_of, signed_in
from .conftest import take_term

pytestmark = pytest.mark.integration


class Hooks:
    """A real webhook receiver on a free port, keeping what it was sent."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    receiver = Hooks()
    yield receiver
    receiver.close()


@pytest.fixture
async def people(seeded: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    """An administrator, a viewer, and tokens with and without rules:write."""
    await store.add_user(seeded, "ada", Role.ADMIN, PASSWORD)
    await store.add_user(seeded, "vic", Role.VIEWER, PASSWORD)
    return {
        "writer": await store.create_token(seeded, "rules-bot", ["read", "rules:write"], "t"),
        "reader": await store.create_token(seeded, "reader", ["read"], "t"),
    }


def wait_for(check: Any, within: float, what: str) -> None:
    """Wait (in a synchronous test) until ``check()`` is true."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def app(people: dict[str, str], db_url: str, redis_url: str, hooks: Hooks) -> Any:
    settings = load_settings(
        database_url=db_url,
        rates_cache_url=redis_url,
        redis_url=redis_url,
        notify_webhook_urls=hooks.url,
    )
    return create_app(settings)


def test_rules_over_the_api_need_rules_write_and_say_where_a_condition_is_wrong(
    app: Any, people: dict[str, str], hooks: Hooks
) -> None:
    with TestClient(app) as client:
        writer = {"authorization": f"Bearer {people['writer']}"}
        reader = {"authorization": f"Bearer {people['reader']}"}
        rule = {
            "name": "big-values",
            "condition": "value > 900",
            "technical": "over the desk limit",
            "functional": "reviewed by risk",
        }
        assert client.post("/rules", json=rule).status_code == 401
        assert client.post("/rules", json=rule, headers=reader).status_code == 403
        created = client.post("/rules", json=rule, headers=writer)
        assert created.status_code == 201, created.text
        assert created.json()["version"] == 1 and created.json()["changed_by"] == "token:rules-bot"
        assert client.post("/rules", json=rule, headers=writer).status_code == 409
        broken = client.post(
            "/rules",
            json={**rule, "name": "broken", "condition": "value >\n  amount"},
            headers=writer,
        )
        assert broken.status_code == 422
        assert broken.json()["parameter"] == "condition"
        assert (broken.json()["line"], broken.json()["column"]) == (2, 3)
        disabled = client.patch("/rules/big-values", json={"enabled": False}, headers=writer)
        assert disabled.json()["change"] == "disabled" and disabled.json()["version"] == 2
        assert (
            client.patch("/rules/nothing", json={"enabled": False}, headers=writer).status_code
            == 404
        )
        history = client.get("/rules/big-values/history", headers=reader).json()
        assert [v["change"] for v in history] == ["disabled", "created"]
        listed = client.get("/rules", headers=reader).json()
        assert [r["name"] for r in listed["rules"]] == ["big-values"]
        assert any(b["reason"] == "invalid_json" for b in listed["built_in"])
        # Both changes were announced by webhook.
        wait_for(lambda: len(hooks.received) == 2, 10, "two webhook notifications")
        assert [h["event"] for h in hooks.received] == ["rule_changed", "rule_changed"]
        assert hooks.received[1]["detail"]["change"] == "disabled"


def test_an_administrator_manages_rules_in_the_console_and_a_viewer_only_reads(
    app: Any, hooks: Hooks
) -> None:
    admin = signed_in(app, "ada")
    try:
        page = admin.get("/lineage/rules")
        assert page.status_code == 200 and "Add a rule" in page.text
        form = {
            "csrf_token": csrf_of(page.text),
            "action": "add",
            "name": "refunds",
            "condition": "value < 0",
            "technical": "negative amounts",
            "functional": "refunds are booked elsewhere",
            "owner": "",
        }
        saved = admin.post("/lineage/rules", data=form, follow_redirects=False)
        assert saved.status_code == 303
        assert saved.headers["location"] == "/lineage/rules?name=refunds"
        shown = admin.get("/lineage/rules?name=refunds").text
        assert "refunds are booked elsewhere" in shown and "History of refunds" in shown
        bad = admin.post("/lineage/rules", data={**form, "name": "bad", "condition": "value >"})
        assert bad.status_code == 422
        assert 'id="rule-condition"' in bad.text and 'aria-invalid="true"' in bad.text
        assert "condition: syntax error" in bad.text
        no_csrf = admin.post("/lineage/rules", data={**form, "csrf_token": "x", "name": "other"})
        assert no_csrf.status_code == 403
        wait_for(lambda: len(hooks.received) == 1, 10, "a webhook notification")
        log = admin.get("/notifications")
        assert "rule_changed" in log.text and "sent" in log.text
        assert "rule refunds created (version 1)" in log.text
    finally:
        admin.__exit__(None, None, None)
    viewer = signed_in(app, "vic")
    try:
        page = viewer.get("/lineage/rules")
        assert page.status_code == 200 and "refunds" in page.text
        assert "Add a rule" not in page.text
        refused = viewer.post(
            "/lineage/rules",
            data={"csrf_token": csrf_of(page.text), "action": "disable", "name": "refunds"},
        )
        assert refused.status_code == 403
    finally:
        viewer.__exit__(None, None, None)


async def test_the_lineage_pages_and_reports_show_where_every_message_went(
    app: Any, seeded: psycopg.AsyncConnection[Any], people: dict[str, str]
) -> None:
    conn = seeded
    with TestClient(app) as client:
        writer = {"authorization": f"Bearer {people['writer']}"}
        added = client.post(
            "/rules",
            json={
                "name": "zurich-limit",
                "condition": "value > 900",
                "technical": "über Zürich",
                "functional": "checked by hand",
            },
            headers=writer,
        )
        assert added.status_code == 201, added.text
    batch = BatchWriter(conn, "incoming_transactions", "t", await take_term(conn), 1024)
    now = datetime.now(UTC)
    await batch.write(
        [
            Delivery(b'{"id": 1, "value": 5}', 1, False, now, "m-1"),
            Delivery(b'{"id": 1, "value": 901.5}', 2, False, now, "m-2"),
            Delivery(b"nope", 3, False, now, None),
        ]
    )

    def read() -> None:
        viewer = signed_in(app, "vic")
        try:
            page = viewer.get("/lineage")
            assert page.status_code == 200
            assert "<svg" in page.text and "filtered: zurich-limit v1" in page.text
            assert "rejected: invalid_json" in page.text
            assert viewer.get("/lineage?since=yesterday").status_code == 400
            traced = viewer.get("/lineage/trace", params={"key": "m-2"}).text
            assert "Filtered" in traced and "checked by hand" in traced and "901.5" in traced
            filtered = viewer.get("/lineage/filtered", params={"format": "csv"})
            rows = list(csv.DictReader(io.StringIO(filtered.text)))
            assert [(r["message_id"], r["value"], r["rule"]) for r in rows] == [
                ("m-2", "901.5", "zurich-limit")
            ]
            stages = viewer.get("/lineage/report", params={"format": "csv", "part": "stages"})
            counted = {
                (r["pipeline"], r["stage"]): r["count"]
                for r in csv.DictReader(io.StringIO(stages.text))
            }
            assert counted["transactions", "received"] == "3"
            assert counted["transactions", "stored"] == "1"
            pdf = viewer.get("/lineage/report", params={"format": "pdf"})
            assert pdf.headers["content-type"] == "application/pdf"
            text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
            assert "ledgerflow lineage report" in text and "Page 1 of" in text
            assert "filtered: zurich-limit v1" in text and "checked by hand" in text
            assert "über Zürich" in text
            assert "901.5" in text
            api = viewer.get("/trace/m-1").json()
            assert api["messages"][0]["transaction"]["value"] == "5"
            assert viewer.get("/trace/nothing").status_code == 404
            assert viewer.get("/stages").json()["transactions"]["filtered"][0]["count"] == 1
        finally:
            viewer.__exit__(None, None, None)

    await asyncio.to_thread(read)


async def test_a_comparison_run_on_demand_names_unexplained_rows_and_announces_them(
    app: Any, seeded: psycopg.AsyncConnection[Any], people: dict[str, str], hooks: Hooks
) -> None:
    conn = seeded
    await store.add_user(conn, "olga", Role.OPERATOR, PASSWORD)
    runner = await store.create_token(conn, "nightly", ["comparisons:run"], "t")
    batch = BatchWriter(conn, "incoming_transactions", "t", await take_term(conn), 1024)
    now = datetime.now(UTC)
    await batch.write([Delivery(b'{"id": 1, "value": 5}', 1, False, now, "m-1")])
    # A row written by something else, after ledgerflow's first: nothing explains it.
    cursor = await conn.execute(
        "INSERT INTO historical_transactions (provider_id, transaction_value)"
        " VALUES (2, 77) RETURNING id"
    )
    foreign = (await cursor.fetchone() or [0])[0]
    await conn.commit()

    def check() -> None:
        with TestClient(app) as client:
            auth = {"authorization": f"Bearer {runner}"}
            reader = {"authorization": f"Bearer {people['reader']}"}
            assert client.post("/comparisons", json={}, headers=reader).status_code == 403
            assert (
                client.post("/comparisons", json={"source": "nope"}, headers=auth).status_code
                == 404
            )
            made = client.post("/comparisons", json={}, headers=auth)
            assert made.status_code == 201, made.text
            result = made.json()
            assert result["unexplained"] == 1
            assert [(i["kind"], i["id"]) for i in result["items"]] == [("foreign", str(foreign))]
            listed = client.get("/comparisons", headers=reader).json()
            assert listed[0]["comparison_id"] == result["comparison_id"]
            wait_for(lambda: len(hooks.received) == 1, 10, "the comparison's notification")
            assert hooks.received[0]["event"] == "comparison_unexplained"
        viewer = signed_in(app, "vic")
        try:
            page = viewer.get("/lineage/comparisons")
            assert "Compare now" not in page.text
            refused = viewer.post(
                "/lineage/comparisons",
                data={"csrf_token": csrf_of(page.text), "source": "ledgerflow"},
            )
            assert refused.status_code == 403
        finally:
            viewer.__exit__(None, None, None)
        operator = signed_in(app, "olga")
        try:
            page = operator.get("/lineage/comparisons")
            ran = operator.post(
                "/lineage/comparisons",
                data={"csrf_token": csrf_of(page.text), "source": "ledgerflow"},
                follow_redirects=False,
            )
            assert ran.status_code == 303
            shown = operator.get(ran.headers["location"])
            assert "Run " in shown.text and str(foreign) in shown.text
            run_id = ran.headers["location"].rsplit("=", 1)[1]
            items = operator.get("/lineage/comparisons", params={"id": run_id, "format": "csv"})
            rows = list(csv.DictReader(io.StringIO(items.text)))
            assert [
                (r["kind"], r["id"], r["explained"]) for r in rows if r["explained"] == "False"
            ] == [("foreign", str(foreign), "False")]
            summary = operator.get(
                "/lineage/report", params={"format": "csv", "part": "comparisons"}
            )
            runs = list(csv.DictReader(io.StringIO(summary.text)))
            assert (runs[0]["comparison_id"], runs[0]["unexplained"]) == (run_id, "1")
            pdf = operator.get("/lineage/comparisons", params={"id": run_id, "format": "pdf"})
            text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
            assert f"ledgerflow comparison {run_id}" in text and str(foreign) in text
        finally:
            operator.__exit__(None, None, None)

    await asyncio.to_thread(check)

"""Onboarding a feed on the real PostgreSQL and a real SMTP server: each step checked
(role, the other section's fields, required fields, state, four eyes), recorded in the
trail with who took it, and mailed through the outbox, retried when the server refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.auth.model import ROLE_SCOPES, Identity, Role
from ledgerflow.auth.store import checked_email
from ledgerflow.feeds.letters import FEED_DETECTED, FEED_TO_REVIEW, Letters
from ledgerflow.feeds.loads import Load, detect, record_load
from ledgerflow.feeds.workflow import WorkflowError, take_step, trail
from ledgerflow.notifications.notify import SmtpMailer, own_connection, parse_smtp_url
from ledgerflow.notifications.outbox import Letter, Postman, Retries, deliver_due, enqueue
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings

from ..smtp import SmtpServer, start_smtp

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
LETTERS = Letters("https://console.test", admins=("dba-team@example.com",))
DESCRIPTION = {
    "loader_name": "murex-eod-loader",
    "frequency": "daily",
    "data_type": "trades",
    "upstream_app_id": "APP-0042",
    "upstream_app_name": "Murex",
    "persistency_schema": "staging",
    "persistency_table": "trades",
    "regulatory": "trade",
}


def person(name: str, role: Role) -> Identity:
    return Identity(name, "user", ROLE_SCOPES[role], role)


OLGA = person("olga", Role.OPERATOR)
ANNA = person("anna", Role.ANALYST)
VIC = person("vic", Role.VIEWER)
ADA = person("ada", Role.ADMIN)
BOB = person("bob", Role.ADMIN)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    controller, server = start_smtp()
    yield server
    controller.stop()


async def new_feed(conn: psycopg.AsyncConnection[Any], source: str = "murex-eod") -> int:
    """A feed detected from a first load of ``source``."""
    load = Load(source, "staging.trades", 10, "succeeded", NOW, NOW + timedelta(minutes=1))
    await record_load(conn, load, "token:loader")
    found = await detect(conn, LETTERS)
    assert len(found) == 1
    return found[0].feed_id


async def refused(
    conn: psycopg.AsyncConnection[Any],
    feed_id: int,
    step: str,
    who: Identity,
    given: dict[str, Any],
) -> WorkflowError:
    with pytest.raises(WorkflowError) as caught:
        await take_step(conn, feed_id, step, who, given, LETTERS)
    return caught.value


async def outbox_rows(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT event, recipients, status, attempts FROM ledgerflow.outbox ORDER BY id"
    )
    return await cursor.fetchall()


async def test_a_feed_goes_from_detected_to_onboarded_with_every_step_in_its_trail(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await conn.set_autocommit(True)
    await store.add_user(conn, "olga", Role.OPERATOR, None, "olga@example.com")
    await store.add_user(conn, "anna", Role.ANALYST, None, "anna@example.com")
    await store.add_user(conn, "vic", Role.VIEWER, None, "vic@example.com")
    feed_id = await new_feed(conn)

    described = await take_step(conn, feed_id, "describe", OLGA, DESCRIPTION, LETTERS)
    assert described.state == "described" and described.values["described_by"] == "olga"
    submitted = await take_step(conn, feed_id, "submit", OLGA, {}, LETTERS)
    assert submitted.state == "in_review"
    onboarded = await take_step(
        conn, feed_id, "onboard", ANNA, {"used_by_models": True, "review_note": "ok"}, LETTERS
    )
    assert onboarded.state == "onboarded"
    assert onboarded.values["reviewed_by"] == "anna"
    assert onboarded.values["used_by_models"] is True

    steps = await trail(conn, feed_id)
    assert [(t.actor, t.from_state, t.to_state, t.changes["step"]) for t in steps] == [
        ("ledgerflow", None, "detected", "detect"),
        ("olga", "detected", "described", "describe"),
        ("olga", "described", "in_review", "submit"),
        ("anna", "in_review", "onboarded", "onboard"),
    ]
    assert steps[1].changes["frequency"] == [None, "daily"]
    # The administrators hear of the new feed (the users of the role with an address and
    # the configured ones; a viewer does not), the analysts of the review, the
    # administrators of the outcome.
    assert await outbox_rows(conn) == [
        ("feed_detected", ["olga@example.com", "dba-team@example.com"], "pending", 0),
        ("feed_to_review", ["anna@example.com"], "pending", 0),
        ("feed_decided", ["olga@example.com", "dba-team@example.com"], "pending", 0),
    ]


async def test_each_refused_step_says_why(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)
    feed_id = await new_feed(conn)

    wrong_role = await refused(conn, feed_id, "describe", VIC, DESCRIPTION)
    assert wrong_role.status == 403 and "administrators" in str(wrong_role)
    analyst_describes = await refused(conn, feed_id, "describe", ANNA, DESCRIPTION)
    assert analyst_describes.status == 403
    missing = {k: v for k, v in DESCRIPTION.items() if k != "frequency"}
    no_frequency = await refused(conn, feed_id, "describe", OLGA, missing)
    assert (no_frequency.status, no_frequency.field) == (422, "frequency")
    bad_table = await refused(
        conn, feed_id, "describe", OLGA, {**DESCRIPTION, "persistency_table": "a b"}
    )
    assert (bad_table.status, bad_table.field) == (422, "persistency_table")
    admin_decides = await refused(
        conn, feed_id, "describe", OLGA, {**DESCRIPTION, "used_by_models": True}
    )
    assert (admin_decides.status, admin_decides.field) == (403, "used_by_models")
    too_early = await refused(conn, feed_id, "submit", OLGA, {})
    assert (too_early.status, too_early.field) == (409, "state")
    not_yet = await refused(conn, feed_id, "onboard", ANNA, {"used_by_models": True})
    assert not_yet.status == 409

    await take_step(conn, feed_id, "describe", ADA, DESCRIPTION, LETTERS)
    await take_step(conn, feed_id, "submit", ADA, {}, LETTERS)
    analyst_changes_admin_field = await refused(
        conn, feed_id, "onboard", ANNA, {"used_by_models": True, "loader_name": "other"}
    )
    assert (analyst_changes_admin_field.status, analyst_changes_admin_field.field) == (
        403,
        "loader_name",
    )
    operator_onboards = await refused(conn, feed_id, "onboard", OLGA, {"used_by_models": True})
    assert operator_onboards.status == 403
    no_answer = await refused(conn, feed_id, "onboard", ANNA, {})
    assert (no_answer.status, no_answer.field) == (422, "used_by_models")
    reject_without_note = await refused(conn, feed_id, "reject", ANNA, {"used_by_models": False})
    assert (reject_without_note.status, reject_without_note.field) == (422, "review_note")
    four_eyes = await refused(conn, feed_id, "onboard", ADA, {"used_by_models": True})
    assert four_eyes.status == 403 and "four eyes" in str(four_eyes)
    unknown = await refused(conn, 10**9, "describe", OLGA, DESCRIPTION)
    assert unknown.status == 404

    # Nothing refused left a trace: the feed is where the last allowed step put it.
    steps = await trail(conn, feed_id)
    assert [t.to_state for t in steps] == ["detected", "described", "in_review"]
    on_hold = await take_step(
        conn, feed_id, "hold", ANNA, {"review_note": "waiting for the vendor"}, LETTERS
    )
    assert on_hold.state == "on_hold"
    # A review's answers come with the review: the hold's note is not the rejection's.
    reused_note = await refused(conn, feed_id, "reject", ANNA, {"used_by_models": False})
    assert (reused_note.status, reused_note.field) == (422, "review_note")
    resumed = await take_step(conn, feed_id, "resume", ANNA, {}, LETTERS)
    assert resumed.state == "in_review"


async def test_four_eyes_hold_for_everyone_who_described_or_submitted_the_feed(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await conn.set_autocommit(True)
    feed_id = await new_feed(conn)
    await take_step(conn, feed_id, "describe", ADA, DESCRIPTION, LETTERS)
    # Describing again without changing anything would only make bob the describer.
    nothing = await refused(conn, feed_id, "describe", BOB, {})
    assert nothing.status == 422 and "nothing to change" in str(nothing)
    await take_step(conn, feed_id, "describe", BOB, {"data_type": "fx trades"}, LETTERS)
    await take_step(conn, feed_id, "submit", ADA, {}, LETTERS)
    for person in (ADA, BOB):  # both admins: both may review, neither this feed
        blocked = await refused(conn, feed_id, "onboard", person, {"used_by_models": True})
        assert blocked.status == 403 and "four eyes" in str(blocked), person.name
    done = await take_step(conn, feed_id, "onboard", ANNA, {"used_by_models": True}, LETTERS)
    assert done.state == "onboarded"


async def test_persistency_names_are_stored_as_postgresql_reads_them(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await conn.set_autocommit(True)
    feed_id = await new_feed(conn)
    named = {**DESCRIPTION, "persistency_schema": "Staging", "persistency_table": '"Trades"'}
    record = await take_step(conn, feed_id, "describe", OLGA, named, LETTERS)
    assert (record.values["persistency_schema"], record.values["persistency_table"]) == (
        "staging",
        "Trades",
    )


async def test_a_mail_the_server_refuses_is_retried_and_each_attempt_is_logged(
    conn: psycopg.AsyncConnection[Any], db_url: str, smtp: SmtpServer
) -> None:
    await conn.set_autocommit(True)
    await new_feed(conn)
    smtp.inbox.refuse = 2
    mailer = SmtpMailer(parse_smtp_url(smtp.url), timeout=5)
    retries = Retries(attempts=5, first=0.2)
    connect = own_connection(db_url)

    first = await deliver_due(connect, mailer, "ledgerflow@example.com", retries=retries)
    assert [(s.event, s.status) for s in first] == [(FEED_DETECTED, "pending")]
    assert "451" in (first[0].error or "")
    assert await deliver_due(connect, mailer, "ledgerflow@example.com", retries=retries) == []
    await asyncio.sleep(0.25)  # the first retry is due after 0.2 s
    second = await deliver_due(connect, mailer, "ledgerflow@example.com", retries=retries)
    assert [s.status for s in second] == ["pending"]
    await asyncio.sleep(0.45)  # then after twice as long
    third = await deliver_due(connect, mailer, "ledgerflow@example.com", retries=retries)
    assert [s.status for s in third] == ["sent"]

    assert len(smtp.inbox.envelopes) == 1
    assert "https://console.test/onboarding/" in smtp.inbox.text()
    assert 'href="https://console.test/onboarding/' in smtp.inbox.html()
    cursor = await conn.execute(
        "SELECT status, error FROM ledgerflow.notifications WHERE event = %s ORDER BY id",
        (FEED_DETECTED,),
    )
    log = await cursor.fetchall()
    assert [row[0] for row in log] == ["failed", "failed", "sent"]
    assert log[0][1].startswith("attempt 1 of 5:") and "451" in log[0][1]
    assert await outbox_rows(conn) == [
        (FEED_DETECTED, ["dba-team@example.com"], "sent", 3),
    ]


async def test_a_mail_whose_attempts_run_out_is_abandoned_not_dropped(
    conn: psycopg.AsyncConnection[Any], db_url: str, smtp: SmtpServer
) -> None:
    await conn.set_autocommit(True)
    await new_feed(conn)
    smtp.inbox.refuse = 10
    mailer = SmtpMailer(parse_smtp_url(smtp.url), timeout=5)
    retries = Retries(attempts=2, first=0.05)
    connect = own_connection(db_url)
    await deliver_due(connect, mailer, "ledgerflow@example.com", retries=retries)
    await asyncio.sleep(0.1)
    last = await deliver_due(connect, mailer, "ledgerflow@example.com", retries=retries)
    assert [s.status for s in last] == ["abandoned"]
    cursor = await conn.execute("SELECT status, last_error FROM ledgerflow.outbox")
    status, error = await cursor.fetchone() or ("", "")
    assert status == "abandoned" and "451" in error
    cursor = await conn.execute(
        "SELECT error FROM ledgerflow.notifications ORDER BY id DESC LIMIT 1"
    )
    row = await cursor.fetchone()
    assert row is not None and "no attempt left" in row[0]


async def test_a_feed_without_anyone_to_tell_says_so_in_the_notification_log(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await conn.set_autocommit(True)
    load = Load("lonely", "staging.x", 1, "succeeded", NOW, NOW)
    await record_load(conn, load, "token:loader")
    await detect(conn, Letters("https://console.test"))
    cursor = await conn.execute(
        "SELECT target, status, error FROM ledgerflow.notifications WHERE event = %s",
        (FEED_DETECTED,),
    )
    target, status, error = await cursor.fetchone() or ("", "", "")
    assert (target, status) == ("(nobody)", "failed") and "no recipient" in error
    assert await outbox_rows(conn) == []


async def test_the_api_kicks_the_postman_so_the_analysts_mail_leaves_at_once(
    conn: psycopg.AsyncConnection[Any], db_url: str, redis_url: str, smtp: SmtpServer
) -> None:
    await conn.set_autocommit(True)
    feed_id = await new_feed(conn)
    describer = await store.create_token(conn, "dba", ["feeds:describe"], "t")  # no read
    reader = await store.create_token(conn, "reader", ["read"], "t")
    settings = load_settings(
        database_url=db_url,
        redis_url=redis_url,
        rates_cache_url=redis_url,
        smtp_url=smtp.url,
        feeds_analysts="surveillance@example.com",
        console_url="https://console.test",
    )

    def call() -> tuple[int, dict[str, Any], int, dict[str, Any]]:
        with TestClient(create_app(settings)) as client:
            url = f"/feeds/{feed_id}/steps/describe"
            denied = client.post(
                url, json=DESCRIPTION, headers={"authorization": f"Bearer {reader}"}
            )
            auth = {"authorization": f"Bearer {describer}"}
            missing = client.post(url, json={"loader_name": "x"}, headers=auth)
            assert client.post(url, json=DESCRIPTION, headers=auth).status_code == 200
            made = client.post(f"/feeds/{feed_id}/steps/submit", json={}, headers=auth)
            assert made.status_code == 200 and made.json()["state"] == "in_review"
            shown = client.get(
                f"/feeds/{feed_id}", headers={"authorization": f"Bearer {reader}"}
            ).json()
            return denied.status_code, missing.json(), missing.status_code, shown

    denied, missing, missing_status, shown = await asyncio.to_thread(call)
    assert denied == 403
    assert missing_status == 422 and missing["parameter"] == "frequency"
    assert [t["to"] for t in shown["trail"]] == ["detected", "described", "in_review"]
    assert shown["trail"][1]["actor"] == "token:dba"
    assert shown["steps"] == []  # a reader takes no step
    # The analysts' mail was sent when the API process closed at the latest.
    subjects = [smtp.inbox.message(i)["Subject"] for i in range(len(smtp.inbox.envelopes))]
    assert any("ready for review" in s for s in subjects), subjects
    cursor = await conn.execute(
        "SELECT status FROM ledgerflow.outbox WHERE event = %s", (FEED_TO_REVIEW,)
    )
    assert await cursor.fetchall() == [("sent",)]


async def test_the_worker_postman_retries_what_is_due(
    conn: psycopg.AsyncConnection[Any], db_url: str, smtp: SmtpServer
) -> None:
    await conn.set_autocommit(True)
    await new_feed(conn)
    smtp.inbox.refuse = 1
    async with AsyncConnectionPool(db_url, open=False, kwargs={"autocommit": True}) as pool:
        postman = Postman(
            pool.connection,
            SmtpMailer(parse_smtp_url(smtp.url), timeout=5),
            "ledgerflow@example.com",
            retries=Retries(attempts=3, first=0.1),
        )
        rounds = asyncio.create_task(postman.forever(0.05))
        try:
            for _ in range(100):
                if smtp.inbox.envelopes:
                    break
                await asyncio.sleep(0.05)
        finally:
            rounds.cancel()
            await asyncio.gather(rounds, return_exceptions=True)
            await postman.close()
    assert len(smtp.inbox.envelopes) == 1


async def test_a_mail_that_cannot_be_written_is_abandoned_and_the_others_still_go(
    conn: psycopg.AsyncConnection[Any], db_url: str, smtp: SmtpServer
) -> None:
    await conn.set_autocommit(True)
    await enqueue(conn, Letter("test", "good one", "text"), ["anna@example.com"])
    # An address with a line break (stored before addresses were checked) cannot be a
    # header: that mail is abandoned, not retried for ever, and holds up nothing.
    await enqueue(conn, Letter("test", "bad one", "text"), ["x@y.z\r\nBcc: evil@example.com"])
    await enqueue(conn, Letter("test", "after", "text"), ["olga@example.com"])
    mailer = SmtpMailer(parse_smtp_url(smtp.url), timeout=5)
    sent = await deliver_due(own_connection(db_url), mailer, "ledgerflow@example.com")
    assert [(s.status, s.recipients[0][:6]) for s in sent] == [
        ("sent", "anna@e"),
        ("abandoned", "x@y.z\r"),
        ("sent", "olga@e"),
    ]
    assert len(smtp.inbox.envelopes) == 2
    assert await deliver_due(own_connection(db_url), mailer, "ledgerflow@example.com") == []
    cursor = await conn.execute(
        "SELECT status, error FROM ledgerflow.notifications WHERE subject = 'bad one'"
    )
    (status, error) = await cursor.fetchone() or ("", "")
    assert status == "failed" and "cannot be written as an email" in error


async def test_a_user_email_must_be_one_address() -> None:
    assert checked_email(" anna@example.com ") == "anna@example.com"
    for bad in ("x@y.z\r\nBcc: evil@example.com", "a@example.com, b@example.com", "anna"):
        with pytest.raises(ValueError, match="email"):
            checked_email(bad)

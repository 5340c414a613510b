"""Notifications against real parts: an SMTP server (aiosmtpd) and an HTTP receiver started
by the test, the notification log in PostgreSQL. Channels that fail are recorded, never
raised."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs

from ledgerflow.notifications.notify import (
    Attempt,
    Connect,
    Notifier,
    NotifySettings,
    notification_log,
    own_connection,
    parse_notify_settings,
    shared_connection,
)

from ..conftest import free_port
from ..smtp import PASSWORD, USER, SmtpServer, start_smtp

pytestmark = pytest.mark.integration

RECIPIENTS = "Treasury <treasury@example.com>, compliance@example.com"
# aiosmtpd warns when it requires AUTH without TLS; here the test is both ends of the line.
AUTH_WITHOUT_TLS = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """An SMTP server taking any message."""
    controller, server = start_smtp()
    yield server
    controller.stop()


@pytest.fixture
def smtp_with_auth() -> Iterator[SmtpServer]:
    """An SMTP server that takes mail only from USER signed in with PASSWORD."""
    controller, server = start_smtp(with_auth=True)
    yield server
    controller.stop()


# A webhook receiver.


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server recording each POST and answering ``status`` after ``delay`` s."""

    port: int = 0
    status: int = 204
    delay: float = 0.0
    requests: list[Request] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            state.requests.append(
                Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            time.sleep(state.delay)
            self.send_response(state.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads the requests; stderr stays quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


# Helpers.


def settings(
    smtp_url: str | None = None,
    webhook_urls: str = "",
    mail_to: str = RECIPIENTS,
    timeout: float = 5,
) -> NotifySettings:
    return parse_notify_settings(
        smtp_url=smtp_url,
        mail_from="Ledgerflow <ledgerflow@example.com>",
        mail_to=mail_to if smtp_url else "",
        webhook_urls=webhook_urls,
        timeout=timeout,
    )


async def logged(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every row of the notification log, oldest first, read in a transaction of its own."""
    async with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        await cursor.execute("SELECT * FROM ledgerflow.notifications ORDER BY id")
        rows = await cursor.fetchall()
    await conn.commit()
    return rows


DETAIL = {"rule": "fees.small", "version": 3, "threshold": Decimal("0.10")}


# Email.


async def test_an_email_reaches_the_server_with_subject_recipients_detail_and_a_sent_row(
    smtp: SmtpServer, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    notifier = Notifier(settings(smtp.url), own_connection(db_url))

    attempts = await notifier.notify(
        "rule_changed", "Rule fees.small changed", "ada changed the rule fees.small.", DETAIL
    )

    target = "Treasury <treasury@example.com>, compliance@example.com"
    assert attempts == [Attempt("email", target, "sent")]
    [envelope] = smtp.inbox.envelopes
    assert envelope.mail_from == "ledgerflow@example.com"
    assert envelope.rcpt_tos == ["treasury@example.com", "compliance@example.com"]
    message = smtp.inbox.message()
    assert message["Subject"] == "[ledgerflow] Rule fees.small changed"
    assert message["From"] == "Ledgerflow <ledgerflow@example.com>"
    assert message["To"] == target
    assert message["Date"] and message["Message-ID"]
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert smtp.inbox.text() == (
        "ada changed the rule fees.small.\n\nrule: fees.small\nversion: 3\nthreshold: 0.10\n"
    )
    [row] = await logged(conn)
    assert row["event"] == "rule_changed"
    assert row["subject"] == "Rule fees.small changed"
    assert row["body"] == "ada changed the rule fees.small."
    assert (row["channel"], row["target"], row["status"], row["error"]) == (
        "email",
        target,
        "sent",
        None,
    )
    assert row["detail"] == {"rule": "fees.small", "version": 3, "threshold": "0.10"}


async def test_accented_text_arrives_intact_and_a_subject_stays_one_line(
    smtp: SmtpServer, db_url: str
) -> None:
    notifier = Notifier(settings(smtp.url), own_connection(db_url))

    await notifier.notify("test", "Règle modifiée\r\nBcc: intruder@example.com", "Écart: 5 €", None)

    message = smtp.inbox.message()
    assert message["Subject"] == "[ledgerflow] Règle modifiée Bcc: intruder@example.com"
    assert message["Bcc"] is None
    assert smtp.inbox.envelopes[0].rcpt_tos == ["treasury@example.com", "compliance@example.com"]
    assert smtp.inbox.text() == "Écart: 5 €\n"


@AUTH_WITHOUT_TLS
async def test_smtp_signs_in_with_the_user_and_percent_encoded_password_of_the_url(
    smtp_with_auth: SmtpServer, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # Both ends of the line are this test: it says so, or the password would not be sent.
    url = (
        f"smtp://alerts%40example.com:p%40ss%3Aw%2Frd%25@127.0.0.1:{smtp_with_auth.port}"
        "?starttls=false"
    )
    notifier = Notifier(settings(url), own_connection(db_url))

    [attempt] = await notifier.notify("test", "Signed in", "body", None)

    assert attempt.status == "sent", attempt.error
    assert [(login, password) for _, login, password in smtp_with_auth.inbox.sign_ins] == [
        (USER, PASSWORD)
    ]
    assert len(smtp_with_auth.inbox.envelopes) == 1
    assert [row["status"] for row in await logged(conn)] == ["sent"]


@AUTH_WITHOUT_TLS
async def test_a_password_is_never_sent_to_a_server_that_offers_no_tls(
    smtp_with_auth: SmtpServer, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    url = f"smtp://alerts%40example.com:p%40ss%3Aw%2Frd%25@127.0.0.1:{smtp_with_auth.port}"
    notifier = Notifier(settings(url), own_connection(db_url))

    [attempt] = await notifier.notify("test", "Not in clear", "body", None)

    assert attempt.status == "failed"
    assert "STARTTLS" in (attempt.error or "") or "TLS" in (attempt.error or "")
    assert smtp_with_auth.inbox.sign_ins == []  # the password never left
    assert smtp_with_auth.inbox.envelopes == []


@AUTH_WITHOUT_TLS
async def test_smtp_with_a_wrong_password_is_a_failed_row_without_the_password(
    smtp_with_auth: SmtpServer, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    url = f"smtp://alerts%40example.com:wrong-secret@127.0.0.1:{smtp_with_auth.port}?starttls=false"
    notifier = Notifier(settings(url), own_connection(db_url))

    [attempt] = await notifier.notify("test", "Refused", "body", None)

    assert attempt.status == "failed"
    assert smtp_with_auth.inbox.envelopes == []
    [row] = await logged(conn)
    assert row["status"] == "failed"
    assert "535" in row["error"]  # the server's "authentication failed"
    assert "wrong-secret" not in row["error"]
    assert "wrong-secret" not in row["target"]


async def test_an_smtp_port_where_nothing_listens_is_a_failed_row_and_webhooks_still_go(
    receiver: Receiver, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    notifier = Notifier(
        settings(f"smtp://127.0.0.1:{free_port()}", receiver.url()), own_connection(db_url)
    )

    with capture_logs() as logs:
        attempts = await notifier.notify("publishing_stopped", "Worker stopped", "w-1", None)

    assert [(a.channel, a.status) for a in attempts] == [("email", "failed"), ("webhook", "sent")]
    assert len(receiver.requests) == 1
    rows = await logged(conn)
    assert [(r["channel"], r["status"]) for r in rows] == [("email", "failed"), ("webhook", "sent")]
    assert "connect" in rows[0]["error"].lower()
    assert rows[1]["error"] is None
    failed = [entry for entry in logs if entry["event"] == "notify.failed"]
    assert [(f["channel"], f["notify_event"]) for f in failed] == [("email", "publishing_stopped")]


# Webhooks.


async def test_a_webhook_receives_the_json_document_with_decimals_as_exact_strings(
    receiver: Receiver, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    url = receiver.url("/hooks/ledgerflow").replace("//", "//hook-user:hook%20pass@", 1)
    notifier = Notifier(settings(webhook_urls=f"{url}?token=s3cret"), own_connection(db_url))
    before = datetime.now(UTC)

    [attempt] = await notifier.notify(
        "comparison_unexplained",
        "3 unexplained rows",
        "The comparison of 2024-05-01 found 3 rows it cannot explain.",
        {"comparison": 41, "unexplained": 3, "difference": Decimal("1234.5600")},
    )

    assert attempt.status == "sent", attempt.error
    [request] = receiver.requests
    assert request.path == "/hooks/ledgerflow?token=s3cret"
    assert request.headers["content-type"] == "application/json"
    credentials = base64.b64decode(request.headers["authorization"].removeprefix("Basic "))
    assert credentials == b"hook-user:hook pass"
    document = json.loads(request.body)
    at = document.pop("at")
    assert document == {
        "event": "comparison_unexplained",
        "subject": "3 unexplained rows",
        "body": "The comparison of 2024-05-01 found 3 rows it cannot explain.",
        "detail": {"comparison": 41, "unexplained": 3, "difference": "1234.5600"},
        "source": "ledgerflow",
    }
    assert at.endswith("Z")
    # The document gives milliseconds.
    assert before - timedelta(milliseconds=1) <= datetime.fromisoformat(at) <= datetime.now(UTC)
    [row] = await logged(conn)
    # The log names the webhook without its user, password and query.
    assert row["target"] == receiver.url(
        "/hooks/…"
    )  # the secret-bearing rest of the path is not logged
    assert attempt.target == row["target"]
    assert row["detail"]["difference"] == "1234.5600"


async def test_a_webhook_answering_500_is_a_failed_row_with_the_status_and_notify_returns(
    receiver: Receiver, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    receiver.status = 500
    notifier = Notifier(settings(webhook_urls=receiver.url()), own_connection(db_url))

    [attempt] = await notifier.notify("test", "Test", "body", None)

    assert attempt.status == "failed"
    assert attempt.error is not None and "HTTP 500" in attempt.error
    [row] = await logged(conn)
    assert (row["channel"], row["status"], row["error"]) == ("webhook", "failed", attempt.error)


async def test_a_webhook_slower_than_the_timeout_is_a_failed_row_saying_so(
    receiver: Receiver, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    receiver.delay = 1.5
    notifier = Notifier(settings(webhook_urls=receiver.url(), timeout=0.3), own_connection(db_url))
    started = time.monotonic()

    [attempt] = await notifier.notify("test", "Slow", "body", None)

    assert time.monotonic() - started < 1.2
    assert attempt.status == "failed"
    assert attempt.error == "timed out after 0.3 s"
    assert [row["status"] for row in await logged(conn)] == ["failed"]


async def test_every_webhook_gets_the_event_at_once_and_each_has_its_row(
    receiver: Receiver, db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    receiver.delay = 0.4
    urls = f"{receiver.url('/a')}, {receiver.url('/b')} {receiver.url('/c')}"
    notifier = Notifier(settings(webhook_urls=urls), own_connection(db_url))
    started = time.monotonic()

    attempts = await notifier.notify("test", "Three", "body", None)

    # Sent one after the other, three would take 1.2 s.
    assert time.monotonic() - started < 1.0
    assert sorted(r.path for r in receiver.requests) == ["/a", "/b", "/c"]
    assert [a.target for a in attempts] == [receiver.url(p) for p in ("/a", "/b", "/c")]
    assert [r["target"] for r in await logged(conn)] == [a.target for a in attempts]


# The log.


@pytest.fixture(params=["pool", "own connection", "shared connection"])
async def connect(
    request: pytest.FixtureRequest, db_url: str
) -> AsyncIterator[Callable[[psycopg.AsyncConnection[Any]], Connect]]:
    """Each way the API, the worker and the CLI give the notifier its connections."""
    if request.param == "pool":
        async with AsyncConnectionPool(
            db_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
        ) as pool:
            yield lambda _conn: pool.connection
    elif request.param == "own connection":
        yield lambda _conn: own_connection(db_url)
    else:
        yield shared_connection


async def test_the_log_is_newest_first_and_pages_backwards(
    receiver: Receiver,
    conn: psycopg.AsyncConnection[Any],
    connect: Callable[[psycopg.AsyncConnection[Any]], Connect],
) -> None:
    receiver.status = 200
    notifier = Notifier(settings(webhook_urls=receiver.url()), connect(conn))
    for event in ("rule_changed", "comparison_unexplained", "publishing_stopped"):
        await notifier.notify(event, f"about {event}", "body", {"n": 1})
    await conn.commit()

    first = await notification_log(conn, limit=2, before=None)
    second = await notification_log(conn, limit=2, before=first[-1]["id"])

    assert [r["event"] for r in first] == ["publishing_stopped", "comparison_unexplained"]
    assert [r["event"] for r in second] == ["rule_changed"]
    assert first[0]["at"] >= first[1]["at"] >= second[0]["at"]
    assert set(first[0]) == {
        "id",
        "at",
        "event",
        "channel",
        "target",
        "status",
        "error",
        "subject",
    }
    assert first[0]["subject"] == "about publishing_stopped"
    assert (first[0]["channel"], first[0]["target"], first[0]["status"]) == (
        "webhook",
        receiver.url(),
        "sent",
    )


async def test_no_channel_configured_sends_nothing_and_records_nothing(
    db_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    sent: list[object] = []

    class Recording:
        async def send(self, message: EmailMessage) -> None:
            sent.append(message)

        async def post(self, url: str, document: bytes) -> None:
            sent.append(document)

    notifier = Notifier(settings(), own_connection(db_url), mailer=Recording(), webhook=Recording())

    assert not notifier.configured
    assert await notifier.notify("test", "Nobody", "body", {"n": 1}) == []
    assert sent == []
    assert await logged(conn) == []


async def test_a_log_that_cannot_be_written_is_logged_and_notify_still_answers(
    receiver: Receiver,
) -> None:
    unreachable = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    notifier = Notifier(settings(webhook_urls=receiver.url()), own_connection(unreachable))

    with capture_logs() as logs:
        [attempt] = await notifier.notify("test", "Unrecorded", "body", None)

    assert attempt.status == "sent"
    assert len(receiver.requests) == 1
    [failure] = [entry for entry in logs if entry["event"] == "notify.record_failed"]
    assert failure["attempts"] == [("webhook", receiver.url(), "sent")]
    assert "cannot connect" in failure["error"]

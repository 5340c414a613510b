"""Mail that must arrive: written to ``ledgerflow.outbox`` in the transaction of the change
it tells of, sent after the commit, retried with growing delays until the mail server
takes it or its attempts run out.

Each attempt, taken or failed, is a row of the notification log (``ledgerflow.notifications``),
so a person sees in the console that a mail is late and why. A mail whose attempts ran out
is ``abandoned``: still in the outbox with its last error, never dropped in silence.

Sending is at least once: a process that dies after the server took a mail and before
its row says so sends it again at the next round. Senders on several instances share
the outbox safely (``FOR UPDATE SKIP LOCKED``): each due mail is tried by one of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledgerflow.db.connections import DatabaseError
from ledgerflow.db.queries import Queries
from ledgerflow.notifications.notify import (
    Connect,
    Mailer,
    compose_email,
    failure_reason,
    json_text,
)

log = structlog.get_logger(__name__)
QUERIES = Queries.of("ledgerflow.notifications")


@dataclass(frozen=True)
class Letter:
    """A mail as written to the outbox: its plain text, and HTML where a template gave one."""

    event: str
    subject: str
    text: str
    html: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Retries:
    """How often a mail is tried: after ``first`` seconds, then twice as long each time
    (at most ``longest``), ``attempts`` times in all."""

    attempts: int = 10
    first: float = 30.0
    longest: float = 3600.0

    def delay(self, attempts_made: int) -> timedelta:
        """How long to wait after the ``attempts_made``-th failed attempt."""
        return timedelta(seconds=min(self.first * 2 ** (attempts_made - 1), self.longest))


@dataclass(frozen=True)
class Sent:
    """What became of one mail in one round."""

    mail_id: int
    event: str
    recipients: tuple[str, ...]
    status: str  # sent, pending (will be tried again) or abandoned
    error: str | None = None


async def enqueue(
    conn: psycopg.AsyncConnection[Any], letter: Letter, recipients: list[str]
) -> int | None:
    """Put ``letter`` in the outbox for ``recipients`` (in the caller's transaction, so it
    is sent exactly when the change it tells of is committed); return its id.

    Without any recipient there is nobody to send it to: that is recorded in the
    notification log as a failure saying so, and None is returned.
    """
    unique = list(dict.fromkeys(r for r in recipients if r))
    detail = None if letter.detail is None else Jsonb(letter.detail, dumps=json_text)
    if not unique:
        await conn.execute(
            QUERIES["record_attempt"],
            {
                "event": letter.event,
                "subject": letter.subject,
                "body": letter.text,
                "channel": "email",
                "target": "(nobody)",
                "status": "failed",
                "error": "no recipient: give the users of the role an email address, "
                "or list addresses in the configuration",
                "detail": detail,
            },
        )
        log.warning("outbox.no_recipient", notify_event=letter.event, subject=letter.subject)
        return None
    cursor = await conn.execute(
        QUERIES["enqueue_mail"],
        {
            "event": letter.event,
            "recipients": unique,
            "subject": letter.subject,
            "text_body": letter.text,
            "html_body": letter.html,
            "detail": detail,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def deliver_due(
    connect: Connect,
    mailer: Mailer,
    mail_from: str,
    *,
    retries: Retries = Retries(),
    send_timeout: float = 10.0,
    secrets: tuple[str, ...] = (),
    limit: int = 20,
) -> list[Sent]:
    """Try every mail that is due (at most ``limit``), oldest first; return what became
    of each. Each mail is its own transaction: its attempt updates it and adds a row to
    the notification log, and what one mail does never undoes another's."""
    results: list[Sent] = []
    async with connect() as conn:
        for _ in range(limit):
            async with conn.transaction():
                async with conn.cursor(row_factory=dict_row) as cursor:
                    await cursor.execute(QUERIES["due_mail"], {"limit": 1})
                    mail = await cursor.fetchone()
                if mail is None:
                    break
                results.append(
                    await _attempt(conn, mail, mailer, mail_from, retries, send_timeout, secrets)
                )
    return results


async def _attempt(
    conn: psycopg.AsyncConnection[Any],
    mail: dict[str, Any],
    mailer: Mailer,
    mail_from: str,
    retries: Retries,
    send_timeout: float,
    secrets: tuple[str, ...],
) -> Sent:
    recipients = tuple(mail["recipients"])
    made = mail["attempts"] + 1
    error: str | None = None
    unsendable = False
    try:
        message = compose_email(
            mail_from,
            recipients,
            mail["subject"],
            mail["text_body"],
            mail["html_body"],
            datetime.now(UTC),
            mail["event"],
        )
    except (ValueError, TypeError) as exc:  # a header no mail may carry: never sendable
        error, unsendable = f"cannot be written as an email: {exc}"[:500], True
    else:
        try:
            async with asyncio.timeout(send_timeout):
                await mailer.send(message)
        except Exception as exc:
            error = failure_reason(exc, send_timeout, secrets)
    if error is None:
        status, next_at = "sent", None
    elif unsendable or made >= retries.attempts:
        status, next_at = "abandoned", None
    else:
        status, next_at = "pending", datetime.now(UTC) + retries.delay(made)
    await conn.execute(
        QUERIES["mail_attempted"],
        {"id": mail["id"], "status": status, "next_at": next_at, "error": error},
    )
    shown = error
    if error is not None:
        shown = f"attempt {made} of {retries.attempts}: {error}; " + (
            f"next at {next_at:%H:%M:%S} UTC" if next_at else "no attempt left"
        )
    await conn.execute(
        QUERIES["record_attempt"],
        {
            "event": mail["event"],
            "subject": mail["subject"],
            "body": mail["text_body"],
            "channel": "email",
            "target": ", ".join(recipients),
            "status": "sent" if error is None else "failed",
            "error": shown,
            "detail": None if mail["detail"] is None else Jsonb(mail["detail"], dumps=json_text),
        },
    )
    event = {"mail": mail["id"], "notify_event": mail["event"], "attempt": made}
    if error is None:
        log.info("outbox.sent", **event)
    elif status == "abandoned":
        log.error("outbox.abandoned", error=error, **event)
    else:
        log.warning("outbox.retry", error=error, next_at=next_at, **event)
    return Sent(mail["id"], mail["event"], recipients, status, error)


class Postman:
    """Delivers the outbox: ``kick()`` after a commit that wrote mail (it goes out at once,
    in the background), ``forever()`` in the one process that retries what is due.
    Without a mailer (no SMTP server configured) mail waits in the outbox."""

    def __init__(
        self,
        connect: Connect,
        mailer: Mailer | None,
        mail_from: str,
        *,
        retries: Retries = Retries(),
        send_timeout: float = 10.0,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.connect = connect
        self.mailer = mailer
        self.mail_from = mail_from
        self.retries = retries
        self.timeout = send_timeout
        self.secrets = secrets
        self._task: asyncio.Task[None] | None = None
        self._again = False

    async def deliver(self) -> list[Sent]:
        """Deliver what is due now, round after round until nothing is; return it all."""
        if self.mailer is None:
            return []
        done: list[Sent] = []
        while True:
            sent = await deliver_due(
                self.connect,
                self.mailer,
                self.mail_from,
                retries=self.retries,
                send_timeout=self.timeout,
                secrets=self.secrets,
            )
            done.extend(sent)
            if not sent:
                return done

    def kick(self) -> None:
        """Deliver what is due in the background (once more if a round is under way)."""
        if self.mailer is None:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._rounds(), name="outbox")

    async def _rounds(self) -> None:
        while True:
            self._again = False
            try:
                await self.deliver()
            except (psycopg.Error, DatabaseError, OSError) as exc:
                log.warning("outbox.deliver_failed", error=str(exc))
            if not self._again:
                return

    async def forever(self, every: float) -> None:
        """Deliver what is due every ``every`` seconds until cancelled; a database that
        cannot answer is logged and asked again at the next turn."""
        while True:
            self.kick()
            if self._task is not None:
                await asyncio.shield(self._task)
            await asyncio.sleep(every)

    async def close(self) -> None:
        """Let a round under way finish."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


async def outbox(
    conn: psycopg.AsyncConnection[Any],
    *,
    event_prefix: str = "",
    detail: dict[str, Any] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest mails (those whose event starts with ``event_prefix`` and whose detail
    holds ``detail``), newest first:
    ``id``, ``event``, ``recipients``, ``subject``, ``status``, ``attempts``,
    ``created_at``, ``sent_at``, ``next_attempt_at``, ``last_error``, ``detail``."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            QUERIES["outbox"],
            {
                "prefix": event_prefix,
                "detail": None if detail is None else Jsonb(detail),
                "limit": limit,
            },
        )
        return await cursor.fetchall()

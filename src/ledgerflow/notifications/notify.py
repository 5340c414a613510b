"""Telling people of events by email and by webhook, and keeping a log of every attempt.

A ``Notifier`` sends one event to every configured channel at once: one email to all the
recipients over SMTP, one JSON POST to each webhook. Each delivery attempt becomes a row
of ``ledgerflow.notifications``, sent or failed with the reason. Telling people is never
worth failing the work that has something to tell: a channel that fails, or a log that
cannot be written, is logged and recorded where possible, never raised.

Where the rows are written is given as a ``Connect``: a callable returning an async
context manager that yields a connection. ``pool.connection`` of a
``psycopg_pool.AsyncConnectionPool`` is one (the API process); ``own_connection(url)``
opens a connection for each record (the worker, the CLI); ``shared_connection(conn)``
borrows one that nobody else holds in a transaction.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any, Literal, Protocol
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import aiosmtplib
import httpx2
import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledgerflow.core import ConfigError
from ledgerflow.db.connections import connect as connect_to
from ledgerflow.db.queries import Queries

__all__ = [
    "COMPARISON_UNEXPLAINED",
    "PUBLISHING_STOPPED",
    "RULE_CHANGED",
    "TEST",
    "Attempt",
    "Connect",
    "HttpWebhook",
    "Mailer",
    "Notifier",
    "NotifySettings",
    "SmtpMailer",
    "SmtpServer",
    "Webhook",
    "WebhookRefused",
    "build_email",
    "compose_email",
    "email_text",
    "failure_reason",
    "json_text",
    "notification_log",
    "own_connection",
    "parse_addresses",
    "parse_notify_settings",
    "parse_smtp_url",
    "shared_connection",
    "webhook_document",
    "webhook_target",
]

log = structlog.get_logger(__name__)
QUERIES = Queries.of("ledgerflow.notifications")

# The events ledgerflow tells people of; ``event`` is free text, these are the ones it uses.
RULE_CHANGED = "rule_changed"
COMPARISON_UNEXPLAINED = "comparison_unexplained"
PUBLISHING_STOPPED = "publishing_stopped"
TEST = "test"

SOURCE = "ledgerflow"
SUBJECT_PREFIX = "[ledgerflow]"
# What a failure's reason may hold in the log: enough to act on, never a whole HTML page.
_MAX_ERROR = 500
_MAX_ANSWER = 200
# A deliberately plain address check: the mail server has the last word, this catches
# a list separated by the wrong character or a name without a domain.
_ADDRESS = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+$")
# "Name <address>" or '"Name, with comma" <address>'.
_NAMED = re.compile(r'(?:"(?P<quoted>[^"]*)"|(?P<plain>[^"<>]*?))\s*<(?P<address>[^<>]*)>')
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}

Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]
"""Where the log is written: each call yields a connection for one short transaction."""


# Configuration.


@dataclass(frozen=True)
class SmtpServer:
    """An SMTP server as its URL gives it: ``smtp://`` (STARTTLS as asked) or ``smtps://``
    (TLS from the first byte), with the credentials to sign in, if any."""

    host: str
    port: int
    implicit_tls: bool
    # True: STARTTLS or fail; False: never; None: when the server offers it.
    starttls: bool | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NotifySettings:
    """Where notifications go. No SMTP URL and no webhook: notifications are off.

    Build it with ``parse_notify_settings``, which checks every value; the URLs keep their
    secrets, so they are left out of the representation.
    """

    smtp_url: str | None = field(repr=False)
    mail_from: str
    mail_to: tuple[str, ...]
    webhook_urls: tuple[str, ...] = field(repr=False)
    timeout: float

    @property
    def smtp(self) -> SmtpServer | None:
        """The SMTP server, or None when email is off."""
        return None if self.smtp_url is None else parse_smtp_url(self.smtp_url)

    @property
    def configured(self) -> bool:
        """Whether any channel is configured."""
        return self.smtp_url is not None or bool(self.webhook_urls)


def parse_smtp_url(url: str, variable: str = "LEDGERFLOW_NOTIFY_SMTP_URL") -> SmtpServer:
    """The server of ``smtp://user:password@host:port?starttls=true`` or
    ``smtps://user:password@host:port``; raise ConfigError naming ``variable`` otherwise.

    The user and password may be percent-encoded (``%40`` for ``@``, ``%3A`` for ``:``);
    messages never repeat the URL, since it holds the password.
    """

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"{variable}: {reason}")

    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise refuse("not a URL") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise refuse("scheme must be smtp or smtps")
    implicit_tls = parts.scheme == "smtps"
    host = parts.hostname
    if not host:
        raise refuse("no host")
    port = _port(parts, refuse) or (465 if implicit_tls else 25)
    if parts.path not in ("", "/"):
        raise refuse("a path means nothing to SMTP; give scheme://user:password@host:port")
    starttls: bool | None = None
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "starttls":
            raise refuse(f"unknown parameter {name!r} (known: starttls)")
        if implicit_tls:
            raise refuse("starttls does not apply to smtps, which is TLS from the start")
        if value.lower() in _TRUE:
            starttls = True
        elif value.lower() in _FALSE:
            starttls = False
        else:
            raise refuse(f"starttls must be true or false, not {value!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise refuse("a password needs a user name")
    if username and not password:
        raise refuse("a user name needs a password (user:password@host)")
    if username and starttls is None and not implicit_tls:
        # A password is never sent in clear: a server that does not offer STARTTLS (or
        # someone between that strips the offer) is refused, unless the URL says
        # ?starttls=false.
        starttls = True
    return SmtpServer(host, port, implicit_tls, starttls, username, password)


def webhook_target(url: str) -> str:
    """The webhook URL as the log shows it: without user, password, query and fragment,
    and with no more of the path than its first segment."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "(not a URL)"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 needs its brackets back
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    # Only the first segment of the path: services that sign nothing keep their secret in
    # the rest of it (/services/T000/B000/XXXX), and everyone signed in reads the log.
    first, _, rest = parts.path.lstrip("/").partition("/")
    path = parts.path if not netloc else f"/{first}/…" if rest else f"/{first}" * bool(first)
    return SplitResult(parts.scheme, netloc, path, "", "").geturl()


def _parse_webhook_url(url: str, variable: str) -> str:
    def refuse(reason: str) -> ConfigError:
        # The target form names the URL without handing its secrets to the log.
        return ConfigError(f"{variable}: {webhook_target(url)!r}: {reason}")

    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"{variable}: an entry is not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("scheme must be http or https")
    if not parts.hostname:
        raise refuse("no host")
    _port(parts, refuse)
    try:
        httpx2.URL(url)  # what the client will make of it, checked now rather than at 3 am
    except (httpx2.InvalidURL, ValueError):
        raise refuse("not a valid URL") from None
    return url


def _port(parts: SplitResult, refuse: Callable[[str], ConfigError]) -> int | None:
    try:
        port = parts.port
    except ValueError:
        raise refuse("port must be a number from 1 to 65535") from None
    if port == 0:
        raise refuse("port must be a number from 1 to 65535")
    return port


def _address(value: str, variable: str) -> str:
    # A hand-written reading, as the standard library's parsers of this Python guess at
    # malformed lists instead of refusing them.
    named = _NAMED.fullmatch(value.strip())
    if named:
        name = named["quoted"] if named["quoted"] is not None else named["plain"].strip()
        address = named["address"].strip()
    else:
        name, address = "", value.strip()
    try:
        if not _ADDRESS.fullmatch(address):
            raise ValueError(address)
        # The standard library formats the header: quotes a name that needs them, and
        # refuses what no header may hold (line breaks, control characters).
        return str(Address(display_name=name, addr_spec=address))
    except (ValueError, HeaderParseError):
        raise ConfigError(f"{variable}: {value.strip()!r} is not an email address") from None


def _split_addresses(text: str) -> list[str]:
    """``text`` cut at the commas that are not inside a quoted name."""
    pieces, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            pieces.append(current)
            current = ""
        else:
            current += char
    pieces.append(current)
    return [piece.strip() for piece in pieces if piece.strip()]


def parse_addresses(text: str | Iterable[str], variable: str) -> tuple[str, ...]:
    """The addresses of a comma-separated list (``Name <a@example.com>`` too), each
    checked; raise ConfigError naming ``variable`` at the first that is not one."""
    listed = [text] if isinstance(text, str) else list(text)
    return tuple(_address(piece, variable) for item in listed for piece in _split_addresses(item))


def parse_notify_settings(
    *,
    smtp_url: str | None,
    mail_from: str,
    mail_to: str | Iterable[str],
    webhook_urls: str | Iterable[str],
    timeout: float,
    prefix: str = "LEDGERFLOW_NOTIFY_",
) -> NotifySettings:
    """Check and build the settings; raise ConfigError naming the variable at fault.

    ``mail_to`` is a comma-separated list of addresses (``Name <a@example.com>`` too),
    ``webhook_urls`` a list separated by commas or spaces; either may be given as a list.
    Variables are named ``prefix`` + ``SMTP_URL``, ``MAIL_FROM``, ``MAIL_TO``,
    ``WEBHOOK_URLS`` and ``TIMEOUT``.
    """
    smtp_url = smtp_url.strip() if smtp_url and smtp_url.strip() else None
    if smtp_url is not None:
        parse_smtp_url(smtp_url, f"{prefix}SMTP_URL")
    sender = _address(mail_from, f"{prefix}MAIL_FROM")
    recipients = parse_addresses(mail_to, f"{prefix}MAIL_TO")
    if smtp_url is not None and not recipients:
        raise ConfigError(f"{prefix}MAIL_TO: needed when {prefix}SMTP_URL is set")
    if recipients and smtp_url is None:
        raise ConfigError(f"{prefix}MAIL_TO: set, but no {prefix}SMTP_URL to send through")
    texts = [webhook_urls] if isinstance(webhook_urls, str) else list(webhook_urls)
    urls = [u for text in texts for u in re.split(r"[\s,]+", text) if u]
    webhooks = tuple(dict.fromkeys(_parse_webhook_url(u, f"{prefix}WEBHOOK_URLS") for u in urls))
    if not timeout > 0:
        raise ConfigError(f"{prefix}TIMEOUT: must be more than 0 seconds")
    return NotifySettings(smtp_url, sender, recipients, webhooks, float(timeout))


# What is sent.


def _json_default(value: object) -> object:
    # Amounts travel as strings: a float would round them, and every reader can parse
    # a decimal string exactly.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    # Anything else as its text, rather than losing the notification to a TypeError.
    return str(value)


def json_text(value: object) -> str:
    """JSON with Decimal amounts as exact strings and dates in ISO 8601."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _plain(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return json_text(value)


def email_text(body: str, detail: dict[str, Any] | None) -> str:
    """The email's text: the body, then the detail as ``key: value`` lines."""
    text = body.rstrip() + "\n"
    if detail:
        text += "\n" + "".join(f"{key}: {_plain(value)}\n" for key, value in detail.items())
    return text


def build_email(
    settings: NotifySettings,
    subject: str,
    body: str,
    detail: dict[str, Any] | None,
    at: datetime,
    event: str | None = None,
) -> EmailMessage:
    """The plain-text UTF-8 email of one notification, to every recipient at once."""
    return compose_email(
        settings.mail_from, settings.mail_to, subject, email_text(body, detail), None, at, event
    )


def compose_email(
    mail_from: str,
    recipients: Iterable[str],
    subject: str,
    text: str,
    html: str | None,
    at: datetime,
    event: str | None = None,
) -> EmailMessage:
    """A UTF-8 email to every recipient at once: ``text`` as its plain-text part, and
    ``html`` as the alternative a mail reader shows when it can."""
    message = EmailMessage()
    # A header is one line: a subject with a line break would end the header block.
    message["Subject"] = f"{SUBJECT_PREFIX} {' '.join(subject.split())}"
    message["From"] = mail_from
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(at.astimezone(UTC))
    # make_msgid would otherwise look up this machine's name, which can take seconds.
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    if event:
        # Lets mail rules sort notifications without parsing subjects.
        message["X-Ledgerflow-Event"] = " ".join(event.split())
    # Quoted-printable keeps accented text intact through servers without 8BITMIME.
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def webhook_document(
    event: str, subject: str, body: str, detail: dict[str, Any] | None, at: datetime
) -> bytes:
    """The JSON a webhook receives; Decimal values become strings, exact."""
    document = {
        "event": event,
        "subject": subject,
        "body": body,
        "detail": detail or {},
        "at": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "source": SOURCE,
    }
    return json_text(document).encode("utf-8")


# The ports to the outside world, and their adapters.


class Mailer(Protocol):
    """Sends an email; raises if the server did not take it."""

    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the mail server, for the recipients in its headers."""
        ...


class Webhook(Protocol):
    """POSTs a JSON document; raises unless the receiver answered 2xx."""

    async def post(self, url: str, document: bytes) -> None:
        """POST ``document`` (UTF-8 JSON) to ``url``."""
        ...


class WebhookRefused(Exception):
    """The webhook answered, but not with 2xx."""


class SmtpMailer:
    """A ``Mailer`` over SMTP (aiosmtplib): one connection per email, since notifications
    are rare and a kept connection would only time out at the server between them."""

    def __init__(self, server: SmtpServer, timeout: float) -> None:
        self.server = server
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        """Connect, secure and sign in as the URL says, then send ``message``."""
        await aiosmtplib.send(
            message,
            hostname=self.server.host,
            port=self.server.port,
            username=self.server.username,
            password=self.server.password,
            use_tls=self.server.implicit_tls,
            start_tls=self.server.starttls,
            timeout=self.timeout,
        )


class HttpWebhook:
    """A ``Webhook`` over HTTP (httpx2). A user and password in the URL are sent as basic
    authentication; redirects are not followed, so a moved webhook shows up as failed."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def post(self, url: str, document: bytes) -> None:
        """POST ``document`` with ``content-type: application/json``."""
        async with httpx2.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            response = await client.post(
                url,
                content=document,
                headers={"content-type": "application/json", "user-agent": SOURCE},
            )
        if not response.is_success:
            answer = " ".join(response.text[:_MAX_ANSWER].split())
            status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            raise WebhookRefused(f"{status}: {answer}" if answer else status)


# Where the log is written.


def own_connection(url: str, connect_timeout: int = 5) -> Connect:
    """A ``Connect`` that opens a connection of its own (autocommit) for each record and
    closes it afterwards: for processes without a pool, such as the worker or the CLI."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await connect_to(url, autocommit=True, connect_timeout=connect_timeout)
        async with conn:
            yield conn

    return opened


def shared_connection(conn: psycopg.AsyncConnection[Any]) -> Connect:
    """A ``Connect`` lending ``conn``, one notification at a time.

    The record is written in a transaction of its own, so ``conn`` must not be inside
    another transaction when a notification is sent (the record would then share its
    fate); an autocommit connection, or one used only between transactions, is right.
    """
    lock = asyncio.Lock()

    @asynccontextmanager
    async def lent() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with lock:
            yield conn

    return lent


# Sending.


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt on one channel, as recorded in the log."""

    channel: Literal["email", "webhook"]
    target: str
    status: Literal["sent", "failed"]
    error: str | None = None

    @property
    def sent(self) -> bool:
        """Whether the channel took the notification."""
        return self.status == "sent"


def failure_reason(error: Exception, timeout: float, secrets: Iterable[str] = ()) -> str:
    """Why a send failed, in a line the log can keep: no secret, no whole HTML page."""
    if isinstance(error, TimeoutError) and not str(error):
        return f"timed out after {timeout:g} s"
    text = str(error).strip()
    reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    # A library may quote the URL or the credentials back; the log must not keep them.
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, "***")
    return reason[:_MAX_ERROR]


class Notifier:
    """Sends events to every configured channel and records each attempt.

    ``connect`` says where the log is written (see ``Connect``); ``mailer`` and
    ``webhook`` replace the SMTP and HTTP adapters, for tests. The settings alone decide
    which channels are on: a ``mailer`` without an SMTP URL sends nothing.
    """

    def __init__(
        self,
        settings: NotifySettings,
        connect: Connect,
        *,
        mailer: Mailer | None = None,
        webhook: Webhook | None = None,
    ) -> None:
        self.settings = settings
        self.connect = connect
        smtp = settings.smtp
        self.mailer: Mailer | None = None
        if smtp is not None:
            self.mailer = mailer if mailer is not None else SmtpMailer(smtp, settings.timeout)
        self.webhook: Webhook = webhook if webhook is not None else HttpWebhook(settings.timeout)
        self._secrets = tuple(
            s for s in (smtp.password if smtp else None, *settings.webhook_urls) if s
        )

    @property
    def configured(self) -> bool:
        """Whether any channel is configured (otherwise ``notify`` does nothing)."""
        return self.settings.configured

    async def notify(
        self, event: str, subject: str, body: str, detail: dict[str, Any] | None = None
    ) -> list[Attempt]:
        """Send the event to every channel at once and record each attempt; return them
        (the email first, then the webhooks in the configured order).

        Never raises because a channel failed or the log could not be written: both are
        logged (``notify.failed``, ``notify.record_failed``). With no channel configured,
        nothing is sent, nothing recorded, and the answer is ``[]``.
        """
        if not self.configured:
            return []
        at = datetime.now(UTC)
        sends: list[Awaitable[Attempt]] = []
        if self.mailer is not None:
            message = build_email(self.settings, subject, body, detail, at, event)
            target = ", ".join(self.settings.mail_to)
            sends.append(self._attempt(event, "email", target, self.mailer.send(message)))
        document = webhook_document(event, subject, body, detail, at)
        for url in self.settings.webhook_urls:
            sends.append(
                self._attempt(
                    event, "webhook", webhook_target(url), self.webhook.post(url, document)
                )
            )
        attempts = list(await asyncio.gather(*sends))
        await self._record(event, subject, body, detail, attempts)
        return attempts

    async def _attempt(
        self,
        event: str,
        channel: Literal["email", "webhook"],
        target: str,
        sending: Awaitable[None],
    ) -> Attempt:
        try:
            async with asyncio.timeout(self.settings.timeout):
                await sending
        except Exception as exc:
            error = failure_reason(exc, self.settings.timeout, self._secrets)
            log.warning(
                "notify.failed", notify_event=event, channel=channel, target=target, error=error
            )
            return Attempt(channel, target, "failed", error)
        log.info("notify.sent", notify_event=event, channel=channel, target=target)
        return Attempt(channel, target, "sent")

    async def _record(
        self,
        event: str,
        subject: str,
        body: str,
        detail: dict[str, Any] | None,
        attempts: list[Attempt],
    ) -> None:
        rows = [
            {
                "event": event,
                "subject": subject,
                "body": body,
                "channel": a.channel,
                "target": a.target,
                "status": a.status,
                "error": a.error,
                "detail": None if detail is None else Jsonb(detail, dumps=json_text),
            }
            for a in attempts
        ]
        try:
            # A database that hangs must not hold up the work that had news to tell.
            async with (
                asyncio.timeout(self.settings.timeout),
                self.connect() as conn,
                conn.transaction(),
            ):
                await conn.cursor().executemany(QUERIES["record_attempt"], rows)
        except Exception as exc:
            log.error(
                "notify.record_failed",
                notify_event=event,
                attempts=[(a.channel, a.target, a.status) for a in attempts],
                error=failure_reason(exc, self.settings.timeout, self._secrets),
            )


# Reading the log.


async def notification_log(
    conn: psycopg.AsyncConnection[Any], limit: int = 100, before: int | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` attempts, newest first, each a flat record (``id``, ``at``,
    ``event``, ``channel``, ``target``, ``status``, ``error``, ``subject``) ready for a
    table or a CSV row. ``before``: the ``id`` of the last row of the previous page."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["notification_log"], {"limit": limit, "before": before})
        return await cursor.fetchall()

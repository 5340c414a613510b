"""A real SMTP server (aiosmtpd) for the tests: it keeps what it receives, can require a
signed-in user, and can refuse the first messages (451) to exercise retries."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .conftest import free_port

USER, PASSWORD = "alerts@example.com", "p@ss:w/rd%"


@dataclass
class Inbox:
    """What the SMTP server received, and who signed in."""

    envelopes: list[Envelope] = field(default_factory=list)
    sign_ins: list[tuple[str, str, str]] = field(default_factory=list)
    refuse: int = 0  # how many messages to refuse (451) before taking any

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 mailbox busy, try again later"
        self.envelopes.append(envelope)
        return "250 OK"

    def text(self, index: int = 0) -> str:
        """The message's text, with the line ends of the wire (CRLF) read as newlines."""
        message = self.message(index)
        part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
        assert part is not None
        content = part.get_content()
        assert isinstance(content, str)
        return content.replace("\r\n", "\n")

    def html(self, index: int = 0) -> str:
        """The message's HTML part."""
        part = self.message(index).get_body(preferencelist=("html",))
        assert part is not None
        content = part.get_content()
        assert isinstance(content, str)
        return content

    def message(self, index: int = 0) -> EmailMessage:
        raw = self.envelopes[index].original_content
        assert isinstance(raw, bytes)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.sign_ins.append((mechanism, login, password))
        # handled=False: aiosmtpd answers the client (535 on failure) itself.
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


def start_smtp(**options: Any) -> tuple[Controller, SmtpServer]:
    inbox = Inbox()
    port = free_port()
    if options.pop("with_auth", False):
        options.update(authenticator=inbox.authenticate, auth_required=True, auth_require_tls=False)
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, server_hostname="localhost", **options
    )
    controller.start()
    return controller, SmtpServer(inbox, port)

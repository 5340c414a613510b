"""``ledgerflow mailbox``: a mail server for trying ledgerflow out, on this machine only.
It keeps every mail it is sent as a file and forwards nothing, so that ``ledgerflow run``
shows the feed workflow's mails without a mail server of one's own.

Each mail becomes ``<n>-<event>.eml`` (the whole message: any mail reader opens it) and
``<n>-<event>.txt`` (its plain-text part, for a terminal). Needs aiosmtpd, which the
``dev`` extra installs (``make install``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from pathlib import Path
from typing import Any

import click

from ledgerflow.cli.common import log

_SLUG = re.compile(r"[^a-z0-9]+")


class Keeper:
    """An aiosmtpd handler writing each message into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = len(list(directory.glob("*.eml")))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message; answer 250 so the sender counts it delivered."""
        raw: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.count += 1
        event = str(message.get("X-Ledgerflow-Event", "mail"))
        stem = self.directory / f"{self.count:04d}-{_SLUG.sub('-', event.lower()).strip('-')}"
        stem.with_suffix(".eml").write_bytes(raw)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        headers = "".join(f"{h}: {message.get(h, '')}\n" for h in ("From", "To", "Subject"))
        stem.with_suffix(".txt").write_text(headers + "\n" + text, encoding="utf-8")
        log.info(
            "mailbox.received",
            to=", ".join(envelope.rcpt_tos),
            subject=str(message.get("Subject", "")),
            file=str(stem.with_suffix(".txt")),
        )
        return "250 kept"


@click.command(name="mailbox")
@click.option("--port", type=click.IntRange(1, 65_535), default=2525, show_default=True)
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".ledgerflow/mail"),
    show_default=True,
    help="Where the mails are kept.",
)
def command(port: int, directory: Path) -> None:
    """Keep every mail sent to 127.0.0.1:PORT as files in DIRECTORY (forwarding nothing)."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        raise click.ClickException(
            "the mailbox needs aiosmtpd: pip install 'ledgerflow[dev]' (make install does)"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(Keeper(directory), hostname="127.0.0.1", port=port)
    controller.start()
    log.info("mailbox.listening", address=f"smtp://127.0.0.1:{port}", directory=str(directory))
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()

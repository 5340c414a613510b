"""What ledgerflow tells people of, by email and webhook: rule changes, comparisons with
unexplained rows, a worker that stopped publishing. Sent in the background: a slow mail
server never holds up the request or the worker that caused the notification."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from ledgerflow.lineage.results import ComparisonResult
from ledgerflow.notifications.notify import (
    COMPARISON_UNEXPLAINED,
    PUBLISHING_STOPPED,
    RULE_CHANGED,
    Connect,
    Notifier,
    SmtpMailer,
)
from ledgerflow.notifications.outbox import Postman
from ledgerflow.settings import Settings
from ledgerflow.transactions.rules import Rule
from ledgerflow.treasury.lcr import LcrFigures

log = structlog.get_logger(__name__)


class Announcer:
    """Sends notifications as background tasks, and waits for them when closing."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._pending: set[asyncio.Task[Any]] = set()

    def _send(self, work: Coroutine[Any, Any, Any]) -> None:
        if not self.notifier.configured:
            work.close()
            return
        task = asyncio.create_task(work, name="notify")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def rule_changed(self, rule: Rule, actor: str) -> None:
        """A rule was added or changed (a new version)."""
        self._send(
            self.notifier.notify(
                RULE_CHANGED,
                f"rule {rule.name} {rule.change} (version {rule.version})",
                f"{actor} saved version {rule.version} of the filtering rule {rule.name}; "
                "it applies from the next batch on.",
                {
                    "rule": rule.name,
                    "version": rule.version,
                    "change": rule.change,
                    "enabled": rule.enabled,
                    "condition": rule.condition,
                    "technical": rule.technical,
                    "functional": rule.functional,
                    "by": actor,
                },
            )
        )

    async def comparison_unexplained(self, result: ComparisonResult) -> None:
        """A comparison found rows nothing explains."""
        first = [f"{i.kind} {i.stages}: {i.item_id}" for i in result.items[:20]]
        self._send(
            self.notifier.notify(
                COMPARISON_UNEXPLAINED,
                f"comparison of {result.source}: {result.unexplained:,} unexplained",
                f"Comparison {result.comparison_id} of {result.source} (run by "
                f"{result.ran_by}) found {result.unexplained:,} ids nothing explains. "
                "The first ones:\n" + "\n".join(first),
                {
                    "comparison": result.comparison_id,
                    "source": result.source,
                    "unexplained": result.unexplained,
                    "explained": result.explained,
                },
            )
        )

    def publishing_stopped(self, instance: str, error: str) -> None:
        """The active worker could not publish a boundary's balances."""
        self._send(
            self.notifier.notify(
                PUBLISHING_STOPPED,
                f"worker {instance} could not publish balances",
                f"The active worker {instance} failed to publish the balances to KeyDB: "
                f"{error}. It retries at the next boundary.",
                {"instance": instance, "error": error},
            )
        )

    def lcr_level(self, level: str, figures: LcrFigures) -> None:
        """The LCR crossed the warning level or the 100 % floor, or came back above both."""
        ratio = "none" if figures.lcr is None else f"{figures.lcr * 100:.2f} %"
        subject, body = {
            "breach": ("LCR below 100 %", "The liquidity coverage ratio is below its 100 % floor"),
            "warning": (
                "LCR below the warning level",
                "The liquidity coverage ratio is below the warning level",
            ),
            "ok": (
                "LCR back above the warning level",
                "The liquidity coverage ratio is back above the warning level",
            ),
        }[level]
        self._send(
            self.notifier.notify(
                f"lcr_{level}",
                f"{subject}: {ratio}",
                f"{body}: {ratio}.",
                {"level": level, **figures.as_json()},
            )
        )

    async def close(self) -> None:
        """Let the notifications in flight finish (each is bounded by its timeout)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def postman(settings: Settings, connect: Connect) -> Postman:
    """The outbox's postman, sending through LEDGERFLOW_SMTP_URL (or the notifications'
    server); without either, mail waits in the outbox."""
    server = settings.mail_server()
    mailer = SmtpMailer(server, settings.notify_timeout) if server else None
    return Postman(
        connect,
        mailer,
        settings.notify_mail_from,
        retries=settings.mail_retries(),
        send_timeout=settings.notify_timeout,
        secrets=tuple(s for s in (server.password if server else None,) if s),
    )

"""The mails of feed onboarding and reconciliation, from templates: a plain-text part
always, an HTML part beside it, each with a link to the page where the work is done.

Who gets them: the users of the role (``operator`` for the administrators, ``analyst``
for the analysts) who have an email address, and the addresses the configuration lists
(``LEDGERFLOW_FEEDS_ADMINS``, ``LEDGERFLOW_FEEDS_ANALYSTS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ledgerflow.db.queries import Queries
from ledgerflow.notifications.outbox import Letter, enqueue

if TYPE_CHECKING:
    from ledgerflow.feeds.reconcile import Finding
    from ledgerflow.feeds.workflow import FeedRecord

QUERIES = Queries.of("ledgerflow.feeds", "workflow.sql")
FEED_DETECTED = "feed_detected"
FEED_TO_REVIEW = "feed_to_review"
FEED_DECIDED = "feed_decided"
FINDINGS_NEW = "feed_findings"

_ENV = Environment(
    loader=PackageLoader("ledgerflow.feeds", "templates/mail"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Letters:
    """Writes the mails: ``console_url`` is where the links point (the console's address
    as people reach it), ``admins`` and ``analysts`` the configured addresses."""

    console_url: str
    admins: tuple[str, ...] = ()
    analysts: tuple[str, ...] = ()

    async def recipients(self, conn: psycopg.AsyncConnection[Any], role: str) -> list[str]:
        """The addresses of the users of ``role``, then the configured ones."""
        cursor = await conn.execute(QUERIES["role_addresses"], {"role": role})
        users = [str(row[0]) for row in await cursor.fetchall()]
        configured = self.admins if role == "operator" else self.analysts
        return list(dict.fromkeys([*users, *configured]))

    def link(self, path: str) -> str:
        """The console's address of ``path``."""
        return self.console_url.rstrip("/") + path

    def _letter(self, template: str, event: str, subject: str, **context: Any) -> Letter:
        context = {"subject": subject, **context}
        text = _ENV.get_template(f"{template}.txt").render(context)
        html = _ENV.get_template(f"{template}.html").render(context)
        return Letter(event, subject, text, html, _detail(context))

    def detected(self, feed: FeedRecord) -> Letter:
        """To the administrators: a new feed to describe."""
        values = feed.values
        return self._letter(
            "detected",
            FEED_DETECTED,
            f"new feed {values['source']} → {values['table_name']}: please describe it",
            feed=values,
            link=self.link(f"/onboarding/{feed.feed_id}"),
        )

    def review(self, feed: FeedRecord, by: str) -> Letter:
        """To the analysts: a described feed to review."""
        values = feed.values
        return self._letter(
            "review",
            FEED_TO_REVIEW,
            f"feed {values['source']} → {values['table_name']} is ready for review",
            feed=values,
            by=by,
            link=self.link(f"/onboarding/{feed.feed_id}"),
        )

    def decided(self, feed: FeedRecord, by: str) -> Letter:
        """To the administrators: what the analysts decided."""
        values = feed.values
        state = str(values["state"]).replace("_", " ")
        return self._letter(
            "decided",
            FEED_DECIDED,
            f"feed {values['source']} → {values['table_name']} is {state}",
            feed=values,
            state=state,
            by=by,
            link=self.link(f"/onboarding/{feed.feed_id}"),
        )

    def findings(self, new: Sequence[Finding]) -> Letter:
        """To administrators and analysts: what reconciliation found that is new."""
        return self._letter(
            "findings",
            FINDINGS_NEW,
            f"reconciliation: {len(new)} new finding{'s' * (len(new) != 1)}",
            findings=new[:50],
            more=max(0, len(new) - 50),
            link=self.link("/onboarding/reconciliation"),
        )


def _detail(context: dict[str, Any]) -> dict[str, Any]:
    """What the notification log keeps of the mail: the feed's id, or the findings' ids."""
    if "feed" in context:
        return {"feed": context["feed"]["id"], "link": context["link"]}
    return {"findings": [f.id for f in context.get("findings", ())], "link": context["link"]}


async def tell_findings(
    conn: psycopg.AsyncConnection[Any], new: Sequence[Finding], letters: Letters
) -> int | None:
    """Write the mail of new findings to the administrators and the analysts."""
    if not new:
        return None
    recipients = [
        *await letters.recipients(conn, "operator"),
        *await letters.recipients(conn, "analyst"),
    ]
    return await enqueue(conn, letters.findings(new), recipients)

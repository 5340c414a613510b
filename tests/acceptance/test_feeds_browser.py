"""Onboarding end to end, with the real processes, a real SMTP server started here and
Debian's Chromium: a queue loads for the first time, the worker detects the feed within a
minute, the administrator's mail arrives with a link that works, the administrator fills
the form, the analysts' mail arrives, an analyst onboards the feed, and the feed's page
shows every step with the person who took it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from ..conftest import free_port
from ..smtp import Inbox, SmtpServer, start_smtp
from .browser import PASSWORD, add_user, answers, browser, needs_chromium
from .conftest import Process, eventually, query

pytestmark = needs_chromium
__all__ = ["browser"]  # a fixture
LINK = re.compile(r"https?://\S+/onboarding/\d+")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    controller, server = start_smtp()
    yield server
    controller.stop()


def mail_to(inbox: Inbox, address: str, subject_part: str) -> int | None:
    """The index of the first mail to ``address`` whose subject has ``subject_part``."""
    for index, envelope in enumerate(inbox.envelopes):
        if address in envelope.rcpt_tos and subject_part in inbox.message(index)["Subject"]:
            return index
    return None


def arrived(inbox: Inbox, address: str, subject_part: str) -> list[int]:
    """[the mail's index] once it has arrived, [] before (for ``eventually``)."""
    index = mail_to(inbox, address, subject_part)
    return [] if index is None else [index]


def sign_in_through(page: Any, link: str, name: str) -> None:
    """Follow a mail's link: the sign-in page first, then back to the link."""
    page.goto(link)
    assert "/signin" in page.url
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(link)


def test_a_new_queue_is_detected_mailed_described_reviewed_and_onboarded(
    db_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    publish: Callable[..., None],
    smtp: SmtpServer,
    browser: Any,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = make_env(
        db_url,
        http_port=str(port),
        smtp_url=smtp.url,
        console_url=base,
        feeds_detect_interval="1",
        feeds_reconcile_interval="3600",
    )
    add_user(env, "olga", "operator", "olga@example.com")
    add_user(env, "anna", "analyst", "anna@example.com")
    spawn(["worker"], env)
    spawn(["api"], env)
    eventually(lambda: answers(f"{base}/healthz"), 20, "the API to listen")

    published = time.monotonic()
    publish(b'{"id": 1, "value": 100}')  # the queue's first load
    (index,) = eventually(
        lambda: arrived(smtp.inbox, "olga@example.com", "please describe it"),
        60,
        "the administrators' mail",
    )
    detected_in = time.monotonic() - published
    assert detected_in < 60
    text = smtp.inbox.text(index)
    assert f"queue:{queue}" in text
    found = LINK.search(text)
    assert found, text
    link = found[0]
    assert link.startswith(base)

    # An analyst watches her section while the administrator works: it is empty now.
    watching = browser.new_context()
    section = watching.new_page()
    sign_in_through(section, f"{base}/onboarding/analysts", "anna")
    expect(section.locator('table[data-table="feeds"] tbody tr[data-feed]')).to_have_count(0)
    section.wait_for_selector('html[data-live="ready"]')  # the WebSocket listens
    section.evaluate("window.loadedOnce = true")  # gone if the page reloads

    context = browser.new_context()
    page = context.new_page()
    sign_in_through(page, link, "olga")
    page.fill("#f-loader_name", "core-banking-loader")
    page.select_option("#f-frequency", "15 minutes")
    page.fill("#f-data_type", "card transactions")
    page.fill("#f-upstream_app_id", "APP-7")
    page.fill("#f-upstream_app_name", "Card switch")
    page.check('input[name="regulatory"][value="trade"]')
    page.click('button[value="submit"]')
    expect(page.locator("h1 .state")).to_have_text("in review")
    context.close()

    (analyst_mail,) = eventually(
        lambda: arrived(smtp.inbox, "anna@example.com", "ready for review"),
        30,
        "the analysts' mail",
    )
    review_link = LINK.search(smtp.inbox.text(analyst_mail))
    assert review_link and review_link[0] == link
    assert "core-banking-loader" in smtp.inbox.text(analyst_mail)

    # The feed appeared in her section over the console's WebSocket, without a reload.
    expect(section.locator('table[data-table="feeds"] tbody tr[data-feed]')).to_have_count(1)
    assert section.evaluate("window.loadedOnce") is True

    context = watching
    page = section
    page.goto(link)
    assert page.locator("#describe").count() == 0  # not the analysts' form
    page.check('input[name="used_by_models"][value="yes"]')
    page.click('button[value="onboard"]')
    expect(page.locator("h1 .state")).to_have_text("onboarded")
    rows = page.locator('table[data-table="trail"] tbody tr')
    expect(rows).to_have_count(4)
    trail = [
        (
            rows.nth(i).locator("td").nth(1).inner_text(),
            rows.nth(i).locator("td").nth(4).inner_text(),
        )
        for i in range(4)
    ]
    assert trail == [
        ("ledgerflow", "detected"),
        ("olga", "described"),
        ("olga", "in review"),
        ("anna", "onboarded"),
    ]
    context.close()
    (state,) = query(
        db_url, "SELECT state FROM ledgerflow.feeds WHERE source = %s", f"queue:{queue}"
    )
    assert state == ("onboarded",)
    print(f"detected and mailed {detected_in:.1f} s after the first message")

"""The feed workflow's mails: a plain-text part and an HTML part from templates, with the
link to the feed's page, and what a loader named escaped in the HTML."""

from __future__ import annotations

from datetime import UTC, datetime

from ledgerflow.feeds.letters import FEED_DETECTED, Letters
from ledgerflow.feeds.workflow import FeedRecord

AT = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def record(**values: object) -> FeedRecord:
    base: dict[str, object] = {
        "id": 7,
        "source": "murex-eod",
        "table_name": "staging.trades",
        "state": "detected",
        "first_load_at": AT,
        "loader_name": None,
        "used_by_models": None,
        "review_note": None,
    }
    return FeedRecord(base | values)


def test_the_detection_mail_links_to_the_feed_in_both_parts() -> None:
    letter = Letters("https://console.example.com/").detected(record())
    assert letter.event == FEED_DETECTED
    assert letter.subject == "new feed murex-eod → staging.trades: please describe it"
    assert "https://console.example.com/onboarding/7" in letter.text
    assert letter.html is not None
    assert 'href="https://console.example.com/onboarding/7"' in letter.html
    assert "2026-11-30 06:00:00 UTC" in letter.text
    assert letter.detail == {"feed": 7, "link": "https://console.example.com/onboarding/7"}


def test_a_source_holding_markup_is_escaped_in_the_html_and_kept_in_the_text() -> None:
    letter = Letters("https://c.test").detected(record(source='<img src=x onerror="alert(1)">'))
    assert letter.html is not None
    assert "<img" not in letter.html and "&lt;img" in letter.html
    assert '<img src=x onerror="alert(1)">' in letter.text


def test_the_review_mail_shows_what_the_administrators_recorded() -> None:
    described = record(
        state="in_review",
        loader_name="eod-loader",
        frequency="daily",
        data_type="trades",
        upstream_app_id="APP-42",
        upstream_app_name="Murex",
        persistency_schema="staging",
        persistency_table="trades",
        regulatory="pre_trade",
        described_by="olga",
    )
    letter = Letters("https://c.test").review(described, "olga")
    assert "olga described a data feed" in letter.text
    assert "staging.trades" in letter.text and "pre trade" in letter.text
    assert letter.html is not None and "APP-42 Murex" in letter.html

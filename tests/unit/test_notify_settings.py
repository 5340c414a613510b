"""Notification settings: the SMTP URL, the addresses and the webhook URLs are checked at
start, each refusal names the variable (and never repeats a password), and the log names a
webhook without its secrets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.core import ConfigError
from ledgerflow.notifications.notify import (
    SmtpServer,
    parse_notify_settings,
    parse_smtp_url,
    webhook_target,
)
from ledgerflow.settings import load_settings

VARIABLE = "LEDGERFLOW_NOTIFY_SMTP_URL"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("LEDGERFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the working directory


def notify(**given: Any) -> Any:
    values: dict[str, Any] = {
        "smtp_url": None,
        "mail_from": "ledgerflow@example.com",
        "mail_to": "",
        "webhook_urls": "",
        "timeout": 10,
    }
    return parse_notify_settings(**(values | given))


# The SMTP URL.


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("smtp://mail.example.com", SmtpServer("mail.example.com", 25, False, None)),
        ("smtp://mail.example.com:2525/", SmtpServer("mail.example.com", 2525, False, None)),
        (
            "smtp://u:pw@mail.example.com:587?starttls=true",
            SmtpServer("mail.example.com", 587, False, True, "u", "pw"),
        ),
        (
            "smtp://mail.example.com?starttls=FALSE",
            SmtpServer("mail.example.com", 25, False, False),
        ),
        (  # a password is never sent in clear: STARTTLS is required unless refused
            "smtp://u:pw@mail.example.com",
            SmtpServer("mail.example.com", 25, False, True, "u", "pw"),
        ),
        (
            "smtp://u:pw@mail.example.com?starttls=false",
            SmtpServer("mail.example.com", 25, False, False, "u", "pw"),
        ),
        ("smtps://mail.example.com", SmtpServer("mail.example.com", 465, True, None)),
        (
            "smtps://alerts%40example.com:p%40ss%3Aw%2Frd%25@[2001:db8::1]:4650",
            SmtpServer("2001:db8::1", 4650, True, None, "alerts@example.com", "p@ss:w/rd%"),
        ),
    ],
)
def test_good_smtp_urls_give_their_server(url: str, server: SmtpServer) -> None:
    assert parse_smtp_url(url, VARIABLE) == server


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://u:secret@mail.example.com", "scheme must be smtp or smtps"),
        ("mail.example.com:25", "scheme must be smtp or smtps"),
        ("smtp://u:secret@", "no host"),
        ("smtp://u:secret@mail.example.com:0", "port must be a number from 1 to 65535"),
        ("smtp://u:secret@mail.example.com:70000", "port must be a number from 1 to 65535"),
        ("smtp://u:secret@mail.example.com:smtp", "port must be a number from 1 to 65535"),
        ("smtp://u:secret@[::1", "not a URL"),
        ("smtp://u:secret@mail.example.com/inbox", "a path means nothing to SMTP"),
        ("smtp://u:secret@mail.example.com?startls=true", "unknown parameter 'startls'"),
        ("smtp://u:secret@mail.example.com?starttls=maybe", "starttls must be true or false"),
        ("smtps://u:secret@mail.example.com?starttls=true", "starttls does not apply to smtps"),
        ("smtp://:secret@mail.example.com", "a password needs a user name"),
        ("smtp://user@mail.example.com", "a user name needs a password"),
    ],
)
def test_bad_smtp_urls_are_refused_naming_the_variable_not_the_password(
    url: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        notify(smtp_url=url, mail_to="ops@example.com")
    assert str(refused.value).startswith(f"{VARIABLE}: {reason}")
    assert "secret" not in str(refused.value)


def test_an_empty_smtp_url_means_no_email() -> None:
    settings = notify(smtp_url="  ")
    assert settings.smtp_url is None
    assert settings.smtp is None
    assert not settings.configured


def test_the_representation_keeps_the_secrets_out() -> None:
    settings = notify(
        smtp_url="smtp://u:smtp-secret@mail.example.com",
        mail_to="ops@example.com",
        webhook_urls="https://u:hook-secret@hooks.example.com/x?token=query-secret",
    )
    for text in (repr(settings), repr(settings.smtp)):
        assert "secret" not in text


# Addresses.


def test_recipients_are_a_comma_separated_list_and_names_may_hold_commas() -> None:
    settings = notify(
        smtp_url="smtp://mail.example.com",
        mail_from="Ledgerflow <ledgerflow@example.com>",
        mail_to='"Doe, Jane" <jane@example.com>, ops@example.com,, Trésorerie <t@example.com>',
    )
    assert settings.mail_from == "Ledgerflow <ledgerflow@example.com>"
    assert settings.mail_to == (
        '"Doe, Jane" <jane@example.com>',
        "ops@example.com",
        "Trésorerie <t@example.com>",
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"mail_to": "ops@example.com"},
            "LEDGERFLOW_NOTIFY_MAIL_TO: set, but no LEDGERFLOW_NOTIFY_SMTP_URL",
        ),
        (
            {"smtp_url": "smtp://mail.example.com"},
            "LEDGERFLOW_NOTIFY_MAIL_TO: needed when LEDGERFLOW_NOTIFY_SMTP_URL is set",
        ),
        (
            {"smtp_url": "smtp://mail.example.com", "mail_to": "a@example.com b@example.com"},
            "LEDGERFLOW_NOTIFY_MAIL_TO: 'a@example.com b@example.com' is not an email address",
        ),
        (
            {"smtp_url": "smtp://mail.example.com", "mail_to": "ops"},
            "LEDGERFLOW_NOTIFY_MAIL_TO: 'ops' is not an email address",
        ),
        (
            {"mail_from": "ledgerflow@example.com\nBcc: x@example.com"},
            "LEDGERFLOW_NOTIFY_MAIL_FROM: ",
        ),
        ({"timeout": 0}, "LEDGERFLOW_NOTIFY_TIMEOUT: must be more than 0 seconds"),
    ],
)
def test_bad_addresses_and_timeouts_are_refused_naming_the_variable(
    given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        notify(**given)
    assert str(refused.value).startswith(message)


# Webhooks.


def test_webhooks_are_separated_by_commas_or_spaces_and_each_kept_once() -> None:
    settings = notify(
        webhook_urls=" https://a.example.com/x,https://b.example.com/y\n"
        "http://127.0.0.1:8080/z  https://a.example.com/x "
    )
    assert settings.webhook_urls == (
        "https://a.example.com/x",
        "https://b.example.com/y",
        "http://127.0.0.1:8080/z",
    )
    assert settings.configured


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example.com/x", "'ftp://hooks.example.com/x': scheme must be http or https"),
        ("hooks.example.com/x", "'hooks.example.com/x': scheme must be http or https"),
        ("https://u:secret@/x?token=secret", "'https:///x': no host"),
        (
            "https://hooks.example.com:99999/x?token=secret",
            "'https://hooks.example.com/x': port must be a number from 1 to 65535",
        ),
        ("https://[::1/x?token=secret", "an entry is not a URL"),
    ],
)
def test_bad_webhook_urls_are_refused_naming_the_variable_not_the_secrets(
    url: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        notify(webhook_urls=f"https://good.example.com/hook {url}")
    assert str(refused.value) == f"LEDGERFLOW_NOTIFY_WEBHOOK_URLS: {reason}"
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://hooks.example.com/services/T1", "https://hooks.example.com/services/…"),
        ("https://hooks.example.com/services/T0/B0/secret", "https://hooks.example.com/services/…"),
        ("https://user:pw@hooks.example.com/x", "https://hooks.example.com/x"),
        (
            "https://user@hooks.example.com:8443/x?token=abc#frag",
            "https://hooks.example.com:8443/x",
        ),
        ("http://u:p@[2001:db8::1]:8080/hook?sig=1", "http://[2001:db8::1]:8080/hook"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ],
)
def test_the_webhook_target_drops_credentials_query_fragment_and_the_path_past_one_segment(
    url: str, target: str
) -> None:
    assert webhook_target(url) == target


# Through the environment.


def test_the_environment_builds_the_notify_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERFLOW_NOTIFY_SMTP_URL", "smtps://u:p%23w@mail.example.com")
    monkeypatch.setenv("LEDGERFLOW_NOTIFY_MAIL_TO", "treasury@example.com,ops@example.com")
    monkeypatch.setenv("LEDGERFLOW_NOTIFY_WEBHOOK_URLS", "https://hooks.example.com/a")
    monkeypatch.setenv("LEDGERFLOW_NOTIFY_TIMEOUT", "2.5")

    settings = load_settings().notify_settings()

    assert settings.smtp == SmtpServer("mail.example.com", 465, True, None, "u", "p#w")
    assert settings.mail_from == "ledgerflow@localhost"
    assert settings.mail_to == ("treasury@example.com", "ops@example.com")
    assert settings.webhook_urls == ("https://hooks.example.com/a",)
    assert settings.timeout == 2.5


def test_by_default_no_channel_is_configured() -> None:
    assert not load_settings().notify_settings().configured


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "LEDGERFLOW_NOTIFY_SMTP_URL",
            "http://u:secret@mail.example.com",
            "LEDGERFLOW_NOTIFY_SMTP_URL: scheme must be smtp or smtps",
        ),
        (
            "LEDGERFLOW_NOTIFY_WEBHOOK_URLS",
            "https://hooks.example.com:port/x?token=secret",
            "LEDGERFLOW_NOTIFY_WEBHOOK_URLS: 'https://hooks.example.com/x': port must be",
        ),
        ("LEDGERFLOW_NOTIFY_MAIL_FROM", "nobody", "LEDGERFLOW_NOTIFY_MAIL_FROM: 'nobody' is not"),
        ("LEDGERFLOW_NOTIFY_MAIL_TO", "ops@example.com", "LEDGERFLOW_NOTIFY_MAIL_TO: set, but no"),
        ("LEDGERFLOW_NOTIFY_TIMEOUT", "0", "LEDGERFLOW_NOTIFY_TIMEOUT: "),
    ],
)
def test_a_bad_variable_stops_the_start_naming_it_and_not_its_secret(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert f"\n  {message}" in str(refused.value)
    assert "secret" not in str(refused.value)

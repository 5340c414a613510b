"""Configuration: one typed object built once from ``LEDGERFLOW_*`` environment variables.

This is the only module that reads the environment. A ``.env`` file in the working
directory is honoured; real environment variables win over it.
"""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledgerflow.core import ConfigError
from ledgerflow.feeds.letters import Letters
from ledgerflow.feeds.load_logs import LoadLogMapping, parse_load_log_mapping
from ledgerflow.notifications.notify import (
    NotifySettings,
    SmtpServer,
    parse_addresses,
    parse_notify_settings,
    parse_smtp_url,
)
from ledgerflow.notifications.outbox import Retries
from ledgerflow.treasury.lcr import Rates
from ledgerflow.treasury.registry import check_url
from ledgerflow.treasury.streams import StreamServer

__all__ = ["ENV_PREFIX", "ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "LEDGERFLOW_"


def _require_scheme(value: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return value


class Settings(BaseSettings):
    """Every setting ledgerflow has, with defaults that work against local services."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "postgresql://ledgerflow:ledgerflow@127.0.0.1:5432/ledgerflow"
    # Streaming replicas of it, comma-separated: the API's reads of /rates and the console
    # go there (docs/scaling.md); a replica further behind than the lag is left out.
    database_read_urls: str = ""
    read_replica_max_lag: float = Field(5.0, gt=0, le=3600)
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue: str = Field("incoming_transactions", min_length=1, max_length=255)

    # Seconds between balance publications; boundaries are multiples of it since the
    # epoch, so the default 60 publishes at hh:mm:00. Must divide 3600.
    publish_interval: int = Field(60, ge=1, le=3600)
    batch_size: int = Field(500, ge=1, le=10_000)
    batch_max_wait: float = Field(0.05, gt=0, le=10)
    # Providers sharded over this many quorum queues, each with one active consumer that
    # RabbitMQ chooses (docs/scaling.md); 0: the one queue, consumed by the leader.
    shards: int = Field(0, ge=0, le=1024)
    prefetch: int = Field(2000, ge=1, le=65_535)
    max_body_bytes: int = Field(65_536, ge=64)
    # Read deliveries straight from the AMQP frames (messaging/fast_path.py); false leaves
    # every delivery to pika, should a pika release and the fast path disagree.
    amqp_fast_path: bool = True

    # Port of `ledgerflow api` (the original service listened on 3000).
    http_port: int = Field(3000, ge=1, le=65_535)
    # Most days one /rates request may span, and database connections per API process.
    rates_max_days: int = Field(366, ge=1, le=36_600)
    api_pool_size: int = Field(10, ge=1, le=1000)
    # Answers kept in the persistent /rates cache in KeyDB; 0 turns the cache off. The cache
    # lives in its own KeyDB database, so that balances stay alone in theirs.
    rates_cache_size: int = Field(10_000, ge=0)
    rates_cache_url: str | None = None
    # Price batches arrive on this queue too (the active worker consumes it); empty: off.
    price_batch_queue: str = Field("incoming_price_batches", max_length=255)
    # The worker's /healthz, /readyz and /metrics; 0 turns them off.
    metrics_port: int = Field(9100, ge=0, le=65_535)
    # Where the API and the worker's endpoints listen: this machine only, unless set
    # (0.0.0.0 in containers, behind their own network).
    http_host: str = "127.0.0.1"
    # Peers whose X-Forwarded-For (and LEDGERFLOW_TRUSTED_AUTH_HEADER) is believed:
    # comma-separated addresses or networks.
    trusted_proxies: str = "127.0.0.1,::1"
    # HTTPS: both paths, or neither.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # A request body larger than this is refused with 413 before it is read.
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # GET /rates answers without credentials, as the original did, unless this is true.
    rates_require_token: bool = False
    # Single sign-on behind a corporate proxy: a request from a trusted proxy carrying this
    # header is the user it names (e.g. X-Remote-User). Unset: off.
    trusted_auth_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    # How long a console session lasts, and when repeated failed sign-ins lock a user.
    session_hours: float = Field(12, gt=0, le=24 * 30)
    sign_in_attempts: int = Field(5, ge=1, le=100)
    lockout_seconds: int = Field(60, ge=1, le=86_400)

    # Notifications (docs/notifications.md). Email goes out when the SMTP URL is set:
    # smtp://user:password@host:port?starttls=true, or smtps:// for TLS from the start.
    notify_smtp_url: str | None = None
    notify_mail_from: str = "ledgerflow@localhost"
    # Comma-separated addresses; needed with an SMTP URL, refused without one.
    notify_mail_to: str = ""
    # Each URL gets every notification as a JSON POST: comma- or space-separated.
    notify_webhook_urls: str = ""
    # Seconds each channel may take before it counts as failed.
    notify_timeout: float = Field(10, gt=0, le=300)

    # Seconds between two detections of new feeds in the load log, by the active worker
    # (a feed is noticed within this long of its first load; reported loads at once).
    feeds_detect_interval: float = Field(60, ge=1, le=86_400)
    # Seconds between two reconciliations of the models' tables against the onboarded feeds.
    feeds_reconcile_interval: float = Field(3600, ge=1, le=7 * 86_400)
    # Who hears of feeds besides the users of the role with an email address: the
    # administrators (role operator) and the analysts (role analyst); comma-separated.
    feeds_admins: str = ""
    feeds_analysts: str = ""
    # Another loader's load-log table (or view), read as part of the load log: its
    # schema.table, its columns (source=...,table=...,status=...,finished_at=..., and
    # optionally rows=..., started_at=...; schema=...,table_name=... for two columns) and
    # the status values meaning success. See docs/feeds.md.
    feeds_load_log_table: str | None = None
    feeds_load_log_columns: str = ""
    feeds_load_log_succeeded: str = ""
    # The mail server of the feed workflow (docs/feeds.md); unset, LEDGERFLOW_NOTIFY_SMTP_URL.
    smtp_url: str | None = None
    # A workflow mail the server refused is tried again after this many seconds, then twice
    # as long each time (at most an hour), this many times in all.
    mail_retry_seconds: float = Field(30, gt=0, le=3600)
    mail_attempts: int = Field(10, ge=1, le=100)
    # The console's address as people reach it, for the links in mails; unset, this
    # machine's: http(s)://127.0.0.1:<LEDGERFLOW_HTTP_PORT>.
    console_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")

    # Treasury (docs/treasury.md): the active worker reads the desks' trade streams when on.
    treasury: bool = False
    # RabbitMQ's stream endpoint (the rabbitmq_stream plugin).
    stream_url: str = "rabbitmq-stream://guest:guest@127.0.0.1:5552/%2F"
    # Each source reads <prefix><source> (trades.fx, trades.repos, ...) until a control
    # message swaps it.
    treasury_stream_prefix: str = Field("trades.", pattern=r"^[A-Za-z0-9_.\-]{0,200}$")
    # The stream whose control messages swap a source's stream at run time.
    treasury_control_stream: str = Field("treasury.control", pattern=r"^[A-Za-z0-9_.\-]{1,255}$")
    # Where normalised trades are written on for other consumers; empty: nowhere.
    treasury_normalised_stream: str = Field(
        "trades.normalised", pattern=r"^([A-Za-z0-9_.\-]{1,255})?$"
    )
    treasury_batch_size: int = Field(500, ge=1, le=10_000)
    # How long a batch waits for more messages after its first, in seconds.
    treasury_batch_wait: float = Field(0.01, ge=0, le=5)
    # A Confluent-compatible schema registry; unset, ledgerflow's own schema store.
    schema_registry_url: str | None = None
    schema_registry_token: str | None = Field(None, repr=False)
    # The currency the liquidity figures are in, and the LCR below which people are told.
    treasury_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    lcr_warning: Decimal = Field(Decimal("1.10"), gt=0, le=100)
    # Basel III rates that differ from the standard's defaults: name=value, comma-separated
    # (e.g. outflow_retail_stable=0.03); see docs/treasury.md for the names.
    treasury_rates: str = ""

    # OpenLineage: where the worker sends a run event for each batch and publication
    # (e.g. Marquez at http://marquez:5000); unset, none is sent. Needs the openlineage extra.
    openlineage_url: str | None = Field(None, pattern=r"^https?://[^\s/]+")
    openlineage_namespace: str = Field("ledgerflow", min_length=1, max_length=200)

    instance: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    # Tracing follows OpenTelemetry's own variables; unset, it is off.
    otel_traces_exporter: str | None = Field(None, validation_alias="OTEL_TRACES_EXPORTER")
    otel_sdk_disabled: bool = Field(False, validation_alias="OTEL_SDK_DISABLED")
    otel_service_name: str = Field("ledgerflow", validation_alias="OTEL_SERVICE_NAME")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _require_scheme(value, ("postgresql", "postgres"))

    @field_validator("database_read_urls")
    @classmethod
    def _database_read_urls(cls, value: str) -> str:
        for url in (u.strip() for u in value.split(",")):
            if url:
                _require_scheme(url, ("postgresql", "postgres"))
        return value

    def read_urls(self) -> list[str]:
        """The replicas' URLs (LEDGERFLOW_DATABASE_READ_URLS)."""
        return [u.strip() for u in self.database_read_urls.split(",") if u.strip()]

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: str) -> str:
        return _require_scheme(value, ("amqp", "amqps"))

    @field_validator("redis_url", "rates_cache_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None else _require_scheme(value, ("redis", "rediss", "unix"))

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            given, missing = (
                ("TLS_CERTFILE", "TLS_KEYFILE")
                if self.tls_certfile
                else ("TLS_KEYFILE", "TLS_CERTFILE")
            )
            raise ValueError(f"{ENV_PREFIX}{given} needs {ENV_PREFIX}{missing} too")
        for name, path in (("TLS_CERTFILE", self.tls_certfile), ("TLS_KEYFILE", self.tls_keyfile)):
            if path is not None and not path.is_file():
                raise ValueError(f"{ENV_PREFIX}{name}: {path} is not a readable file")
        return self

    @model_validator(mode="after")
    def _notify(self) -> Settings:
        # Checked here rather than per field, so that the message, which names the
        # variable, never repeats a URL holding a password.
        try:
            self.notify_settings()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _mail(self) -> Settings:
        try:
            self.mail_server()
            self.feed_letters()
            self.feeds_load_log()
            self.stream_server()
            self.lcr_rates()
            if self.schema_registry_url:
                check_url(self.schema_registry_url)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("publish_interval")
    @classmethod
    def _interval_divides_hour(cls, value: int) -> int:
        if 3600 % value:
            raise ValueError("must divide 3600 so that boundaries fall on whole minutes or seconds")
        return value

    @property
    def cache_url(self) -> str:
        """LEDGERFLOW_RATES_CACHE_URL, or database 1 (2 if balances use 1) of that KeyDB."""
        if self.rates_cache_url:
            return self.rates_cache_url
        parts = urlsplit(self.redis_url)
        balances_db = parts.path.strip("/") or "0"
        return parts._replace(path="/2" if balances_db == "1" else "/1").geturl()

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``trusted_proxies`` as a list."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    def notify_settings(self) -> NotifySettings:
        """Where notifications go, from the ``LEDGERFLOW_NOTIFY_*`` variables."""
        return parse_notify_settings(
            smtp_url=self.notify_smtp_url,
            mail_from=self.notify_mail_from,
            mail_to=self.notify_mail_to,
            webhook_urls=self.notify_webhook_urls,
            timeout=self.notify_timeout,
            prefix=f"{ENV_PREFIX}NOTIFY_",
        )

    def mail_server(self) -> SmtpServer | None:
        """The SMTP server of the feed workflow's mail (None: mail waits in the outbox)."""
        if self.smtp_url and self.smtp_url.strip():
            return parse_smtp_url(self.smtp_url, f"{ENV_PREFIX}SMTP_URL")
        return self.notify_settings().smtp

    def feed_letters(self) -> Letters:
        """What the feed workflow's mails need: the console's address and who else to tell."""
        scheme = "https" if self.tls_certfile else "http"
        return Letters(
            self.console_url or f"{scheme}://127.0.0.1:{self.http_port}",
            parse_addresses(self.feeds_admins, f"{ENV_PREFIX}FEEDS_ADMINS"),
            parse_addresses(self.feeds_analysts, f"{ENV_PREFIX}FEEDS_ANALYSTS"),
        )

    def feeds_load_log(self) -> LoadLogMapping | None:
        """The mapping of another loader's load-log table, or None."""
        return parse_load_log_mapping(
            self.feeds_load_log_table, self.feeds_load_log_columns, self.feeds_load_log_succeeded
        )

    def stream_server(self) -> StreamServer:
        """RabbitMQ's stream endpoint."""
        return StreamServer.from_url(self.stream_url, f"{ENV_PREFIX}STREAM_URL")

    def lcr_rates(self) -> Rates:
        """The Basel III rates: the standard's defaults and the overrides configured."""
        pairs = [p.strip() for p in self.treasury_rates.split(",") if p.strip()]
        mapping: dict[str, str] = {}
        for pair in pairs:
            name, equals, value = pair.partition("=")
            if not equals:
                raise ConfigError(f"{ENV_PREFIX}TREASURY_RATES: {pair!r} is not name=value")
            mapping[name.strip()] = value.strip()
        try:
            return Rates.from_mapping(mapping)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}TREASURY_RATES: {exc}") from None

    def mail_retries(self) -> Retries:
        """How the outbox retries a mail the server did not take."""
        return Retries(self.mail_attempts, self.mail_retry_seconds)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning validation errors into one message per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if not error["loc"]:  # a rule across variables: its message names them
                problems.append(message)
                continue
            field = str(error["loc"][0])
            variable = field if field.isupper() else f"{ENV_PREFIX}{field.upper()}"
            problems.append(f"{variable}: {message} (got {error['input']!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None

"""``ledgerflow run``: the worker and the example producer as child processes, supervised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

import structlog

from ledgerflow.db.connections import describe
from ledgerflow.settings import Settings

log = structlog.get_logger(__name__)

CHILDREN = {
    "worker": ["worker"],
    "producer": ["produce", "--no-seed-data"],
    "api": ["api"],
}
# Without a mail server of one's own, the feed workflow's mails go to a local mailbox that
# keeps them as files (``ledgerflow mailbox``), addressed to example administrators and
# analysts.
MAILBOX_DIRECTORY = ".ledgerflow/mail"
EXAMPLE_ADMINS = "Data administrators <dba@example.test>"
EXAMPLE_ANALYSTS = "Surveillance analysts <surveillance@example.test>"


def free_port() -> int:
    """A port nothing listens on now, on this machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def local_treasury(settings: Settings) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The example treasury's producer, and LEDGERFLOW_TREASURY=true for the worker."""
    producer = ["treasury", "produce", "--rate", "20", "--bad-ratio", "0.02"]
    return {"treasury-producer": producer}, {"LEDGERFLOW_TREASURY": "true"}


def local_mail(settings: Settings) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The mailbox child and the variables pointing the others at it, unless a mail
    server is configured (then neither)."""
    if settings.mail_server() is not None:
        return {}, {}
    port = free_port()
    env = {"LEDGERFLOW_SMTP_URL": f"smtp://127.0.0.1:{port}"}
    if not settings.feeds_admins:
        env["LEDGERFLOW_FEEDS_ADMINS"] = EXAMPLE_ADMINS
    if not settings.feeds_analysts:
        env["LEDGERFLOW_FEEDS_ANALYSTS"] = EXAMPLE_ANALYSTS
    args = ["mailbox", "--port", str(port), "--directory", MAILBOX_DIRECTORY]
    return {"mailbox": args}, env


def where_to_look(settings: Settings, admin_password: str | None = None) -> str:
    """The lines ``ledgerflow run`` prints so a user knows what to watch (and, the first
    time, the password of the console's user ``admin``)."""
    scheme = "https" if settings.tls_certfile else "http"
    console = f"{scheme}://127.0.0.1:{settings.http_port}/"
    sign_in = (
        f"sign in as admin with the password {admin_password}  (shown once; change it with"
        " `ledgerflow users password admin`)"
        if admin_password
        else "sign in as admin (its password was shown the first time;"
        " set a new one with `ledgerflow users password admin`)"
    )
    return "\n".join(
        [
            "ledgerflow is running: a worker (consumer and minute publisher), the producer"
            " and the API.",
            f"  console   {console}  {sign_in}",
            f"  queue     {settings.queue} on {settings.amqp_url.split('@')[-1]}",
            f"  database  {describe(settings.database_url)}"
            "  (tables historical_transactions, ledgerflow.rejected_messages)",
            f"  balances  {settings.redis_url}  (keys <id>_<provider_name>, e.g. 1_Visa),"
            " written at every minute boundary",
            "  watch     the 'balances.published' lines below,"
            " or: redis-cli MGET 1_Visa 2_Mastercard",
            *(
                [
                    f"  health    http://127.0.0.1:{settings.metrics_port}/healthz, /readyz;"
                    f" metrics at /metrics; `ledgerflow status` for every worker"
                ]
                if settings.metrics_port
                else []
            ),
            f"  rates     curl '{console}rates?date_from=2021-01-01"
            "&date_to=2021-01-07&orig_code=north&dest_code=south'  (a synthetic sample)",
            f"  feeds     {console}onboarding  (the example queue becomes a feed within a minute)",
            *(
                [
                    f"  treasury  {console}liquidity  (example trades of every desk, 20 a second;"
                    " `ledgerflow treasury status`)"
                ]
                if settings.treasury
                else []
            ),
            *(
                [
                    f"  mail      the feed workflow's mails are kept in {MAILBOX_DIRECTORY}/"
                    " (.txt to read, .eml for a mail reader)"
                ]
                if settings.mail_server() is None
                else []
            ),
            "Press Ctrl-C to stop.",
        ]
    )


def run_local(settings: Settings, admin_password: str | None = None, grace: float = 15.0) -> int:
    """Start the children, stop all of them when one exits or on a signal; return an exit code.

    A child that exits on its own is a failure: the others are stopped and its exit code
    (or 1) is returned, so nothing lingers half-alive.
    """
    print(where_to_look(settings, admin_password), file=sys.stderr, flush=True)
    mailbox, mail_env = local_mail(settings)
    treasury, treasury_env = local_treasury(settings) if settings.treasury else ({}, {})
    env = {**os.environ, **mail_env, **treasury_env}
    children = {
        name: subprocess.Popen([sys.executable, "-m", "ledgerflow", *args], env=env)
        for name, args in {**mailbox, **CHILDREN, **treasury}.items()
    }
    stopping = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)

    code = 0
    while not stopping:
        for name, child in children.items():
            status = child.poll()
            if status is not None:
                log.error("run.child_exited", child=name, exit_code=status)
                code = status or 1
                stopping = True
        time.sleep(0.2)

    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for name, child in children.items():
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("run.child_killed", child=name, after_seconds=grace)
            child.kill()
            child.wait()
    return code

"""Acceptance tests run the real ``ledgerflow`` command as separate processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.acceptance


class Process:
    """A ``ledgerflow`` child process whose output goes to a log file."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", *args],
            env=env,
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            self._out.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._out.close()


@pytest.fixture
def make_env(redis_url: str, queue: str, amqp_url: str) -> Callable[..., dict[str, str]]:
    """The environment for this test's ledgerflow processes, on database ``database_url``."""

    def make(database_url: str, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
        env.update(
            LEDGERFLOW_DATABASE_URL=database_url,
            LEDGERFLOW_REDIS_URL=redis_url,
            LEDGERFLOW_RATES_CACHE_URL=redis_url,  # isolated like everything else
            LEDGERFLOW_PRICE_BATCH_QUEUE=f"{queue}_prices",
            LEDGERFLOW_QUEUE=queue,
            LEDGERFLOW_AMQP_URL=amqp_url,
            LEDGERFLOW_LOG_FORMAT="json",
            LEDGERFLOW_METRICS_PORT="0",  # several workers share this host
        )
        env.update({f"LEDGERFLOW_{k.upper()}": v for k, v in settings.items()})
        return env

    return make


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start ``ledgerflow`` processes; any left running are killed at the end."""
    started: list[Process] = []

    def start(
        args: list[str], env: dict[str, str], name: str | None = None, cwd: Path | None = None
    ) -> Process:
        process = Process(args, env, tmp_path / f"{name or args[0]}-{len(started)}.log", cwd)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def run_ledgerflow(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a ``ledgerflow`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# Restarts of this machine's services, for the tests that need one; they skip where
# can_restart gives a reason.


def restart_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)


def restart_postgresql() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    command = [
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        version,
        "main",
        "restart",
        "-m",
        "immediate",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def can_restart(service: str) -> str | None:
    if os.geteuid() != 0:
        return "restarting services needs root"
    if service == "rabbitmq" and not shutil.which("rabbitmqctl"):
        return "no rabbitmqctl here"
    if service == "postgresql" and not (
        shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql")
    ):
        return "no local PostgreSQL cluster here"
    return None


__all__ = [
    "Process",
    "can_restart",
    "eventually",
    "query",
    "restart_postgresql",
    "restart_rabbitmq",
    "run_ledgerflow",
    "signal",
]

"""What the browser tests share: Debian's Chromium driven by Playwright, people added with
the real command, and a check that the API answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

PASSWORD = "correct horse battery"
CHROMIUM = os.environ.get("LEDGERFLOW_TEST_CHROMIUM") or shutil.which("chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM, reason="no Chromium here (Debian/Ubuntu: apt-get install chromium)"
)


def add_user(env: dict[str, str], name: str, role: str, email: str | None = None) -> None:
    """`ledgerflow users add`, the password on standard input as an operator would give it."""
    extra = ["--email", email] if email else []
    made = subprocess.run(
        [sys.executable, "-m", "ledgerflow", "users", "add", name, "--role", role, *extra],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        return httpx2.get(url, timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium for the test."""
    from playwright.sync_api import sync_playwright  # only where a browser can run

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


__all__ = ["CHROMIUM", "PASSWORD", "add_user", "answers", "browser", "needs_chromium"]

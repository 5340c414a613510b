"""Running ``ledgerflow`` commands in the test's process."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner, Result

from ledgerflow.cli import main


async def run_cli(*args: str) -> Result:
    """``ledgerflow ARGS``, in a thread: the command runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))

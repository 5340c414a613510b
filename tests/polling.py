"""Waiting for something to become true, in tests."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], within: float = 10.0, every: float = 0.02) -> Any:
    """Call ``check`` (awaiting it if need be) until it returns something true; return that.
    Fail the test after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out after {within} s"
        await asyncio.sleep(every)

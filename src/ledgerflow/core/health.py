"""Liveness and readiness: what /healthz and /readyz answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# The active worker is not ready when its last publication is older than this (seconds).
STALE_PUBLISH = 75.0

Check = Callable[[], Awaitable[None]]


@dataclass
class Health:
    """What a process knows about itself, kept up to date by the worker."""

    role: str = "starting"  # then "standby" or "active"
    role_changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_publish: float | None = None
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    stale_after: float = STALE_PUBLISH
    check_timeout: float = 2.0

    def supervise(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Count ``task`` among those that must be alive for the process to be live.

        A task that ends on its own (returns or fails) stays counted, dead, until the
        process exits; one cancelled on purpose (a clean shutdown) is forgotten.
        """
        self.tasks[task.get_name()] = task
        task.add_done_callback(
            lambda t: self.tasks.pop(t.get_name(), None) if t.cancelled() else None
        )
        return task

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Live while every supervised task runs; never touches a dependency."""
        dead = sorted(name for name, task in self.tasks.items() if task.done())
        return not dead, {"live": not dead, "role": self.role, "dead_tasks": dead}

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every dependency answers and, if active, balances are fresh."""
        results = await check_all(self.checks, self.check_timeout)
        ready = all(result == "ok" for result in results.values())
        body: dict[str, Any] = {"role": self.role, "checks": results}
        if self.role == "active":
            age = None if self.last_publish is None else round(time.time() - self.last_publish, 3)
            body["last_publish_age_seconds"] = age
            if age is not None and age > self.stale_after:
                ready = False
                body["problem"] = f"no publication for {age:.0f} s"
        body["ready"] = ready
        return ready, body


async def check_all(checks: dict[str, Check], within: float) -> dict[str, str]:
    """Run every check at once: "ok" or what went wrong, by name."""
    names = list(checks)
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(checks[name](), within) for name in names), return_exceptions=True
    )
    return {
        name: "ok" if outcome is None else _describe(outcome)
        for name, outcome in zip(names, outcomes, strict=True)
    }


def _describe(error: BaseException | Any) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__

"""Time, passed in: the wall clock decides boundaries, the monotonic clock decides waits."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol


class Clock(Protocol):
    """What ledgerflow needs of time; tests inject a fake one."""

    def wall(self) -> float:
        """Seconds since the epoch (may jump when the system clock is set)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of monotonic time."""
        ...


class SystemClock:
    """The real clock: ``time.time`` for the wall, the event loop's monotonic clock for waits."""

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def next_boundary(wall: float, interval: int) -> float:
    """The first multiple of ``interval`` seconds since the epoch strictly after ``wall``."""
    return (math.floor(wall / interval) + 1) * interval


def last_boundary(wall: float, interval: int) -> float:
    """The latest multiple of ``interval`` seconds since the epoch at or before ``wall``."""
    return math.floor(wall / interval) * interval


class BoundarySchedule:
    """Waits for wall-clock boundaries (hh:mm:00 for an interval of 60 s).

    It naps at most ``max_nap`` seconds at a time and looks at the wall clock after each
    nap, so a clock set forward yields one boundary (the latest passed), never a burst of
    catch-up boundaries, and a clock set back waits for the next boundary of the new time
    instead of sleeping through it.
    """

    def __init__(self, interval: int, clock: Clock, max_nap: float = 1.0) -> None:
        self.interval = interval
        self.clock = clock
        self.max_nap = max_nap

    async def wait(self) -> float:
        """Sleep until the next boundary and return it (seconds since the epoch)."""
        target = next_boundary(self.clock.wall(), self.interval)
        while True:
            now = self.clock.wall()
            if now >= target:
                return last_boundary(now, self.interval)
            if now < target - self.interval:
                # The clock went back by more than an interval: aim at the new next boundary.
                target = next_boundary(now, self.interval)
            await self.clock.sleep(min(self.max_nap, target - now))

"""A clock for unit tests: time moves only when something sleeps."""

from __future__ import annotations

import asyncio


class FakeClock:
    """A Clock whose time moves only when something sleeps, and can be set like a wall clock.

    ``jump_at(when, delta)`` sets the wall clock ``delta`` seconds forward (or back) the
    first time it passes ``when``, as an administrator or NTP would.
    """

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept = 0.0
        self._jumps: list[tuple[float, float]] = []

    def jump_at(self, when: float, delta: float) -> None:
        """Schedule a wall-clock jump of ``delta`` seconds when the time reaches ``when``."""
        self._jumps.append((when, delta))
        self._jumps.sort()

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        end = self.now + seconds
        while self._jumps and self._jumps[0][0] <= end:
            _when, delta = self._jumps.pop(0)
            end += delta
        self.now = end
        await asyncio.sleep(0)

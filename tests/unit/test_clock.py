"""The boundary schedule, driven by a fake clock (its contract test is below)."""

import asyncio

import pytest

from ledgerflow.core.clock import BoundarySchedule, SystemClock, last_boundary, next_boundary
from ledgerflow.testing import FakeClock


def test_next_boundary_is_strictly_after() -> None:
    assert next_boundary(120.0, 60) == 180
    assert next_boundary(119.999, 60) == 120
    assert next_boundary(0.0, 60) == 60
    assert last_boundary(179.9, 60) == 120
    assert last_boundary(180.0, 60) == 180


async def test_waits_until_the_next_minute_boundary() -> None:
    clock = FakeClock(1_800_000_015.25)  # 15.25 s past a minute
    boundary = await BoundarySchedule(60, clock).wait()
    assert boundary == 1_800_000_060
    assert clock.now == pytest.approx(boundary)


async def test_successive_waits_return_successive_boundaries() -> None:
    clock = FakeClock(600.5)
    schedule = BoundarySchedule(60, clock)
    assert [await schedule.wait() for _ in range(3)] == [660, 720, 780]


async def test_a_forward_jump_gives_one_boundary_not_a_burst() -> None:
    clock = FakeClock(600.5)
    clock.jump_at(630.0, +600.0)  # at 10:30 the clock is set ten minutes forward
    schedule = BoundarySchedule(60, clock)
    first = await schedule.wait()
    assert first == 1200  # the latest boundary passed, once
    assert await schedule.wait() == 1260  # then the normal rhythm, no catch-up


async def test_a_backward_jump_neither_sleeps_through_nor_repeats_in_a_burst() -> None:
    clock = FakeClock(600.5)
    clock.jump_at(650.0, -300.0)  # at 650 the clock is set back five minutes, to 350
    schedule = BoundarySchedule(60, clock)
    assert await schedule.wait() == 360  # the next boundary of the new time, not 660
    slept_before = clock.slept
    assert await schedule.wait() == 420
    assert clock.slept - slept_before == pytest.approx(60)


async def test_small_backward_adjustment_still_fires_at_the_boundary() -> None:
    clock = FakeClock(650.0)
    clock.jump_at(655.0, -2.0)
    assert await BoundarySchedule(60, clock).wait() == 660


# Contract: the fake clock behaves like the system clock in what the schedule relies on.
@pytest.mark.parametrize("clock_factory", [SystemClock, lambda: FakeClock(1000.0)])
async def test_clock_contract_sleep_advances_wall_time(clock_factory: object) -> None:
    clock = clock_factory()  # type: ignore[operator]
    before = clock.wall()
    await clock.sleep(0.05)
    elapsed = clock.wall() - before
    assert 0.045 <= elapsed < 1.0
    await asyncio.sleep(0)

"""The rolling-window limiter on a simulated clock: never more than the budget in any window."""

from __future__ import annotations

import asyncio

from daemon.rmm.ratelimit import RollingWindowLimiter


class SimClock:
    """Time that moves only when someone sleeps: exact and instant."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.now_s += max(0.0, seconds)
        await asyncio.sleep(0)


def max_in_any_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_never_more_than_the_budget_in_any_window() -> None:
    clock = SimClock()
    limiter = RollingWindowLimiter(95, 60.0, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def caller() -> None:
        for _ in range(100):
            async with limiter.slot():
                sent.append(clock())

    await asyncio.gather(*(caller() for _ in range(10)))  # 1,000 requests from 10 callers
    assert len(sent) == 1000
    assert max_in_any_window(sent, 60.0) == 95
    # And it uses the budget: 1,000 requests need 10 full windows plus a part, not more.
    assert sent[-1] - sent[0] < 11 * 60.0


async def test_pause_stops_every_caller_until_its_end() -> None:
    clock = SimClock()
    limiter = RollingWindowLimiter(10, 1.0, clock=clock, sleep=clock.sleep)
    async with limiter.slot():
        pass
    limiter.pause_until(clock() + 60.0)
    limiter.pause_until(clock() + 5.0)  # a shorter pause does not cut the longer one
    async with limiter.slot():
        pass
    assert clock() >= 1000.0 + 60.0


async def test_waits_of_a_second_or_more_are_told_before_they_start() -> None:
    """What `alertd sync` shows as "waiting N s for the rate limit"."""
    clock = SimClock()
    limiter = RollingWindowLimiter(2, 60.0, clock=clock, sleep=clock.sleep)
    told: list[tuple[float, float]] = []
    limiter.on_wait = lambda seconds: told.append((clock(), seconds))
    for _ in range(2):
        async with limiter.slot():
            pass
    async with limiter.slot():  # the third waits until the first leaves the window
        pass
    assert told == [(1000.0, 60.0)]
    limiter.pause_until(clock() + 30)  # a 429's Retry-After
    async with limiter.slot():
        pass
    assert told[1:] == [(1060.0, 30.0)]

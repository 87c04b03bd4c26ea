"""A rolling-window request budget shared by every caller of one API client.

`slot()` holds one request's place while it is sent: the client never has more than
`max_requests` requests in flight or answered within any `window_s`, so it stays under the
vendor's limit instead of discovering it by 429. A request counts in the window from when its
answer came back (or it failed), never from before it was sent: the vendor saw it at some
moment in between, so however long a request waited for a connection or an answer, the
vendor's count in any window is at most ours. `pause_until()` stops every caller (after a
429, a Retry-After or Datto's block).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

MonotonicClock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
REPORTED_WAIT_S = 1.0


class RollingWindowLimiter:
    def __init__(self, max_requests: int, window_s: float, *,
                 clock: MonotonicClock = time.monotonic, sleep: Sleep = asyncio.sleep):
        if max_requests < 1 or window_s <= 0:
            raise ValueError("a limiter needs at least one request per positive window")
        self.max_requests = max_requests
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._done_at_s: deque[float] = deque()  # when each answered request finished
        self._in_flight = 0
        self._finished = asyncio.Event()  # set when an in-flight request finishes
        self._paused_until_s = 0.0
        self._lock = asyncio.Lock()  # first come, first served: no caller starves
        # Told each wait of at least `REPORTED_WAIT_S` before it starts (a sync's progress
        # line says it waits for the rate limit rather than seem stuck).
        self.on_wait: Callable[[float], None] | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for room in the budget, then hold it while the request is made."""
        await self._reserve()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._done_at_s.append(self._clock())
            self._finished.set()

    async def _reserve(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until_s:
                    await self._wait(self._paused_until_s - now)
                    continue
                while self._done_at_s and self._done_at_s[0] <= now - self.window_s:
                    self._done_at_s.popleft()
                if self._in_flight + len(self._done_at_s) < self.max_requests:
                    self._in_flight += 1
                    return
                if self._done_at_s:  # room comes when the oldest answer leaves the window
                    await self._wait(self._done_at_s[0] + self.window_s - now)
                else:  # the whole budget is in flight: its first answer starts the clock
                    self._finished.clear()
                    await self._finished.wait()

    async def _wait(self, seconds: float) -> None:
        if self.on_wait is not None and seconds >= REPORTED_WAIT_S:
            self.on_wait(seconds)
        await self._sleep(seconds)

    def pause_until(self, until_s: float) -> None:
        """No request leaves before `until_s` (clock time); an earlier pause is kept longer."""
        self._paused_until_s = max(self._paused_until_s, until_s)

    @property
    def paused_until_s(self) -> float:
        return self._paused_until_s


def retry_after_s(header: str | None) -> float | None:
    """A `Retry-After` header in seconds (the HTTP-date form is not used by these APIs)."""
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None

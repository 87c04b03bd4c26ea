"""A rolling-window request budget shared by every caller of one API client.

`acquire()` returns when one more request fits in the window: the client never sends more than
`max_requests` in any `window_s`, so it stays under the vendor's limit instead of discovering
it by 429. `pause_until()` stops every caller (after a 429, a Retry-After or Datto's block).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RollingWindowLimiter:
    def __init__(self, max_requests: int, window_s: float, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep):
        if max_requests < 1 or window_s <= 0:
            raise ValueError("a limiter needs at least one request per positive window")
        self.max_requests = max_requests
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._sent_at_s: deque[float] = deque()
        self._paused_until_s = 0.0
        self._lock = asyncio.Lock()  # first come, first served: no caller starves

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until_s:
                    await self._sleep(self._paused_until_s - now)
                    continue
                while self._sent_at_s and self._sent_at_s[0] <= now - self.window_s:
                    self._sent_at_s.popleft()
                if len(self._sent_at_s) < self.max_requests:
                    self._sent_at_s.append(now)
                    return
                await self._sleep(self._sent_at_s[0] + self.window_s - now)

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

"""The attempt / jittered-backoff / give-up loop that every RMM client's calls run in."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from daemon.rmm.errors import RmmError
from daemon.rmm.ratelimit import Sleep

T = TypeVar("T")


class Retryable(Exception):
    """Raised by one attempt whose failure may pass if tried again (network error, 5xx, 409,
    throttling). `failure` is what the caller gets once the attempts run out; `waited`: the
    limiter was already paused for this failure (throttling), so no backoff sleep is added."""

    def __init__(self, failure: RmmError, *, waited: bool = False):
        super().__init__(str(failure))
        self.failure = failure
        self.waited = waited


async def with_retries(attempt_once: Callable[[], Awaitable[T]], *, retries: int,
                       backoff_base_s: float, sleep: Sleep) -> T:
    """Run `attempt_once` until it returns, up to `retries` more times after a `Retryable`.
    Any other exception from it propagates at once; when the attempts run out, the last
    `Retryable.failure` is raised."""
    attempt = 0
    while True:
        try:
            return await attempt_once()
        except Retryable as retry:
            failure, waited = retry.failure, retry.waited
        # Raised outside the except block so the failure carries no chained Retryable.
        attempt += 1
        if attempt > retries:
            raise failure
        if not waited:  # throttling already waits in the limiter; do not wait twice
            # Jitter spreads the retries of concurrent callers hitting the same failure.
            backoff_s = backoff_base_s * 2 ** (attempt - 1)
            await sleep(backoff_s * random.uniform(0.5, 1.5))

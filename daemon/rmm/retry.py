"""The attempt / jittered-backoff / give-up loop that every RMM client's calls run in, and
the one request exchange each attempt makes."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from daemon.rmm.errors import RmmError, Unreachable
from daemon.rmm.ratelimit import RollingWindowLimiter, Sleep

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


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    retry_after: str | None  # the Retry-After header, as sent


async def exchange(session: aiohttp.ClientSession, limiter: RollingWindowLimiter, source: str,
                   method: str, url: str, path: str, params: Mapping[str, str] | None,
                   headers: Mapping[str, str], client_timeout: aiohttp.ClientTimeout) -> Answer:
    """One request under `limiter`'s budget, read whole; a network error or timeout is a
    `Retryable(Unreachable)` (the message names the method and path, never the headers)."""
    try:
        async with limiter.slot(), session.request(method, url, params=params,
                                                   headers=dict(headers),
                                                   timeout=client_timeout) as response:
            return Answer(response.status, await response.text(),
                          response.headers.get("Retry-After"))
    except (aiohttp.ClientError, TimeoutError) as err:
        raise Retryable(Unreachable(
            source, f"{method} {path}: {type(err).__name__}: {err}")) from None

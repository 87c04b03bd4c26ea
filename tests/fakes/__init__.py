"""Shared machinery of the in-repo RMM API fakes: the call log, fault injection and the
rolling-window rate buckets that `tests.fakes.datto` and `tests.fakes.syncro` build on."""

from __future__ import annotations

import asyncio
import bisect
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Call:
    """One request a fake received, refused ones included."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    at_s: float  # the fake's clock (time.monotonic() by default) when the request arrived


@dataclass
class PathFailure:
    """A targeted failure: requests matching method and path answer `status`."""

    method: str
    path_re: re.Pattern[str]
    status: int
    remaining: int | None  # None: until clear_failures()


class RollingWindow:
    """One rate-limit bucket: the accepted requests' times, counted over a rolling window.

    The full history stays in `accepted_s` (ascending) so benchmarks can read the rate a client
    really achieved."""

    def __init__(self, limit: int, window_s: float):
        self.limit = limit
        self.window_s = window_s
        self.accepted_s: list[float] = []
        self.last_refused_s: float | None = None  # when this bucket last answered 429

    def count(self, now_s: float) -> int:
        """Requests accepted in the window ending at `now_s`."""
        return len(self.accepted_s) - bisect.bisect_right(self.accepted_s, now_s - self.window_s)

    def is_full(self, now_s: float) -> bool:
        return self.count(now_s) >= self.limit

    def add(self, now_s: float) -> None:
        self.accepted_s.append(now_s)

    def seconds_until_free(self, now_s: float) -> float:
        """How long until the oldest request in the window leaves it."""
        count = self.count(now_s)
        return max(0.0, self.accepted_s[-count] + self.window_s - now_s) if count else 0.0

    def max_in_window(self) -> int:
        """The most requests ever accepted within one window length."""
        best = start = 0
        for end, at_s in enumerate(self.accepted_s):
            while at_s - self.accepted_s[start] >= self.window_s:
                start += 1
            best = max(best, end - start + 1)
        return best


def int_query(request: web.Request, name: str, default: int) -> int:
    """An integer query parameter; a malformed one is the client's error (400)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"Parameter {name} must be an integer") from None


class FakeServer:
    """Base of the fakes: owns the aiohttp app, the call log and the injected faults.

    Every request passes, in this order: `delay_s`, `down` (503 with a plain-text page, as a
    proxy in front of the vendor answers), targeted `fail_path` failures, `fail_next` failures,
    then the subclass's `admit` (auth, permissions, rate limits), then the route. Errors of any
    kind, unknown routes included, answer in the vendor's error shape (`error_response`)."""

    def __init__(self, *, window_s: float, clock: Clock = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self.calls: list[Call] = []
        self.down = False
        self.delay_s = 0.0
        self.buckets: dict[str, RollingWindow] = {}
        self._fail_next: list[int] = []  # statuses still to answer, first one next
        self._path_failures: list[PathFailure] = []
        self._app = web.Application(middlewares=[self._middleware])

    @property
    def app(self) -> web.Application:
        """The aiohttp application; serve it with `aiohttp_server` or an `AppRunner`."""
        return self._app

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def fail_next(self, count: int, status: int = 500) -> None:
        """The next `count` requests (except those `exempt_from_fail_next`) answer `status`."""
        self._fail_next.extend([status] * count)

    def fail_path(self, method: str, path_regex: str, status: int,
                  count: int | None = None) -> None:
        """Requests whose method matches and whose path matches `path_regex` (re.search) answer
        `status`, `count` times or until `clear_failures()`."""
        self._path_failures.append(PathFailure(method, re.compile(path_regex), status, count))

    def clear_failures(self) -> None:
        self._fail_next.clear()
        self._path_failures.clear()

    def max_rate_in_window(self, bucket: str | None = None) -> int:
        """The most requests accepted within one window, for `bucket` or the first bucket."""
        return self.buckets[bucket or next(iter(self.buckets))].max_in_window()

    # --- subclass hooks ---

    def error_response(self, request: web.Request, status: int, message: str,
                       headers: dict[str, str] | None = None) -> web.Response:
        raise NotImplementedError

    def exempt_from_fail_next(self, request: web.Request) -> bool:
        return False

    async def admit(self, request: web.Request) -> web.Response | None:
        """None to let the request through, else the refusal to answer."""
        return None

    # --- request path ---

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived_s = self.clock()
        try:
            response = await self._answer(request, handler)
        except web.HTTPException as exc:  # unknown route, wrong method, malformed parameter
            response = self.error_response(request, exc.status, exc.text or exc.reason)
        self.calls.append(Call(request.method, request.path, dict(request.query),
                               response.status, arrived_s))
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        status = self._injected_failure(request)
        if status is not None:
            return self.error_response(request, status, "Injected failure")
        refusal = await self.admit(request)
        return refusal if refusal is not None else await handler(request)

    def _injected_failure(self, request: web.Request) -> int | None:
        for failure in self._path_failures:
            if failure.method == request.method and failure.path_re.search(request.path):
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._path_failures.remove(failure)
                return failure.status
        if self._fail_next and not self.exempt_from_fail_next(request):
            return self._fail_next.pop(0)
        return None

"""The HTTP listener and its limits against slow and abusive clients (`[http]`
header_timeout_s, body_timeout_s, keepalive_timeout_s, max_connections).

aiohttp bounds idle keep-alive connections (`keepalive_timeout`) but has no timeout for a
request that arrives slowly, so a few hundred clients that send half a request line each
could hold every file descriptor. `GuardedRequestHandler` is aiohttp's own protocol with:

1. a header timeout (Go's ReadHeaderTimeout): the head of the first request must be complete
   within `header_timeout_s` of the accept, that of a later one within `header_timeout_s`
   of its first byte; past it the connection is closed;
2. a body timeout: once the head is in, the body must follow within `body_timeout_s`;
3. a cap on open connections: one more is answered 503 and closed at once;
4. a malformed request (the parser's 400) answered in the JSON error shape and logged as one
   line, never a traceback (aiohttp logs each one with its traceback at ERROR).

`HttpListener` serves the application through it: an `AppRunner` runs the application's
start-up and clean-up, and a `ServerRunner` serves its handler with this protocol; both are
aiohttp's public runners, so no aiohttp internals are replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from daemon.http.errors import ERROR_CODES, error_response
from daemon.log_summary import LogSummary

log = logging.getLogger(__name__)
SUBJECT = "HTTP listener"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int


def _busy_answer() -> bytes:
    """The whole 503 answer to a connection over the cap, written before any request."""
    body = json.dumps({"error": ERROR_CODES[503],
                       "detail": "too many open connections; retry later"}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
    return head.encode() + body


_BUSY = _busy_answer()


class GuardedServer(web.Server):
    """aiohttp's `Server` (the protocol factory of the listening socket) making
    `GuardedRequestHandler`s, and counting the connections they hold."""

    def __init__(self, handler: Any, *, limits: ConnectionLimits, summary: LogSummary,
                 request_factory: Any = None, **handler_kwargs: Any):
        super().__init__(handler, request_factory=request_factory, **handler_kwargs)
        self.limits = limits
        self.summary = summary
        self.open_connections = 0
        self._handler_kwargs = {**handler_kwargs,
                                "keepalive_timeout": limits.keepalive_timeout_s}

    def __call__(self) -> web.RequestHandler:
        return GuardedRequestHandler(self, asyncio.get_running_loop(), **self._handler_kwargs)


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's HTTP/1 protocol with the header and body timeouts and the connection cap.

    It reads two fields of its base class: `_request_count` (request heads parsed so far on
    this connection) and `_messages` (the parsed requests not yet handled, newest last), to
    learn when a head is complete; `tests/component/test_hostile_http.py` pins both.
    """

    def __init__(self, manager: GuardedServer, loop: asyncio.AbstractEventLoop,
                 **kwargs: Any):
        super().__init__(manager, loop=loop, **kwargs)
        self._guard = manager
        self._timer_loop = loop
        self._counted = False  # holds one of `max_connections`
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None  # of the newest request head received

    # --- the connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open_connections >= guard.limits.max_connections:
            # Refused before aiohttp sees it: no task, no parser, the descriptor freed now.
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_BUSY)
            transport.close()
            guard.summary.note(SUBJECT, f"connection refused with 503: "
                               f"{guard.limits.max_connections} connections are open "
                               "([http] max_connections)")
            return
        guard.open_connections += 1
        self._counted = True
        super().connection_made(transport)
        # The first request's head is due within the header timeout of the accept.
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._counted:
            return  # refused in connection_made: aiohttp never knew it
        self._counted = False
        self._guard.open_connections -= 1
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._counted:
            return
        if data and self._head_timer is None and self._between_requests():
            self._arm_head_timer()  # the first byte of the next request's head
        heads_before = self._request_count
        super().data_received(data)
        if self._request_count != heads_before and self._messages:
            # A head is complete (the parser queued its request): its body is timed now.
            self._cancel_timers()
            self._body = self._messages[-1][1]
            if not self._body.is_eof():
                self._body_timer = self._timer_loop.call_later(
                    self._guard.limits.body_timeout_s, self._body_timed_out, self._body)

    def _between_requests(self) -> bool:
        return self._body is None or self._body.is_eof()

    # --- the timers -------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self._timer_loop.call_later(self._guard.limits.header_timeout_s,
                                                 self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None:
            return
        self._guard.summary.note(
            SUBJECT, f"connection closed: no complete request head within "
            f"{self._guard.limits.header_timeout_s:g} s ([http] header_timeout_s)",
            logging.INFO)
        self.force_close()

    def _body_timed_out(self, body: StreamReader) -> None:
        self._body_timer = None
        if self.transport is None or body.is_eof():
            return
        self._guard.summary.note(
            SUBJECT, f"connection closed: request body not complete within "
            f"{self._guard.limits.body_timeout_s:g} s ([http] body_timeout_s)", logging.INFO)
        self.force_close()  # the handler's read fails with ConnectionResetError

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    # --- malformed requests -----------------------------------------------------------------

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        """A request the parser refused: the JSON 400 and one summarised log line (no
        traceback, no request bytes: they may carry a token). Anything else is aiohttp's."""
        if not isinstance(exc, HttpProcessingError) or not 400 <= status < 500:
            return super().handle_error(request, status, exc, message)
        self._guard.summary.note(SUBJECT, f"malformed request answered {status}: "
                                 f"{type(exc).__name__}", logging.INFO)
        if request.writer.output_size > 0:  # as aiohttp: too late for another answer
            raise ConnectionError("a response was sent already")
        # The parser's reason is its first line; the lines after it quote the request.
        reason = str(exc.message).partition("\n")[0].rstrip(": ")[:100] or "refused"
        response = error_response(status, f"malformed HTTP request: {reason}")
        response.force_close()
        return response


class HttpListener:
    """The application served on one address with the limits above."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, shutdown_timeout_s: float,
                 summary: LogSummary | None = None):
        self._app_runner = web.AppRunner(app, access_log=None,
                                         shutdown_timeout=shutdown_timeout_s)
        self._limits = limits
        self._shutdown_timeout_s = shutdown_timeout_s
        self._summary = summary or LogSummary(log)
        self._server_runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None

    async def start(self, host: str, port: int) -> int:
        """Start the application and listen; returns the bound port."""
        await self._app_runner.setup()  # the application's start-up; its own server idles
        plain = self._app_runner.server
        assert plain is not None
        server = GuardedServer(plain.request_handler, request_factory=plain.request_factory,
                               limits=self._limits, summary=self._summary, access_log=None)
        self._server_runner = web.ServerRunner(server, shutdown_timeout=self._shutdown_timeout_s)
        await self._server_runner.setup()
        self._site = web.TCPSite(self._server_runner, host, port, reuse_address=True)
        await self._site.start()
        return self._site.port

    async def stop_accepting(self) -> None:
        """No new connections; requests in flight go on."""
        if self._site is not None:
            await self._site.stop()

    async def close(self) -> None:
        """Finish requests in flight (up to the shutdown timeout), then stop the application."""
        if self._server_runner is not None:
            await self._server_runner.cleanup()
        await self._app_runner.cleanup()

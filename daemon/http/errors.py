"""The HTTP error vocabulary: every error leaves as JSON `{"error": code, "detail": text}`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    500: "internal",
    503: "unavailable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, detail: str, headers: dict[str, str] | None = None
                   ) -> web.Response:
    body = {"error": ERROR_CODES.get(status, "error"), "detail": detail}
    return web.json_response(body, status=status, headers=headers)


class ApiError(Exception):
    """Raise from a handler to answer with a JSON error."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def _detail_of(exc: web.HTTPException) -> str:
    if exc.content_type == "application/json" and exc.text:
        try:
            return str(json.loads(exc.text).get("detail", exc.reason))
        except ValueError:
            pass
    if exc.status == 413:
        return "request body too large"
    return exc.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape; never leak a traceback to the client."""
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.detail, err.headers)
    except web.RequestPayloadError as err:
        # A body the HTTP parser could not read (bad chunked encoding, a cut gzip stream):
        # the client's fault, not a bug. str(err) names the reason, not the bytes.
        reason = str(err).partition("\n")[0][:100]
        return error_response(400, f"malformed request body: {reason}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, _detail_of(exc), headers)
    except Exception as err:
        transport = request.transport
        if isinstance(err, ConnectionError) and (transport is None or transport.is_closing()):
            # The client went away, or the listener closed a connection whose body was too
            # slow ([http] body_timeout_s): nobody reads this answer, nothing is wrong here.
            log.debug("%s %s: connection lost mid-request (%s)", request.method,
                      request.path, type(err).__name__)
            return error_response(400, "connection lost before the request was complete")
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error; the alertd log has the details")

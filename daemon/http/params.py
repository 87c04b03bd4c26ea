"""What the API routes read from a request besides the body: path ids, paging and filters,
each validated so a bad value is a 400 (or a 404 for a path id) with the reason, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon.http.errors import ApiError
from daemon.store.queries import BadFilter, Page, parse_page

_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit also takes '²')
Handler = Callable[[web.Request], Awaitable[web.Response]]


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not _ID.fullmatch(raw):
        raise ApiError(404, f"no such id: {raw!r}")
    return int(raw)


def json_object(body: Any, allowed: set[str]) -> dict[str, Any]:
    """`body` as a JSON object with only `allowed` keys (a typo must not pass silently)."""
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(unknown)}")
    return body


def text_param(request: web.Request, name: str) -> str | None:
    """A text query parameter as given. NUL is refused: PostgreSQL text cannot hold it, so
    it could only ever fail deep in a query."""
    value = request.query.get(name)
    if value is not None and "\x00" in value:
        raise BadFilter(f"'{name}' must not contain NUL characters")
    return value


def filters(request: web.Request, *names: str) -> dict[str, str | None]:
    """The named query parameters as given (the read views check their values: BadFilter)."""
    return {name: text_param(request, name) for name in names}


def page(request: web.Request) -> Page:
    return parse_page(request.query.get("limit"), request.query.get("before_id"))


def listing_call(handler: Handler) -> Handler:
    """Translate a bad filter into a 400."""
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except BadFilter as err:
            raise ApiError(400, str(err)) from None
    return wrapped

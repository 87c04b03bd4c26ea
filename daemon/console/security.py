"""The console's guard: every /ui/ answer gets the security headers; every page but sign-in
needs a live session; every POST must come from this site and carry its CSRF token.

A refused POST changes nothing: the checks run before the handler.
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from daemon.console.state import (
    CONSOLE,
    SESSION_COOKIE,
    SESSION_KEY,
    SIGNIN_COOKIE,
    redirect,
    render,
)
from daemon.http.app import CONTEXT

# `default-src 'self'`: no inline script or style, nothing from elsewhere; and no framing.
CONTENT_SECURITY_POLICY = ("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                           "form-action 'self'; object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PUBLIC_PATHS = frozenset({"/ui/signin"})
STATIC_PREFIX = "/ui/static/"


def is_console_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_console_path(request.path):
        return await handler(request)
    response = await _guarded(request, handler)
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith(STATIC_PREFIX):
        response.headers["Cache-Control"] = "no-store"  # pages hold alert data
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(STATIC_PREFIX):
        return await handler(request)
    if request.method == "POST" and not _same_site(request):
        return refused(request, "the form was posted from another site")
    state = request.app[CONSOLE]
    secret = request.cookies.get(SESSION_COOKIE)
    session = await state.sessions.find(secret, state.clock()) if secret else None
    if session is not None and not request.app[CONTEXT].tokens.accepts_digest(
            session.token_sha256):
        await state.sessions.close(secret or "")  # its token was removed by a reload
        session = None
    if session is not None:
        request[SESSION_KEY] = session
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    if session is None:
        if request.method == "POST":
            return refused(request, "not signed in (or the session ended)", status=401)
        return redirect(f"/ui/signin?next={quote(request.path_qs, safe='')}")
    if request.method == "POST":
        form = await request.post()
        presented = form.get("csrf")
        if not isinstance(presented, str) or not hmac.compare_digest(
                presented.encode(), session.csrf_token.encode()):
            return refused(request, "the form's security token is missing or wrong; reload "
                                    "the page and try again")
    return await handler(request)


def signin_nonce_matches(request: web.Request, presented: object) -> bool:
    """The sign-in form's double-submit check (there is no session to hold a token yet)."""
    cookie = request.cookies.get(SIGNIN_COOKIE)
    return bool(cookie) and isinstance(presented, str) and hmac.compare_digest(
        presented.encode(), (cookie or "").encode())


def refused(request: web.Request, reason: str, status: int = 403) -> web.Response:
    return render(request, "error.html", status=status, title="Refused", message=reason)


def _same_site(request: web.Request) -> bool:
    """Whether a POST comes from a page of this site, as far as the browser says.

    Browsers send Sec-Fetch-Site; under our `Referrer-Policy: no-referrer` their Origin on a
    POST is "null", so Origin decides only when it names a site. A request that says neither
    is not a browser's cross-site form; it still needs the CSRF token (or sign-in nonce)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    allowed = request.app[CONSOLE].origins | {f"{request.scheme}://{request.host}".lower()}
    return origin.lower() in allowed

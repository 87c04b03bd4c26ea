"""Sign in with an API token, sign out."""

from __future__ import annotations

import secrets

from aiohttp import web

from daemon.console.security import signin_nonce_matches
from daemon.console.state import (
    CONSOLE,
    SESSION_COOKIE,
    SESSION_KEY,
    SIGNIN_COOKIE,
    redirect,
    render,
)
from daemon.http.app import CONTEXT

SIGNIN_FAILURES = "console_signin"  # the realm of alertd_auth_failures_total


def _next_page(value: object) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if isinstance(value, str) and value.startswith("/ui/") and not value.startswith("//"):
        return value
    return "/ui/tickets"


async def signin_page(request: web.Request, error: str | None = None, status: int = 200
                      ) -> web.Response:
    if request.get(SESSION_KEY) is not None and error is None:
        return redirect(_next_page(request.query.get("next")))
    nonce = secrets.token_urlsafe(24)
    response = render(request, "signin.html", status=status, error=error, nonce=nonce,
                      next=_next_page(request.query.get("next")))
    response.set_cookie(SIGNIN_COOKIE, nonce, path="/ui/signin", httponly=True,
                        samesite="Strict", secure=request.app[CONSOLE].secure_cookies)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not signin_nonce_matches(request, form.get("nonce")):
        return await signin_page(request, "The sign-in form expired; please try again.", 403)
    ctx = request.app[CONTEXT]
    token = form.get("token")
    digest = ctx.tokens.digest_of(token) if isinstance(token, str) else None
    if digest is None:
        ctx.metrics.auth_failures.labels(SIGNIN_FAILURES).inc()
        return await signin_page(request, "That API token is not accepted.", 401)
    state = request.app[CONSOLE]
    secret, _ = await state.sessions.open(digest, state.clock())
    response = redirect(_next_page(form.get("next")))
    response.set_cookie(SESSION_COOKIE, secret, path="/ui", httponly=True, samesite="Strict",
                        secure=state.secure_cookies)
    response.del_cookie(SIGNIN_COOKIE, path="/ui/signin")
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        await request.app[CONSOLE].sessions.close(secret)
    response = redirect("/ui/signin")
    response.del_cookie(SESSION_COOKIE, path="/ui")
    return response

"""What every console page shares: the templates, the sessions, and rendering with the page's
security context (CSRF token, navigation)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from daemon import __version__
from daemon.core.clock import Clock
from daemon.store.queries import Page, parse_page
from daemon.store.sessions import ConsoleSessions, SessionInfo

if TYPE_CHECKING:
    from jinja2 import Environment

SESSION_COOKIE = "alertd_session"
SIGNIN_COOKIE = "alertd_signin"  # double-submit nonce of the sign-in form (no session yet)
# The pages in the navigation bar: (path, label).
NAVIGATION = (("/ui/tickets", "Tickets"), ("/ui/browse", "Customers & assets"),
              ("/ui/maintenance", "Maintenance"), ("/ui/deliveries", "Deliveries"),
              ("/ui/outbox", "Outbox"), ("/ui/rules", "Rules"),
              ("/ui/webhooks", "Webhooks"), ("/ui/sync", "Sync"), ("/ui/status", "Status"))


@dataclass
class ConsoleState:
    sessions: ConsoleSessions
    clock: Clock
    secure_cookies: bool  # public_url is https: cookies only over TLS
    origins: frozenset[str]  # scheme://host[:port] a form may be posted from, besides the request's

    @cached_property
    def templates(self) -> Environment:
        return template_environment()  # at the first page: jinja2 is not loaded before


CONSOLE = web.AppKey("alertd.console", ConsoleState)
SESSION_KEY = web.RequestKey("alertd.console.session", SessionInfo)  # a signed-in request's


def template_environment() -> Environment:
    """Autoescaped templates from the package: alert text is data, never markup."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("daemon.console"), undefined=StrictUndefined,
                      autoescape=select_autoescape(default=True), trim_blocks=True,
                      lstrip_blocks=True)
    env.globals["version"] = __version__
    env.filters["when"] = _when
    env.filters["age"] = _age
    return env


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


def render(request: web.Request, template: str, status: int = 200, **context: Any
           ) -> web.Response:
    state = request.app[CONSOLE]
    session: SessionInfo | None = request.get(SESSION_KEY)
    html = state.templates.get_template(template).render(
        csrf=session.csrf_token if session else "", signed_in=session is not None,
        navigation=NAVIGATION, path=request.path, now=state.clock(), **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


PAGE_SIZE = 50  # rows of a console list
_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit also takes '²')


def parse_id(raw: str) -> int | None:
    """An id from the path, or None for anything that is not one (the page answers 404)."""
    return int(raw) if _ID.fullmatch(raw) else None


def list_page(request: web.Request) -> Page:
    """The page of a list the request asks for (`?before_id=`); raises `BadFilter`."""
    return parse_page(str(PAGE_SIZE), request.query.get("before_id") or None)


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser loads the page with GET."""
    return web.Response(status=303, headers={"Location": location})


def _when(value: str | None) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM` (UTC)."""
    return value[:16].replace("T", " ") if value else ""


def _age(value: str | None, now: datetime) -> str:
    """How long ago an ISO timestamp was: `45 s`, `12 min`, `3 h`, `4 d`."""
    if not value:
        return ""
    seconds = (now - datetime.fromisoformat(value.replace("Z", "+00:00"))).total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{max(0, int(seconds))} s"

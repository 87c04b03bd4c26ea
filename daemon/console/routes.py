"""The console's routes, mounted on the one HTTP app (`setup_console_routes`). Each page's
module, and jinja2 with the templates, is loaded at the first request that needs it
(`lazy_handler`): an alertd nobody browses does not hold them in memory."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from daemon.console.security import console_middleware
from daemon.console.state import (
    CONSOLE,
    ConsoleState,
    origin_of,
    redirect,
    render,
)
from daemon.core.clock import utcnow
from daemon.http.app import CONTEXT, add_lazy_routes
from daemon.store.sessions import ConsoleSessions

STATIC_DIR = Path(__file__).parent / "static"
# The entities of /ui/browse/<entity> (daemon.console.browse.ENTITIES, held equal by a test).
BROWSE_ENTITIES = ("customers", "sites", "assets", "end-users")
# (method, path, "module:handler" under daemon.console)
PAGES = (
    ("GET", "/ui/signin", "signin:signin_page"),
    ("POST", "/ui/signin", "signin:signin"),
    ("POST", "/ui/signout", "signin:signout"),
    ("GET", "/ui/tickets", "tickets:tickets_page"),
    ("GET", "/ui/tickets/{id}", "tickets:ticket_page"),
    ("POST", "/ui/tickets/{id}/notes", "tickets:add_note"),
    ("POST", "/ui/tickets/{id}/close", "tickets:close_ticket"),
    ("GET", "/ui/deliveries", "deliveries:deliveries_page"),
    ("GET", "/ui/deliveries/{id}", "deliveries:delivery_page"),
    ("GET", "/ui/deliveries/{id}/raw", "deliveries:delivery_raw"),
    ("POST", "/ui/deliveries/{id}/replay", "deliveries:replay"),
    ("GET", "/ui/maintenance", "maintenance:maintenance_page"),
    ("POST", "/ui/maintenance", "maintenance:add_window"),
    ("POST", "/ui/maintenance/{id}/end", "maintenance:end_window"),
    ("GET", "/ui/outbox", "outbox:outbox_page"),
    ("POST", "/ui/outbox/{id}/{action:retry|drop}", "outbox:change"),
    ("GET", "/ui/rules", "rules:rules_page"),
    ("POST", "/ui/rules/test", "rules:test_message"),
    ("GET", "/ui/webhooks", "admin:webhooks_page"),
    ("GET", "/ui/sync", "admin:sync_page"),
    ("POST", "/ui/sync/{source}/{action:preview|run}", "admin:run_sync"),
    ("GET", "/ui/status", "admin:status_page"),
    ("GET", f"/ui/browse/{{entity:{'|'.join(BROWSE_ENTITIES)}}}", "browse:browse_page"),
)


async def home(request: web.Request) -> web.Response:
    return redirect("/ui/tickets")


async def browse_home(request: web.Request) -> web.Response:
    return redirect("/ui/browse/customers")


async def not_found(request: web.Request) -> web.Response:
    return render(request, "error.html", status=404, title="Not found",
                  message="There is no such page in the console.")


def setup_console_routes(app: web.Application) -> None:
    ctx = app[CONTEXT]
    public = ctx.config.public_url
    app[CONSOLE] = ConsoleState(
        sessions=ConsoleSessions(ctx.db, ctx.config.console.session_idle_s),
        clock=utcnow, secure_cookies=public.startswith("https://"),
        origins=frozenset(o for o in (origin_of(public),) if o))
    app.middlewares.append(console_middleware)
    router = app.router
    router.add_get("/", home)
    router.add_get("/ui", home)
    router.add_get("/ui/", home)
    router.add_static("/ui/static", STATIC_DIR, append_version=False)
    add_lazy_routes(app, PAGES, "daemon.console")
    router.add_get("/ui/browse", browse_home)
    router.add_route("*", "/ui/{tail:.*}", not_found)

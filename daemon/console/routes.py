"""The console's routes, mounted on the one HTTP app (`setup_console_routes`)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from daemon.console import (
    admin,
    browse,
    deliveries,
    maintenance,
    outbox,
    rules,
    signin,
    tickets,
)
from daemon.console.security import console_middleware
from daemon.console.state import (
    CONSOLE,
    ConsoleState,
    origin_of,
    redirect,
    render,
    template_environment,
)
from daemon.core.clock import utcnow
from daemon.http.app import CONTEXT
from daemon.store.sessions import ConsoleSessions

STATIC_DIR = Path(__file__).parent / "static"


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
        templates=template_environment(),
        sessions=ConsoleSessions(ctx.db, ctx.config.console.session_idle_s),
        clock=utcnow, secure_cookies=public.startswith("https://"),
        origins=frozenset(o for o in (origin_of(public),) if o))
    app.middlewares.append(console_middleware)
    router = app.router
    router.add_get("/", home)
    router.add_get("/ui", home)
    router.add_get("/ui/", home)
    router.add_static("/ui/static", STATIC_DIR, append_version=False)
    router.add_get("/ui/signin", signin.signin_page)
    router.add_post("/ui/signin", signin.signin)
    router.add_post("/ui/signout", signin.signout)
    router.add_get("/ui/tickets", tickets.tickets_page)
    router.add_get("/ui/tickets/{id}", tickets.ticket_page)
    router.add_post("/ui/tickets/{id}/notes", tickets.add_note)
    router.add_post("/ui/tickets/{id}/close", tickets.close_ticket)
    router.add_get("/ui/deliveries", deliveries.deliveries_page)
    router.add_get("/ui/deliveries/{id}", deliveries.delivery_page)
    router.add_get("/ui/deliveries/{id}/raw", deliveries.delivery_raw)
    router.add_post("/ui/deliveries/{id}/replay", deliveries.replay)
    router.add_get("/ui/maintenance", maintenance.maintenance_page)
    router.add_post("/ui/maintenance", maintenance.add_window)
    router.add_post("/ui/maintenance/{id}/end", maintenance.end_window)
    router.add_get("/ui/outbox", outbox.outbox_page)
    router.add_post("/ui/outbox/{id}/{action:retry|drop}", outbox.change)
    router.add_get("/ui/rules", rules.rules_page)
    router.add_post("/ui/rules/test", rules.test_message)
    router.add_get("/ui/webhooks", admin.webhooks_page)
    router.add_get("/ui/sync", admin.sync_page)
    router.add_post("/ui/sync/{source}/{action:preview|run}", admin.run_sync)
    router.add_get("/ui/status", admin.status_page)
    entities = "|".join(browse.ENTITIES)
    router.add_get(f"/ui/browse/{{entity:{entities}}}", browse.browse_page)
    router.add_get("/ui/browse", browse_home)
    router.add_route("*", "/ui/{tail:.*}", not_found)

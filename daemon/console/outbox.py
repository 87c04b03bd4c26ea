"""The outbox page: the calls alertd owes the RMMs (resolves), with "Retry" and "Drop" for the
ones waiting or given up on."""

from __future__ import annotations

from aiohttp import web

from daemon.console.state import list_page, parse_id, redirect, render
from daemon.http.app import CONTEXT
from daemon.rmm.outbox import OutboxRefused
from daemon.store.queries import BadFilter


async def outbox_page(request: web.Request, error: str | None = None, status: int = 200
                      ) -> web.Response:
    chosen = request.query.get("status") or None
    try:
        listing = await request.app[CONTEXT].queries.outbox(list_page(request), status=chosen)
    except BadFilter as err:
        listing, error, status = {"items": [], "next_before_id": None}, str(err), 400
    return render(request, "outbox.html", status=status, listing=listing, chosen=chosen,
                  error=error)


async def change(request: web.Request) -> web.Response:
    raw_id, action = request.match_info["id"], request.match_info["action"]
    row_id = parse_id(raw_id)
    if row_id is None:
        return await outbox_page(request, f"There is no outbox row {raw_id}.", 404)
    outbox = request.app[CONTEXT].outbox
    try:
        await (outbox.retry(row_id) if action == "retry" else outbox.drop(row_id))
    except LookupError:
        return await outbox_page(request, f"There is no outbox row {raw_id}.", 404)
    except OutboxRefused as err:
        return await outbox_page(request, str(err), 409)
    return redirect("/ui/outbox")

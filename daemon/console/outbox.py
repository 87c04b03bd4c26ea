"""The outbox page: the calls alertd owes the RMMs (resolves), with "Retry" and "Drop" for the
ones waiting or given up on."""

from __future__ import annotations

import re

from aiohttp import web

from daemon.console.state import redirect, render
from daemon.http.app import CONTEXT
from daemon.rmm.outbox import OutboxRefused
from daemon.store.queries import BadFilter, Page

PAGE_SIZE = 50
_ID = re.compile(r"[0-9]{1,18}")


async def outbox_page(request: web.Request, error: str | None = None, status: int = 200
                      ) -> web.Response:
    chosen = request.query.get("status") or None
    before = request.query.get("before_id")
    try:
        page = Page(PAGE_SIZE, int(before) if before and _ID.fullmatch(before) else None)
        listing = await request.app[CONTEXT].queries.outbox(page, status=chosen)
    except BadFilter as err:
        listing, error, status = {"items": [], "next_before_id": None}, str(err), 400
    return render(request, "outbox.html", status=status, listing=listing, chosen=chosen,
                  error=error)


async def change(request: web.Request) -> web.Response:
    raw_id, action = request.match_info["id"], request.match_info["action"]
    if not _ID.fullmatch(raw_id):
        return await outbox_page(request, f"There is no outbox row {raw_id}.", 404)
    outbox = request.app[CONTEXT].outbox
    try:
        await (outbox.retry(int(raw_id)) if action == "retry" else outbox.drop(int(raw_id)))
    except LookupError:
        return await outbox_page(request, f"There is no outbox row {raw_id}.", 404)
    except OutboxRefused as err:
        return await outbox_page(request, str(err), 409)
    return redirect("/ui/outbox")

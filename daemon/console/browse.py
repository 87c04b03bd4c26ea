"""The browse pages: customers, sites, assets and end users the sync imported, searchable,
each linked to what it belongs to and to its tickets."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon.console.state import list_page, render
from daemon.http.app import CONTEXT
from daemon.store.queries import BadFilter

# entity -> (title, Browse method, filters it takes besides q)
ENTITIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "customers": ("Customers", "customers", ()),
    "sites": ("Sites", "sites", ("customer_id",)),
    "assets": ("Assets", "assets", ("customer_id", "site_id")),
    "end-users": ("End users", "end_users", ("customer_id",)),
}


async def browse_page(request: web.Request) -> web.Response:
    entity = request.match_info["entity"]
    title, method, filter_names = ENTITIES[entity]
    filters: dict[str, Any] = {name: request.query.get(name) or None
                               for name in ("q", *filter_names)}
    error = None
    try:
        listing = await getattr(request.app[CONTEXT].browse, method)(list_page(request),
                                                                       **filters)
    except BadFilter as err:
        listing, error = {"items": [], "next_before_id": None}, str(err)
    return render(request, "browse.html", status=400 if error else 200, entity=entity,
                  title=title, listing=listing, filters=filters, error=error,
                  entities=ENTITIES)

"""The JSON API over the reference data the sync imports: GET /api/customers, /api/sites,
/api/assets and /api/end-users (daemon.store.browse)."""

from __future__ import annotations

from aiohttp import web

from daemon.http.app import CONTEXT
from daemon.http.params import filters, listing_call, page


@listing_call
async def list_customers(request: web.Request) -> web.Response:
    browse = request.app[CONTEXT].browse
    return web.json_response(await browse.customers(page(request),
                                                    **filters(request, "q", "active")))


@listing_call
async def list_sites(request: web.Request) -> web.Response:
    browse = request.app[CONTEXT].browse
    return web.json_response(await browse.sites(
        page(request), **filters(request, "q", "customer_id", "active")))


@listing_call
async def list_assets(request: web.Request) -> web.Response:
    browse = request.app[CONTEXT].browse
    return web.json_response(await browse.assets(
        page(request), **filters(request, "q", "customer_id", "site_id", "active")))


@listing_call
async def list_end_users(request: web.Request) -> web.Response:
    browse = request.app[CONTEXT].browse
    return web.json_response(await browse.end_users(
        page(request), **filters(request, "q", "customer_id", "active")))


def setup_browse_routes(app: web.Application) -> None:
    app.router.add_get("/api/customers", list_customers)
    app.router.add_get("/api/sites", list_sites)
    app.router.add_get("/api/assets", list_assets)
    app.router.add_get("/api/end-users", list_end_users)

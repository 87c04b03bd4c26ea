"""The JSON API over the reference data the sync imports: GET /api/customers, /api/sites,
/api/assets and /api/end-users (daemon.store.browse)."""

from __future__ import annotations

from aiohttp import web

from daemon.http.app import CONTEXT
from daemon.http.models import AssetQuery, CustomerQuery, EndUserQuery, SiteQuery
from daemon.http.params import listing_call, listing_query


@listing_call
async def list_customers(request: web.Request) -> web.Response:
    page, filters = listing_query(request, CustomerQuery)
    return web.json_response(await request.app[CONTEXT].browse.customers(page, **filters))


@listing_call
async def list_sites(request: web.Request) -> web.Response:
    page, filters = listing_query(request, SiteQuery)
    return web.json_response(await request.app[CONTEXT].browse.sites(page, **filters))


@listing_call
async def list_assets(request: web.Request) -> web.Response:
    page, filters = listing_query(request, AssetQuery)
    return web.json_response(await request.app[CONTEXT].browse.assets(page, **filters))


@listing_call
async def list_end_users(request: web.Request) -> web.Response:
    page, filters = listing_query(request, EndUserQuery)
    return web.json_response(await request.app[CONTEXT].browse.end_users(page, **filters))


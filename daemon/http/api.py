"""The JSON API under /api: tickets, alerts, deliveries, and normalised alert ingestion."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from daemon.core.canonical import canonical_sha256
from daemon.core.events import Channel, is_source_name
from daemon.core.lifecycle import TicketAlreadyClosed
from daemon.http.api_admin import setup_admin_routes
from daemon.http.api_browse import setup_browse_routes
from daemon.http.api_status import setup_status_routes
from daemon.http.app import CONTEXT
from daemon.http.errors import ApiError
from daemon.http.openapi import openapi_document
from daemon.http.params import filters, json_object, listing_call, page, path_id
from daemon.http.submissions import ingest_and_answer, read_json_body, result_body
from daemon.intake.deliveries import ReplayRefused
from daemon.intake.inbound import Inbound
from daemon.rmm.check import check_source
from daemon.rmm.outbox import OutboxRefused
from daemon.tickets.transitions import MAX_NOTE_CHARS, TicketNotFound

# Printable ASCII: the key is stored in a text column, and header bytes that are not UTF-8
# reach the handler as lone surrogates, which no column can hold.
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,200}")


@listing_call
async def list_tickets(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await ctx.queries.tickets(page(request), **filters(
        request, "status", "alert_uid", "source", "customer_id", "site_id", "q"))
    return web.json_response(body)


async def get_ticket(request: web.Request) -> web.Response:
    ticket = await request.app[CONTEXT].queries.ticket(path_id(request))
    if ticket is None:
        raise ApiError(404, "ticket not found")
    return web.json_response(ticket)


def _text_field(body: dict[str, Any], name: str, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"'{name}' must be a string")
    if required and not value.strip():
        raise ApiError(422, f"'{name}' must not be empty")
    if len(value) > MAX_NOTE_CHARS:
        raise ApiError(422, f"'{name}' is longer than {MAX_NOTE_CHARS} characters")
    return value


def _actor(body: dict[str, Any]) -> str:
    name = _text_field(body, "actor", required=False)
    return f"agent:{name[:100]}" if name else "agent:api"


async def close_ticket(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ticket_id = path_id(request)
    _, parsed = await read_json_body(request, optional=True)
    body = json_object(parsed, {"note", "actor"})
    note = _text_field(body, "note", required=False)
    try:
        await ctx.agent.close(ticket_id, _actor(body), note)
    except TicketNotFound:
        raise ApiError(404, "ticket not found") from None
    except TicketAlreadyClosed:
        raise ApiError(409, "ticket is already closed") from None
    return web.json_response(await ctx.queries.ticket(ticket_id))


async def add_note(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ticket_id = path_id(request)
    _, parsed = await read_json_body(request)
    body = json_object(parsed, {"body", "actor"})
    text = _text_field(body, "body", required=True)
    assert text is not None
    try:
        await ctx.agent.add_note(ticket_id, _actor(body), text)
    except TicketNotFound:
        raise ApiError(404, "ticket not found") from None
    return web.json_response(await ctx.queries.ticket(ticket_id), status=201)


@listing_call
async def list_alerts(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response(
        await ctx.queries.alerts(page(request), **filters(request, "source", "uid", "state")))


async def get_alert(request: web.Request) -> web.Response:
    alert = await request.app[CONTEXT].queries.alert(path_id(request))
    if alert is None:
        raise ApiError(404, "alert not found")
    return web.json_response(alert)


async def ingest_alert(request: web.Request) -> web.Response:
    """POST /api/alerts: store the event and apply it (201), or keep it for the retry sweep
    (202) or as rejected (422)."""
    ctx = request.app[CONTEXT]
    raw, body = await read_json_body(request)
    # Identical events are one delivery however their JSON is spaced or ordered.
    body_sha256 = canonical_sha256(body)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise ApiError(400, "Idempotency-Key must be 1 to 200 printable ASCII characters")
    dedupe_key = f"key:{idempotency_key}" if idempotency_key else f"sha256:{body_sha256}"
    source = body.get("source") if isinstance(body, dict) else None
    inbound = Inbound(
        channel=Channel.API, dedupe_key=dedupe_key, payload=raw,
        content_type="application/json",
        source=source if is_source_name(source) else None,
        meta={"remote": request.remote, "body_sha256": body_sha256},
    )
    return await ingest_and_answer(ctx, inbound)


@listing_call
async def list_deliveries(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response(
        await ctx.queries.deliveries(page(request),
                                     **filters(request, "status", "channel", "source")))


async def get_delivery(request: web.Request) -> web.Response:
    delivery = await request.app[CONTEXT].queries.delivery(path_id(request))
    if delivery is None:
        raise ApiError(404, "delivery not found")
    return web.json_response(delivery)


async def replay_delivery(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    delivery_id = path_id(request)
    try:
        result = await ctx.pipeline.replay(delivery_id)
    except LookupError:
        raise ApiError(404, "delivery not found") from None
    except ReplayRefused as err:
        raise ApiError(409, str(err)) from None
    if result is None:  # another worker or process got to it first
        return web.json_response(result_body(delivery_id, False, None, None))
    return web.json_response(result_body(delivery_id, False, result.status, result.error,
                                         result.events))


@listing_call
async def list_outbox(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response(await ctx.queries.outbox(page(request),
                                                      **filters(request, "status", "source")))


async def change_outbox(request: web.Request, change: str) -> web.Response:
    ctx = request.app[CONTEXT]
    row_id = path_id(request)
    try:
        await (ctx.outbox.retry(row_id) if change == "retry" else ctx.outbox.drop(row_id))
    except LookupError:
        raise ApiError(404, "outbox row not found") from None
    except OutboxRefused as err:
        raise ApiError(409, str(err)) from None
    return web.json_response(await ctx.queries.outbox_row(row_id))


async def retry_outbox(request: web.Request) -> web.Response:
    return await change_outbox(request, "retry")


async def drop_outbox(request: web.Request) -> web.Response:
    return await change_outbox(request, "drop")


@listing_call
async def list_sync_runs(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response(await ctx.queries.sync_runs(page(request),
                                                         **filters(request, "source")))


async def test_rmm(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        result = await check_source(request.match_info["name"], ctx.rmm)
    except LookupError as err:
        raise ApiError(404, str(err)) from None
    return web.json_response(result.as_json())


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[CONTEXT].config.public_url))


def setup_api_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/api/openapi.json", openapi_json)
    router.add_get("/api/tickets", list_tickets)
    router.add_get("/api/tickets/{id}", get_ticket)
    router.add_post("/api/tickets/{id}/close", close_ticket)
    router.add_post("/api/tickets/{id}/notes", add_note)
    router.add_get("/api/alerts", list_alerts)
    router.add_post("/api/alerts", ingest_alert)
    router.add_get("/api/alerts/{id}", get_alert)
    router.add_get("/api/deliveries", list_deliveries)
    router.add_get("/api/deliveries/{id}", get_delivery)
    router.add_post("/api/deliveries/{id}/replay", replay_delivery)
    router.add_get("/api/outbox", list_outbox)
    router.add_post("/api/outbox/{id}/retry", retry_outbox)
    router.add_post("/api/outbox/{id}/drop", drop_outbox)
    router.add_post("/api/rmm/{name}/test", test_rmm)
    router.add_get("/api/sync/runs", list_sync_runs)
    setup_browse_routes(app)
    setup_admin_routes(app)
    setup_status_routes(app)

"""The JSON API under /api: tickets, alerts, deliveries, and normalised alert ingestion."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from daemon.core.canonical import canonical_sha256
from daemon.core.events import Channel, is_source_name
from daemon.core.lifecycle import TicketAlreadyClosed
from daemon.http.app import CONTEXT
from daemon.http.errors import ApiError
from daemon.http.models import (
    AlertEventBody,
    AlertQuery,
    CloseBody,
    DeliveryQuery,
    IngestHeaders,
    NoteBody,
    OutboxQuery,
    SyncRunQuery,
    TicketQuery,
    describe,
)
from daemon.http.openapi import openapi_document
from daemon.http.params import body_of, headers_of, listing_call, listing_query, path_id
from daemon.http.submissions import ingest_and_answer, read_json_body, result_body
from daemon.intake.deliveries import ReplayRefused
from daemon.intake.inbound import Inbound
from daemon.rmm.check import check_source
from daemon.rmm.outbox import OutboxRefused
from daemon.store.timeline import alert_trail
from daemon.tickets.transitions import TicketNotFound


@listing_call
async def list_tickets(request: web.Request) -> web.Response:
    page, filters = listing_query(request, TicketQuery)
    return web.json_response(await request.app[CONTEXT].queries.tickets(page, **filters))


async def get_ticket(request: web.Request) -> web.Response:
    ticket = await request.app[CONTEXT].queries.ticket(path_id(request))
    if ticket is None:
        raise ApiError(404, "ticket not found")
    return web.json_response(ticket)


def _actor(name: str) -> str:
    return f"agent:{name[:100]}" if name else "agent:api"


async def close_ticket(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ticket_id = path_id(request)
    _, parsed = await read_json_body(request, optional=True)
    body = body_of(CloseBody, parsed)
    try:
        result = await ctx.agent.close(ticket_id, _actor(body.actor), body.note or None)
    except TicketNotFound:
        raise ApiError(404, "ticket not found") from None
    except TicketAlreadyClosed:
        raise ApiError(409, "ticket is already closed") from None
    return web.json_response({**await ctx.queries.ticket(ticket_id),  # type: ignore[dict-item]
                              "closing": result.closing()})


async def add_note(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ticket_id = path_id(request)
    _, parsed = await read_json_body(request)
    body = body_of(NoteBody, parsed)
    try:
        await ctx.agent.add_note(ticket_id, _actor(body.actor), body.body)
    except TicketNotFound:
        raise ApiError(404, "ticket not found") from None
    return web.json_response(await ctx.queries.ticket(ticket_id), status=201)


@listing_call
async def list_alerts(request: web.Request) -> web.Response:
    page, filters = listing_query(request, AlertQuery)
    return web.json_response(await request.app[CONTEXT].queries.alerts(page, **filters))


async def get_alert(request: web.Request) -> web.Response:
    alert = await request.app[CONTEXT].queries.alert(path_id(request))
    if alert is None:
        raise ApiError(404, "alert not found")
    return web.json_response(alert)


async def get_alert_trail(request: web.Request) -> web.Response:
    trail = await alert_trail(request.app[CONTEXT].db, path_id(request))
    if trail is None:
        raise ApiError(404, "alert not found")
    return web.json_response(trail)


async def ingest_alert(request: web.Request) -> web.Response:
    """POST /api/alerts: store the event and apply it (201), or keep it for the retry sweep
    (202) or as rejected (422: the body does not fit `AlertEventBody`, stored with the
    reason so an admin sees what was sent)."""
    ctx = request.app[CONTEXT]
    raw, body = await read_json_body(request)
    # Identical events are one delivery however their JSON is spaced or ordered.
    body_sha256 = canonical_sha256(body)
    idempotency_key = headers_of(request, IngestHeaders).idempotency_key
    dedupe_key = f"key:{idempotency_key}" if idempotency_key else f"sha256:{body_sha256}"
    try:
        AlertEventBody.model_validate(body)
        rejected_reason = None
    except ValidationError as err:
        rejected_reason = describe(err)
    source = body.get("source") if isinstance(body, dict) else None
    inbound = Inbound(
        channel=Channel.API, dedupe_key=dedupe_key, payload=raw,
        content_type="application/json",
        source=source if is_source_name(source) else None,
        meta={"remote": request.remote, "body_sha256": body_sha256},
        rejected_reason=rejected_reason, document=body,
    )
    return await ingest_and_answer(ctx, inbound)


@listing_call
async def list_deliveries(request: web.Request) -> web.Response:
    page, filters = listing_query(request, DeliveryQuery)
    return web.json_response(await request.app[CONTEXT].queries.deliveries(page, **filters))


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
    page, filters = listing_query(request, OutboxQuery)
    return web.json_response(await request.app[CONTEXT].queries.outbox(page, **filters))


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
    page, filters = listing_query(request, SyncRunQuery)
    return web.json_response(await request.app[CONTEXT].queries.sync_runs(page, **filters))


async def test_rmm(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        result = await check_source(request.match_info["name"], ctx.rmm)
    except LookupError as err:
        raise ApiError(404, str(err)) from None
    return web.json_response(result.as_json())


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[CONTEXT].config.public_url))


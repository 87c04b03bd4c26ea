"""Store-then-apply for every HTTP intake route (`POST /api/alerts`, the webhooks).

The answer is sent only after the delivery is committed: 201 applied now, 202 stored but not
applied now (retried when due, or failed and replayable), 200 an identical earlier delivery,
422 authenticated but invalid (kept as a rejected delivery to show why), 503 storage down.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from daemon.core.events import Interpretation, RawDelivery
from daemon.http.app import AppContext
from daemon.http.errors import ApiError
from daemon.pipeline import InboundDelivery, ProcessResult

APPLIED = ("processed", "ignored")
JSON_TYPES = ("application/json",)


async def read_json_body(request: web.Request, optional: bool = False) -> tuple[bytes, Any]:
    """(raw bytes, parsed JSON); 415 for another content type, 400 for malformed JSON."""
    if optional and not request.can_read_body:
        return b"", {}
    if request.content_type not in JSON_TYPES:
        raise ApiError(415, "expected Content-Type: application/json, "
                            f"got {request.content_type!r}")
    raw = await request.read()
    try:
        return raw, json.loads(raw)
    except ValueError as err:
        raise ApiError(400, f"malformed JSON: {err}") from None


def canonical_sha256(body: Any) -> str:
    """One digest per JSON value however it is spaced or ordered: identical retries match."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def result_body(delivery_id: int, duplicate: bool, result: ProcessResult | None
                ) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "duplicate": duplicate,
        "status": result.status.value if result else None,
        "error": result.error if result else None,
        "events": [
            {"alert_id": e.alert_id, "outcome": e.outcome, "ticket_id": e.ticket_id}
            for e in (result.events if result else ())
        ],
    }


async def store_and_apply(ctx: AppContext, inbound: InboundDelivery) -> web.Response:
    """Interpret `inbound` (JSON: cheap, so inline), then commit it and its lifecycle changes
    in one transaction. Input the channel's interpreter refuses is stored as rejected (422).
    `inbound.meta["body_sha256"]` tells a retry (same digest) from a different body under the
    same dedupe key (409)."""
    meaning = None
    if inbound.rejected_reason is None:
        meaning = ctx.pipeline.interpret(RawDelivery(
            0, inbound.channel.value, inbound.source, inbound.content_type, inbound.payload,
            inbound.meta))
        if isinstance(meaning, str):
            inbound = replace(inbound, rejected_reason=meaning)
    try:
        if isinstance(meaning, Interpretation):
            accepted, result = await ctx.pipeline.store_and_apply(inbound, meaning)
        else:
            accepted, result = await ctx.pipeline.accept(inbound), None
        stored = await ctx.queries.delivery(accepted.delivery_id) if accepted.duplicate else None
    except (SQLAlchemyError, OSError) as err:
        raise ApiError(503, "the delivery could not be stored; retry later") from err
    if stored is not None:
        if stored["meta"].get("body_sha256") != inbound.meta.get("body_sha256"):
            raise ApiError(409, f"Idempotency-Key already used for delivery "
                                f"{accepted.delivery_id} with a different body")
        if stored["status"] == "rejected":  # a retry of a bad request is still bad
            raise ApiError(422, f"{stored['error']} (rejected delivery {accepted.delivery_id})")
        return web.json_response({
            "delivery_id": accepted.delivery_id, "duplicate": True, "status": stored["status"],
            "error": stored["error"], "events": [],
        }, status=200 if stored["status"] in APPLIED else 202)
    if inbound.rejected_reason is not None:
        raise ApiError(422, f"{inbound.rejected_reason} "
                            f"(kept as rejected delivery {accepted.delivery_id})")
    applied = result is not None and result.status.value in APPLIED
    return web.json_response(result_body(accepted.delivery_id, False, result),
                             status=201 if applied else 202)

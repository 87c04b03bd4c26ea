"""Answers of the HTTP intake routes (`POST /api/alerts`, the webhooks): JSON in, the pipeline's
`ingest`, an answer only after the commit.

201 applied now; 202 stored but not applied now (retried when due, or failed and replayable);
200 an identical earlier delivery; 409 the same Idempotency-Key with another body; 422
authenticated but invalid (kept as a rejected delivery to show why); 503 storage down.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from daemon.core.events import Channel, DeliveryStatus
from daemon.http.app import AppContext
from daemon.http.errors import ApiError
from daemon.intake.inbound import Inbound, Ingested

JSON_TYPES = ("application/json",)
# The deepest nesting of arrays and objects a body may have. alertd's bodies need 4 levels;
# Python's parser recurses once per level, so a deeper body is refused before it is parsed.
MAX_JSON_DEPTH = 64
# A \u escape of a UTF-16 surrogate: legal JSON syntax, but alone it is no character, and no
# text column or UTF-8 payload can hold it. Only bodies with one are checked further.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# Opening brackets to +1, closing ones to -1 (as signed bytes), everything else deleted.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def json_depth(raw: bytes) -> int:
    """The deepest nesting of `[` and `{` outside strings in `raw` (UTF-8 JSON), in linear
    time with no recursion. Exact for valid JSON; for invalid JSON it agrees with the parser
    up to the first error, which is as far as the parser gets."""
    # Escaped backslashes first, then escaped quotes: left to right, as the parser pairs
    # them. What is left between two quotes is string content; outside, only brackets count.
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    steps = array("b", outside.translate(_BRACKET_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0)


def nested_too_deep(raw: bytes) -> bool:
    """Whether `raw` nests deeper than `MAX_JSON_DEPTH`."""
    # With no more brackets than the limit it cannot: the usual body is not scanned at all.
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    return json_depth(raw) > MAX_JSON_DEPTH


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


async def read_json_body(request: web.Request, optional: bool = False) -> tuple[bytes, Any]:
    """(raw bytes, parsed JSON); 415 for another content type, 400 for anything that is not
    UTF-8 JSON of at most `MAX_JSON_DEPTH` levels made of characters (RFC 8259)."""
    if optional and not request.can_read_body:
        return b"", {}
    if request.content_type not in JSON_TYPES:
        raise ApiError(415, "expected Content-Type: application/json, "
                            f"got {request.content_type!r}")
    raw = await request.read()
    try:
        # Strict UTF-8 (RFC 8259 section 8.1): json.loads(bytes) would also take UTF-16 and
        # encoded lone surrogates, which no text column can hold.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"malformed JSON: the body is not UTF-8 (byte {err.start})"
                       ) from None
    if nested_too_deep(raw):
        raise ApiError(400, f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(text.removeprefix("\ufeff"), parse_constant=_no_constant)
    except ValueError as err:
        raise ApiError(400, f"malformed JSON: {err}") from None
    if _SURROGATE_ESCAPE.search(raw):
        try:  # a pair is one character and passes; half of one is refused
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ApiError(400, "malformed JSON: a \\u escape is half of a surrogate pair, "
                                "not a character") from None
    if b"\\u0000" in raw and _holds_nul(body):
        raise ApiError(400, "malformed JSON: a string holds a NUL character (\\u0000), "
                            "which cannot be stored")
    return raw, body


def _holds_nul(value: Any) -> bool:
    """Whether any string of `value` (parsed JSON), keys included, holds U+0000: PostgreSQL's
    text columns cannot store it, so it would fail every attempt to apply. Iterative: the
    depth is capped, but recursion is not needed."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def result_body(delivery_id: int, duplicate: bool, status: DeliveryStatus | None,
                error: str | None, events: Any = ()) -> dict[str, Any]:
    """The JSON answer about one delivery (ingest and replay)."""
    return {
        "delivery_id": delivery_id,
        "duplicate": duplicate,
        "status": status.value if status else None,
        "error": error,
        "events": [{"alert_id": e.alert_id, "outcome": e.outcome, "ticket_id": e.ticket_id}
                   for e in events],
    }


async def ingest_and_answer(ctx: AppContext, inbound: Inbound) -> web.Response:
    """Ingest `inbound` and answer its sender. `inbound.meta["body_sha256"]` tells a retry
    (same digest) from a different body under the same dedupe key (409)."""
    # The channel's name in ChannelHealth (GET /api/status): api, webhook:<source>.
    channel = (f"webhook:{inbound.source}" if inbound.channel is Channel.WEBHOOK
               else inbound.channel.value)
    try:
        [ingested] = await ctx.pipeline.ingest(inbound)
    except (SQLAlchemyError, OSError) as err:
        ctx.health.record_error(channel, f"could not store a delivery (answered 503): "
                                         f"{type(err).__name__}")
        raise ApiError(503, "the delivery could not be stored; retry later") from err
    if ingested.duplicate:
        return _answer_duplicate(inbound, ingested)
    if ingested.status is DeliveryStatus.REJECTED:
        ctx.health.record_error(channel, f"rejected delivery {ingested.delivery_id}: "
                                         f"{ingested.error}")
        raise ApiError(422, f"{ingested.error} "
                            f"(kept as rejected delivery {ingested.delivery_id})")
    return web.json_response(
        result_body(ingested.delivery_id, False, ingested.status, ingested.error,
                    ingested.events),
        status=201 if ingested.applied else 202)


def _answer_duplicate(inbound: Inbound, ingested: Ingested) -> web.Response:
    stored_meta = ingested.stored_meta or {}
    if stored_meta.get("body_sha256") != inbound.meta.get("body_sha256"):
        raise ApiError(409, f"Idempotency-Key already used for delivery "
                            f"{ingested.delivery_id} with a different body")
    if ingested.status is DeliveryStatus.REJECTED:  # a retry of a bad request is still bad
        raise ApiError(422, f"{ingested.error} (rejected delivery {ingested.delivery_id})")
    return web.json_response(
        result_body(ingested.delivery_id, True, ingested.status, ingested.error),
        status=200 if ingested.applied else 202)

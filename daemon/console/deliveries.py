"""The deliveries pages: every raw input with its state; one delivery's headers and text (as
text), its rule trace, its raw bytes to download, and "Replay" when it can be replayed."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from daemon.console.state import list_page, parse_id, redirect, render
from daemon.core.events import Unprocessable
from daemon.http.app import CONTEXT
from daemon.intake.deliveries import ReplayRefused
from daemon.mail.parse import parse_message
from daemon.store.queries import BadFilter

REPLAYABLE = ("failed", "ignored", "rejected")
SHOWN_CHARS = 200_000  # of a body or payload; the download has it all


async def deliveries_page(request: web.Request) -> web.Response:
    filters = {name: request.query.get(name) or None for name in ("status", "channel")}
    error = None
    try:
        listing = await request.app[CONTEXT].queries.deliveries(list_page(request), **filters)
    except BadFilter as err:
        listing, error = {"items": [], "next_before_id": None}, str(err)
    return render(request, "deliveries.html", status=400 if error else 200, listing=listing,
                  filters=filters, error=error)


async def _delivery(request: web.Request) -> dict[str, Any] | None:
    delivery_id = parse_id(request.match_info["id"])
    if delivery_id is None:
        return None
    return await request.app[CONTEXT].queries.delivery(delivery_id)


def _payload_bytes(delivery: dict[str, Any]) -> bytes:
    text = delivery["payload"]
    return (text.encode("utf-8") if delivery["payload_encoding"] == "utf-8"
            else base64.b64decode(text))


def _readable(delivery: dict[str, Any], raw: bytes) -> dict[str, Any]:
    """What a person reads of a delivery: a mail's headers and text, or the JSON, indented."""
    if delivery["content_type"] == "message/rfc822":
        try:
            message = parse_message(raw)
        except Unprocessable as err:
            return {"kind": "unreadable", "reason": str(err)}
        return {"kind": "mail", "headers": [
            ("From", message.from_address), ("To", ", ".join(message.to)),
            ("Subject", message.original_subject), ("Message-ID", message.message_id or ""),
            *(("Date", value) for value in message.headers.get("date", ()))],
            "body": message.body[:SHOWN_CHARS], "cut": len(message.body) > SHOWN_CHARS,
            "defects": list(message.defects)}
    try:
        text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        text = raw.decode("utf-8", "replace")
    return {"kind": "text", "body": text[:SHOWN_CHARS], "cut": len(text) > SHOWN_CHARS}


async def delivery_page(request: web.Request, error: str | None = None, status: int = 200
                        ) -> web.Response:
    delivery = await _delivery(request)
    if delivery is None:
        return render(request, "error.html", status=404, title="Not found",
                      message=f"There is no delivery {request.match_info['id']}.")
    # Parsing a large mail takes a while: off the event loop, like the pipeline does.
    readable = await asyncio.to_thread(_readable, delivery, _payload_bytes(delivery))
    return render(request, "delivery.html", status=status, delivery=delivery,
                  readable=readable, replayable=delivery["status"] in REPLAYABLE, error=error,
                  trace=delivery.get("trace") or {})


async def delivery_raw(request: web.Request) -> web.StreamResponse:
    delivery = await _delivery(request)
    if delivery is None:
        return await delivery_page(request)
    extension = "eml" if delivery["content_type"] == "message/rfc822" else "json"
    # An attachment of an opaque type: the browser saves it, never renders it.
    return web.Response(body=_payload_bytes(delivery), content_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename='
                                 f'"delivery-{delivery["id"]}.{extension}"'})


async def replay(request: web.Request) -> web.Response:
    delivery = await _delivery(request)
    if delivery is None:
        return await delivery_page(request)
    try:
        await request.app[CONTEXT].pipeline.replay(delivery["id"])
    except (LookupError, ReplayRefused) as err:
        return await delivery_page(request, str(err).strip("'"), 409)
    return redirect(f"/ui/deliveries/{delivery['id']}")

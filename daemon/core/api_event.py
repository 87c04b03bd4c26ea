"""The normalised alert event as JSON: the body of `POST /api/alerts`, and the stored form of
events a channel builds itself (polling). Pure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from daemon.core.canonical import canonical_json
from daemon.core.events import (
    MAX_ID,
    AlertEvent,
    Interpretation,
    RawDelivery,
    TicketFields,
    Unprocessable,
    clamp_event,
    is_source_name,
    json_payload,
    normalize_uid,
)
from daemon.core.lifecycle import AlertAction

_EVENT_KEYS = {"source", "uid", "action", "device", "device_id", "site", "customer", "priority",
               "message", "ticket", "condition"}
# The longest text each free field may have in the JSON form.
MESSAGE_CHARS = 10_000
SUMMARY_CHARS = 500
DETAILS_CHARS = 100_000
_TICKET_KEYS = {"type", "summary", "details"}


def _optional_str(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unprocessable(f"'{key}' must be a string")
    if len(value) > limit:
        raise Unprocessable(f"'{key}' is longer than {limit} characters")
    return value


def parse_api_event(body: Any) -> AlertEvent:
    """Validate the JSON body of `POST /api/alerts` into an event (raises `Unprocessable`)."""
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object")
    unknown = sorted(set(body) - _EVENT_KEYS)
    if unknown:
        raise Unprocessable(f"unknown field(s): {', '.join(unknown)}")
    source = body.get("source")
    if not isinstance(source, str) or not is_source_name(source):
        raise Unprocessable("'source' must be a lower-case name like 'datto' or 'syncro'")
    uid = body.get("uid")
    # JSON has one number type: 42.0 is the integer 42 to JSON Schema and to most senders.
    if isinstance(uid, float) and uid.is_integer() and 0 <= uid <= MAX_ID:
        uid = int(uid)
    if isinstance(uid, int) and not isinstance(uid, bool):
        uid = str(uid)
    if not isinstance(uid, str) or not uid.strip() or len(uid) > 200:
        raise Unprocessable("'uid' must be the upstream alert id (a non-empty string)")
    try:
        action = AlertAction(str(body.get("action")))
    except ValueError:
        raise Unprocessable("'action' must be 'raise' or 'resolve'") from None
    ticket_body = body.get("ticket") or {}
    if not isinstance(ticket_body, dict) or set(ticket_body) - _TICKET_KEYS:
        raise Unprocessable("'ticket' must be an object with 'type', 'summary', 'details'")
    return AlertEvent(
        source=source,
        uid=normalize_uid(source, uid),
        action=action,
        device=_optional_str(body, "device", 255),
        site=_optional_str(body, "site", 255),
        customer=_optional_str(body, "customer", 255),
        priority=_optional_str(body, "priority", 64),
        message=_optional_str(body, "message", MESSAGE_CHARS),
        device_ref=_optional_str(body, "device_id", 200),
        condition=_optional_str(body, "condition", 255),
        ticket=TicketFields(
            type=_optional_str(ticket_body, "type", 64),
            summary=_optional_str(ticket_body, "summary", SUMMARY_CHARS),
            details=_optional_str(ticket_body, "details", DETAILS_CHARS),
        ),
    )


def interpret_api_delivery(delivery: RawDelivery) -> Interpretation:
    """Interpreter of the `api` channel: the payload is the JSON of `POST /api/alerts`."""
    event = parse_api_event(json_payload(delivery))
    return Interpretation(events=(event,), trace={"interpreter": "api"})




def fit_event(event: AlertEvent) -> AlertEvent:
    """`event` cut to what its JSON form holds (`clamp_event`, then the free texts), so the
    event applied and the one a replay reads back from `encode_event` are the same."""
    event = clamp_event(event)
    ticket = event.ticket
    return replace(
        event,
        message=event.message[:MESSAGE_CHARS] if event.message else event.message,
        ticket=replace(ticket,
                       summary=ticket.summary[:SUMMARY_CHARS] if ticket.summary else None,
                       details=ticket.details[:DETAILS_CHARS] if ticket.details else None))


def encode_event(event: AlertEvent) -> bytes:
    """The JSON form of a fitted event (`fit_event`): what `parse_api_event` reads back."""
    body: dict[str, Any] = {"source": event.source, "uid": event.uid,
                            "action": event.action.value}
    for name in ("device", "site", "customer", "priority", "message"):
        value = getattr(event, name)
        if value is not None:
            body[name] = value
    if event.device_ref is not None:
        body["device_id"] = event.device_ref
    if event.condition is not None:
        body["condition"] = event.condition
    ticket = {name: value for name in ("type", "summary", "details")
              if (value := getattr(event.ticket, name)) is not None}
    if ticket:
        body["ticket"] = ticket
    return canonical_json(body)

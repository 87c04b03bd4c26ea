"""Normalised alert events and the interpretation of a delivery: what every intake channel yields.

A delivery (an email, a webhook body, an API call) is stored raw first; an *interpreter* for its
channel later turns it into zero or more `AlertEvent`s, or says why it is ignored, or fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from daemon.core.canonical import sha256_hex
from daemon.core.lifecycle import AlertAction


class Channel(StrEnum):
    SMTP = "smtp"
    IMAP = "imap"
    WEBHOOK = "webhook"
    POLL = "poll"
    API = "api"  # POST /api/alerts: a normalised event from a script or another system


class DeliveryStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet (successfully) processed
    PROCESSED = "processed"  # turned into lifecycle events
    IGNORED = "ignored"  # understood, nothing to do (e.g. no rule matched)
    REJECTED = "rejected"  # authenticated but invalid at the edge; kept to show why
    FAILED = "failed"  # could not be processed; replayable


@dataclass(frozen=True)
class TicketFields:
    """Ticket content proposed by the intake (rules, webhook mapping); optional everywhere."""

    type: str | None = None
    summary: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class AlertEvent:
    """One raise or resolve of one upstream alert, whatever channel carried it."""

    source: str
    uid: str
    action: AlertAction
    device: str | None = None
    site: str | None = None
    customer: str | None = None
    priority: str | None = None
    message: str | None = None
    ticket: TicketFields = field(default_factory=TicketFields)
    # The RMM's own id of the device (Datto device uid, Syncro asset id): how a new ticket
    # finds the imported asset (daemon.tickets.placement); the name `device` is the fallback.
    device_ref: str | None = None
    # An email rule's `expire_after`, in seconds: the alert is resolved by alertd when it is
    # open longer (else `[lifecycle] expire_after` of its source, if any).
    expire_after_s: int | None = None
    rule: str | None = None  # the email rule that decided it (the alert's trail names it)
    # The kind of check that raised it (Datto's category and type, Syncro's trigger, an email
    # rule's `condition` group): with the device, its condition (daemon.core.conditions).
    condition: str | None = None


@dataclass(frozen=True)
class Interpretation:
    """What a delivery means: events to apply, or the reason nothing applies, plus a trace."""

    events: tuple[AlertEvent, ...] = ()
    ignored_reason: str | None = None
    # Understood and refused (mail claiming to be Datto's from another sender): kept as a
    # `rejected` delivery with this reason, replayable once the configuration says otherwise.
    rejected_reason: str | None = None
    trace: Any = None


@dataclass(frozen=True)
class RawDelivery:
    """A stored input as interpreters see it (no database types in the pure core)."""

    id: int
    channel: str
    source: str | None
    content_type: str
    payload: bytes
    meta: dict[str, Any]
    # `json.loads(payload)` when the channel parsed it already (a request being answered):
    # interpreters read it instead of decoding the payload again. Never mutated.
    document: Any = field(default=None, compare=False, repr=False)
    received_at: datetime | None = None  # when it was stored (None: not known to the caller)


class Unprocessable(Exception):
    """The delivery cannot be turned into events; the message is the reason shown to admins."""


def json_payload(delivery: RawDelivery) -> Any:
    """The parsed JSON of a stored delivery (the JSON channels' interpreters start here)."""
    if delivery.document is not None:
        return delivery.document
    try:
        return json.loads(delivery.payload)
    except ValueError as err:
        raise Unprocessable(f"the payload is not JSON: {err}") from err


_SOURCE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Datto RMM ids (alerts, devices, sites) are GUIDs; the one pattern every parser uses.
GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def normalize_uid(source: str, uid: str) -> str:
    """One spelling per upstream id, so every channel's copy keys the same alert.

    Datto alert uids are GUIDs: compared without case (an email subject and a webhook may
    spell them differently).
    """
    uid = uid.strip()
    return uid.lower() if GUID.match(uid) else uid


def is_source_name(value: object) -> bool:
    """A valid source name: lower-case, starts with a letter, at most 32 characters."""
    return isinstance(value, str) and _SOURCE.match(value) is not None


# Line breaks, tabs and other control characters, in runs: a one-line field holds none.
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


MAX_ID = 10**18 - 1  # a numeric id is 1 to 18 digits, here and in every API
JSON_SPACE = " \t\r\n"  # JSON's own whitespace, stripped around a sent value
_FLAG = re.compile(r"[ \t\r\n]*(true|false)[ \t\r\n]*", re.IGNORECASE | re.ASCII)


def flag_text(value: str) -> bool | None:
    """A flag sent as text ("true" / "false", any case, JSON whitespace around), or None."""
    flag = _FLAG.fullmatch(value)
    return None if flag is None else flag.group(1).lower() == "true"


def one_line(text: str) -> str:
    """`text` as a single line: each run of line breaks and control characters one space.
    A name sent with a line break ("PC\r\nBACKUP") must not cut what follows it."""
    if text.isprintable():  # the usual case, checked in C: nothing `_BREAKS` matches
        return text.strip()
    return _BREAKS.sub(" ", text).strip()


# Column sizes of the alert and ticket records (daemon/store/models.py).
_LIMITS = {"device": 255, "site": 255, "customer": 255, "priority": 64, "device_ref": 200}
_UID_LIMIT = 200


def clamp_uid(uid: str) -> str:
    """An alert id as it is stored: without U+0000, hashed when longer than its column."""
    uid = uid.replace("\x00", "")
    return "sha256:" + sha256_hex(uid.encode()) if len(uid) > _UID_LIMIT else uid


def clamp_event(event: AlertEvent) -> AlertEvent:
    """Fit free-form extracted values into their columns (text cut, a long uid hashed), so a
    verbose mail cannot make its delivery fail on a database length limit."""
    changes: dict[str, Any] = {}
    for name, limit in _LIMITS.items():
        value = getattr(event, name)
        if value is not None and (fitted := one_line(value)[:limit]) != value:
            changes[name] = fitted
    # U+0000 is dropped from the free text: PostgreSQL's text columns cannot hold it, and a
    # mail that carries one must not fail every attempt to apply it.
    uid = clamp_uid(event.uid)
    if uid != event.uid:
        changes["uid"] = uid
    if event.message is not None and "\x00" in event.message:
        changes["message"] = event.message.replace("\x00", "")
    ticket = _clamp_ticket(event.ticket)
    if ticket is not event.ticket:
        changes["ticket"] = ticket
    return replace(event, **changes) if changes else event


def with_ticket_type(event: AlertEvent, ticket_type: str) -> AlertEvent:
    """`event` with `ticket_type` as its ticket's type, unless it names one itself or
    `ticket_type` is empty (a source's configured type for webhook and polling tickets)."""
    if not ticket_type or event.ticket.type is not None:
        return event
    return replace(event, ticket=replace(event.ticket, type=ticket_type))


def typed(interpret: Callable[[RawDelivery], Interpretation], types: Mapping[str, str]
          ) -> Callable[[RawDelivery], Interpretation]:
    """`interpret` giving the events of each source the ticket type `types` names for it
    (`with_ticket_type`). Applied when a delivery is interpreted, so a replay takes the type
    configured then, whatever channel stored it."""
    if not any(types.values()):
        return interpret

    def interpret_typed(delivery: RawDelivery) -> Interpretation:
        meaning = interpret(delivery)
        return replace(meaning, events=tuple(
            with_ticket_type(event, types.get(event.source, "")) for event in meaning.events))
    return interpret_typed


def _clamp_ticket(ticket: TicketFields) -> TicketFields:
    """`ticket` fitted as `clamp_event` fits an event; the same object when it fits."""
    type_, summary, details = (None if value is None else value.replace("\x00", "")
                               for value in (ticket.type, ticket.summary, ticket.details))
    if type_ is not None:
        type_ = type_[:64]
    if summary is not None:  # a summary is one line wherever it is shown
        summary = one_line(summary) or None
    if (type_, summary, details) == (ticket.type, ticket.summary, ticket.details):
        return ticket
    return TicketFields(type_, summary, details)


def default_summary(event: AlertEvent) -> str:
    """A ticket summary when the intake gave none: who, where, what."""
    message = next((line for line in (event.message or "").splitlines() if line.strip()), "")
    parts = [one_line(p) for p in (event.device, message) if p and one_line(p)]
    text = " - ".join(parts) if parts else f"{event.source} alert {event.uid}"
    return one_line(text)[:250]

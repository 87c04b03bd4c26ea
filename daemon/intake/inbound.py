"""What crosses the intake seam: an input as a channel hands it in, and what became of it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.core.api_event import encode_event, fit_event
from daemon.core.events import (
    AlertEvent,
    Channel,
    DeliveryStatus,
    Interpretation,
    RawDelivery,
    Unprocessable,
)
from daemon.tickets.transitions import EventResult

Interpreter = Callable[[RawDelivery], Interpretation]
"""Pure: a stored delivery -> what it means. Raises `Unprocessable` with a reason.

An interpreter may also offer `interpret_many(raws) -> list[Interpretation | Exception]`
for a batch (the mail interpreter: an IMAP backlog parsed on several cores), each message's
outcome or the exception interpreting it raised, in order."""

log = logging.getLogger("daemon.intake.pipeline")


def interpret_batch(interpreter: Interpreter | None, raws: Sequence[RawDelivery],
                    one: Callable[[RawDelivery], Interpretation | str | Exception]
                    ) -> list[Interpretation | str | Exception]:
    """Each delivery's meaning (`one`'s kind of answer: the reason as a string when it has
    none, the exception of a failing interpreter), through the interpreter's
    `interpret_many` when it has one and the batch is of one channel, else one by one."""
    interpret_many = getattr(interpreter, "interpret_many", None)
    if interpret_many is None or any(raw.channel != raws[0].channel for raw in raws):
        return [one(raw) for raw in raws]
    meanings: list[Interpretation | str | Exception] = []
    for raw, outcome in zip(raws, interpret_many(raws), strict=True):
        if isinstance(outcome, Unprocessable):
            meanings.append(str(outcome))
            continue
        if isinstance(outcome, Exception):
            log.error("delivery %s: the %s interpreter failed", raw.id, raw.channel,
                      exc_info=outcome)
        meanings.append(outcome)
    return meanings


@dataclass(frozen=True)
class Inbound:
    """An input as a channel hands it to the pipeline, before it is stored.

    `dedupe_key` makes a sender's retry the same delivery: (channel, dedupe_key) is unique.
    `rejected_reason`: refused at the edge (authenticated but invalid), stored as `rejected`
    with the reason and never processed. `document`: the payload's JSON value when the
    channel parsed it already (`json.loads(payload)` must give the same), so it is not
    decoded twice.
    """

    channel: Channel
    dedupe_key: str
    payload: bytes
    content_type: str
    source: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    rejected_reason: str | None = None
    document: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of_event(cls, channel: Channel, event: AlertEvent, dedupe_key: str,
                 meta: Mapping[str, Any]) -> Inbound:
        """An event the channel built itself, stored in the normalised form of the API
        (`POST /api/alerts`) and read back by the channel's interpreter, now as at a replay
        (which adds what the configuration says then: a source's ticket type)."""
        event = fit_event(event)
        return cls(channel, dedupe_key, encode_event(event), "application/json", event.source,
                   meta)


@dataclass(frozen=True)
class Accepted:
    """A submitted input: committed (or found committed already), processed later."""

    delivery_id: int
    duplicate: bool


@dataclass(frozen=True)
class ProcessResult:
    delivery_id: int
    status: DeliveryStatus
    events: tuple[EventResult, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Ingested:
    """An ingested input after its transaction: what it did, or for a `duplicate` (a retry of
    an input stored before) the stored one's status, error and meta; nothing is applied twice.
    """

    delivery_id: int
    duplicate: bool
    status: DeliveryStatus | None  # None: stored, and taken by another worker or process
    events: tuple[EventResult, ...] = ()
    error: str | None = None
    stored_meta: Mapping[str, Any] | None = None

    @property
    def applied(self) -> bool:
        """Processed or ignored: the input was understood and its effect is committed."""
        return self.status in (DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED)

"""Deliveries into the alert lifecycle: accept durably, then process in one transaction each.

`accept` commits the raw input (or finds the identical one already stored) and returns; the
caller acknowledges only after it returns. `process` claims one `received` delivery, asks the
channel's interpreter what it means, applies the lifecycle decisions and marks the delivery, all
in one transaction: a crash anywhere leaves either nothing changed (the delivery is processed
again later) or everything committed once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from daemon.core.events import (
    AlertEvent,
    Channel,
    DeliveryStatus,
    Interpretation,
    RawDelivery,
    Unprocessable,
    clamp_event,
    default_summary,
)
from daemon.core.lifecycle import AlertSnapshot, AlertState, ResolvedBy, decide_event
from daemon.metrics import Metrics
from daemon.store.database import Database
from daemon.store.models import Alert, Delivery, Ticket, TicketNote
from daemon.sync.placement import Placement, TicketPlacer

log = logging.getLogger(__name__)

Interpreter = Callable[[RawDelivery], Interpretation]
"""Pure: a stored delivery -> what it means. Raises `Unprocessable` with a reason."""

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InboundDelivery:
    """An input as an intake adapter hands it over, before it is stored."""

    channel: Channel
    dedupe_key: str
    payload: bytes
    content_type: str
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Edge-rejected inputs are stored as `rejected` with the reason, never processed.
    rejected_reason: str | None = None


@dataclass(frozen=True)
class Accepted:
    delivery_id: int
    duplicate: bool


@dataclass(frozen=True)
class EventResult:
    source: str
    uid: str
    alert_id: int
    outcome: str
    ticket_id: int | None
    ticket_opened: bool = False
    ticket_closed: bool = False


@dataclass(frozen=True)
class ProcessResult:
    delivery_id: int
    status: DeliveryStatus
    events: tuple[EventResult, ...] = ()
    error: str | None = None


class ReplayRefused(Exception):
    """Replay of a delivery that is not in a replayable state."""


class Pipeline:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        interpreters: Mapping[str, Interpreter],
        *,
        max_attempts: int = 5,
        retry_base_s: float = 30.0,
        clock: Clock = utcnow,
        placer: TicketPlacer | None = None,
    ):
        self._db = db
        self._placer = placer  # a new ticket's customer, site, asset and end user
        self._metrics = metrics
        self._interpreters = dict(interpreters)
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._clock = clock
        # Built once: statements with bound parameters hit SQLAlchemy's compiled cache
        # without rebuilding the statement per delivery (the intake hot path).
        self._insert_delivery = db.insert_ignore(
            Delivery.__table__, "channel", "dedupe_key").returning(Delivery.id)
        self._insert_alert = db.insert_ignore(
            Alert.__table__, "source", "uid").returning(Alert.id)

    # --- intake ---------------------------------------------------------------------------

    async def accept(self, inbound: InboundDelivery) -> Accepted:
        """Commit `inbound` as a delivery; an identical earlier one (same key) is returned."""
        row = self._delivery_row(inbound, self._clock())
        accepted = await self._db.write(lambda session: self._store(session, row))
        self._log_accepted(inbound, accepted)
        return accepted

    @staticmethod
    def _delivery_row(inbound: InboundDelivery, now: datetime) -> dict[str, Any]:
        rejected = inbound.rejected_reason is not None
        return dict(
            channel=inbound.channel.value,
            source=inbound.source,
            dedupe_key=inbound.dedupe_key,
            received_at=now,
            status=(DeliveryStatus.REJECTED if rejected else DeliveryStatus.RECEIVED).value,
            attempts=0,
            next_attempt_at=None if rejected else now,
            error=inbound.rejected_reason,
            content_type=inbound.content_type,
            meta=inbound.meta,
            payload=inbound.payload,
        )

    def _store(self, session: Session, row: dict[str, Any]) -> Accepted:
        conn = session.connection()  # Core, not the ORM's execute: cheaper per statement
        new_id = conn.execute(self._insert_delivery, row).scalar()
        if new_id is not None:
            return Accepted(new_id, duplicate=False)
        existing = conn.execute(_FIND_DELIVERY, {
            "channel": row["channel"], "dedupe_key": row["dedupe_key"]}).scalar()
        assert existing is not None  # the conflicting row is committed and never deleted
        return Accepted(existing, duplicate=True)

    def _log_accepted(self, inbound: InboundDelivery, accepted: Accepted,
                      quiet: bool = False) -> None:
        channel = inbound.channel.value
        if accepted.duplicate:
            self._metrics.deliveries_duplicate.labels(channel).inc()
            log.info("delivery %s duplicate channel=%s key=%s", accepted.delivery_id, channel,
                     inbound.dedupe_key)
        else:
            self._metrics.deliveries_accepted.labels(channel).inc()
            log.log(logging.DEBUG if quiet else logging.INFO,
                    "delivery %s %s channel=%s source=%s key=%s", accepted.delivery_id,
                    "rejected" if inbound.rejected_reason else "accepted", channel,
                    inbound.source, inbound.dedupe_key)

    # --- processing -----------------------------------------------------------------------

    async def due_ids(self, limit: int = 500) -> list[int]:
        """Ids of `received` deliveries whose next attempt is due (startup recovery, sweeps)."""
        query = (select(Delivery.id)
                 .where(Delivery.status == DeliveryStatus.RECEIVED.value,
                        Delivery.next_attempt_at <= self._clock())
                 .order_by(Delivery.id).limit(limit))
        return await self._db.read(lambda session: list(session.scalars(query)))

    async def process(self, delivery_id: int, raw: RawDelivery | None = None
                      ) -> ProcessResult | None:
        """Process one delivery if it is `received` and not claimed by another process.

        `raw` saves reading the stored input back when the caller has just stored it.
        Returns None when there was nothing to do. Never raises for bad input: an
        unprocessable delivery is marked failed; an unexpected error is recorded on the
        delivery and retried later with backoff until `max_attempts`.
        """
        try:
            return await self._process_once(delivery_id, raw)
        except Exception as err:  # a bug or the database: keep the delivery, retry later
            log.exception("delivery %s processing error", delivery_id)
            try:
                return await self._record_error(delivery_id, _describe(err))
            except Exception:
                # The database itself is failing: the delivery stays `received` and due, so
                # the next sweep takes it again.
                log.exception("delivery %s: could not record the error", delivery_id)
                return None

    def interpret(self, raw: RawDelivery) -> Interpretation | str:
        """The delivery's meaning, or the reason it has none (pure; runs outside transactions).

        Cheap for JSON channels, so HTTP routes call it inline; email parsing is not (see
        `_process_once`)."""
        interpreter = self._interpreters.get(raw.channel)
        if interpreter is None:
            return f"no interpreter for channel {raw.channel!r}"
        try:
            return interpreter(raw)
        except Unprocessable as err:
            return str(err)

    async def _process_once(self, delivery_id: int, raw: RawDelivery | None
                            ) -> ProcessResult | None:
        if raw is None:
            raw = await self._db.read(lambda session: _load_received(session, delivery_id))
            if raw is None:
                return None
        # Parsing and rules are CPU work (a large HTML mail takes a second or more): keep it
        # off the event loop so listeners, health checks and watchdog pings stay live.
        meaning = await asyncio.to_thread(self.interpret, raw)
        now = self._clock()

        def apply(session: Session) -> ProcessResult | None:
            conn = session.connection()
            claimed = conn.execute(_CLAIM_DELIVERY, {"id": delivery_id}).first()
            if claimed is None:  # done meanwhile, or claimed by another process
                return None
            return self._finish(conn, delivery_id, raw.channel, claimed.source,
                                claimed.attempts + 1, meaning, now)

        result = await self._db.write(apply)
        if result is not None:
            self._count(raw.channel, result)
        return result

    async def store_and_apply(self, inbound: InboundDelivery, meaning: Interpretation
                              ) -> tuple[Accepted, ProcessResult | None]:
        """`accept` and `process` in one transaction, for inputs interpreted before they are
        stored (the HTTP routes): one commit instead of two on the intake hot path.

        A duplicate is only found, not applied again (its result is None). If applying fails
        unexpectedly, the input is stored alone as `received` and processed like any other
        delivery (retried with backoff), so it is never lost to a bug.
        """
        now = self._clock()
        row = self._delivery_row(inbound, now)

        def store_and_apply(session: Session) -> tuple[Accepted, ProcessResult | None]:
            accepted = self._store(session, row)
            if accepted.duplicate:
                return accepted, None
            conn = session.connection()
            return accepted, self._finish(conn, accepted.delivery_id, row["channel"],
                                          inbound.source, 1, meaning, now)

        try:
            accepted, result = await self._db.write(store_and_apply)
        except Exception:
            log.exception("delivery could not be applied on intake; storing it for a retry")
            accepted = await self.accept(inbound)
            return accepted, await self.process(accepted.delivery_id)
        # One log line per input on this hot path: the result's line names the delivery.
        self._log_accepted(inbound, accepted, quiet=result is not None)
        if result is not None:
            self._count(inbound.channel.value, result)
        return accepted, result

    def _finish(self, conn: Connection, delivery_id: int, channel: str, source: str | None,
                attempts: int, meaning: Interpretation | str, now: datetime) -> ProcessResult:
        """Apply `meaning` to the lifecycle and mark the stored delivery done (inside the
        write unit)."""
        row: dict[str, Any] = {"row_id": delivery_id, "attempts": attempts,
                               "processed_at": now, "next_attempt_at": None, "trace": None,
                               "alert_id": None, "outcome": None}
        if isinstance(meaning, str):
            result = ProcessResult(delivery_id, DeliveryStatus.FAILED, error=meaning)
        elif not meaning.events:
            result = ProcessResult(delivery_id, DeliveryStatus.IGNORED,
                                   error=meaning.ignored_reason)
        else:
            events = tuple(self._apply(conn, channel, e, now) for e in meaning.events)
            result = ProcessResult(delivery_id, DeliveryStatus.PROCESSED, events)
            row["alert_id"] = events[0].alert_id
            row["outcome"] = ",".join(r.outcome for r in events)
            # Email knows its source only once the rules have named it.
            row["source"] = source or events[0].source
        if not isinstance(meaning, str):
            row["trace"] = meaning.trace
        row["status"] = result.status.value
        row["error"] = result.error
        conn.execute(_FINISH_DELIVERY, row)
        return result

    def _count(self, channel: str, result: ProcessResult) -> None:
        """Metrics and log lines of a committed result (never of what a rollback undid)."""
        delivery_id = result.delivery_id
        self._metrics.deliveries_finished.labels(channel, result.status.value).inc()
        for event in result.events:
            self._metrics.lifecycle.labels(event.source, event.outcome).inc()
            if event.ticket_opened:
                self._metrics.tickets_opened.labels(event.source).inc()
            if event.ticket_closed:
                self._metrics.tickets_closed.labels("upstream").inc()
            log.info("delivery %s channel=%s alert %s %s/%s %s ticket=%s", delivery_id,
                     channel, event.alert_id, event.source, event.uid, event.outcome,
                     event.ticket_id)
        if result.status is not DeliveryStatus.PROCESSED:
            log.warning("delivery %s %s: %s", delivery_id, result.status, result.error)

    async def _record_error(self, delivery_id: int, error: str) -> ProcessResult | None:
        now = self._clock()

        def record(session: Session) -> tuple[ProcessResult, str] | None:
            delivery = session.get(Delivery, delivery_id, with_for_update=True)
            if delivery is None or delivery.status != DeliveryStatus.RECEIVED.value:
                return None
            delivery.attempts += 1
            delivery.error = error
            if delivery.attempts >= self._max_attempts:
                delivery.status = DeliveryStatus.FAILED.value
                delivery.next_attempt_at = None
            else:
                delay_s = self._retry_base_s * 2 ** (delivery.attempts - 1)
                delay_s *= random.uniform(0.8, 1.2)  # jitter: instances must not retry in step
                delivery.next_attempt_at = now + timedelta(seconds=delay_s)
            status = DeliveryStatus(delivery.status)
            return ProcessResult(delivery_id, status, error=error), delivery.channel

        recorded = await self._db.write(record)
        if recorded is None:
            return None
        result, channel = recorded
        self._metrics.delivery_errors.labels(channel).inc()
        if result.status is DeliveryStatus.FAILED:
            self._metrics.deliveries_finished.labels(channel, result.status.value).inc()
        return result

    async def replay(self, delivery_id: int) -> ProcessResult | None:
        """Put a failed, ignored or rejected delivery back to `received` and process it now."""
        now = self._clock()

        def reset(session: Session) -> None:
            delivery = session.get(Delivery, delivery_id, with_for_update=True)
            if delivery is None:
                raise LookupError(f"delivery {delivery_id} not found")
            if delivery.status == DeliveryStatus.PROCESSED.value:
                raise ReplayRefused(
                    f"delivery {delivery_id} was processed already; replaying it would count "
                    "its alert event twice"
                )
            if delivery.status == DeliveryStatus.RECEIVED.value:
                raise ReplayRefused(f"delivery {delivery_id} is still waiting to be processed")
            delivery.status = DeliveryStatus.RECEIVED.value
            delivery.next_attempt_at = now

        await self._db.write(reset)
        log.info("delivery %s replay requested", delivery_id)
        return await self.process(delivery_id)

    # --- lifecycle (runs inside the write unit; Core statements: this is the hot path) -----

    def _apply(self, conn: Connection, channel: str, event: AlertEvent, now: datetime
               ) -> EventResult:
        event = clamp_event(event)  # any channel's values fit their columns on every backend
        key = {"source": event.source, "uid": event.uid}
        alert = conn.execute(_LOCK_ALERT, key).mappings().first()
        if alert is None:
            decision = decide_event(None, event.action)
            resolved = decision.new_state is AlertState.RESOLVED
            new_id = conn.execute(self._insert_alert, {
                **key, "state": decision.new_state.value,
                "resolved_by": decision.resolved_by.value if decision.resolved_by else None,
                "resolved_at": now if resolved else None, "first_seen_at": now,
                "last_seen_at": now, "channels": [channel], "occurrences": 1,
                **{name: getattr(event, name) for name in _ALERT_FIELDS},
            }).scalar()
            if new_id is not None:
                ticket_id = None
                if decision.open_ticket:
                    ticket_id = self._insert_ticket(conn, event, new_id, now)
                return EventResult(event.source, event.uid, new_id, decision.outcome.value,
                                   ticket_id, ticket_opened=ticket_id is not None)
            # Another process inserted it between our SELECT and INSERT; it has committed
            # (PostgreSQL waits for it), so lock the row it made and decide again.
            alert = conn.execute(_LOCK_ALERT, key).mappings().first()
            assert alert is not None

        # Lock order everywhere: alert, then its ticket.
        ticket = conn.execute(_LOCK_TICKET, {"alert_id": alert["id"]}).first()
        decision = decide_event(
            AlertSnapshot(AlertState(alert["state"]),
                          ResolvedBy(alert["resolved_by"]) if alert["resolved_by"] else None,
                          has_ticket=ticket is not None),
            event.action,
        )
        update: dict[str, Any] = {
            "row_id": alert["id"], "occurrences": alert["occurrences"] + 1,
            "last_seen_at": now,
            "channels": alert["channels"] if channel in alert["channels"]
            else [*alert["channels"], channel],
            "state": alert["state"], "resolved_by": alert["resolved_by"],
            "resolved_at": alert["resolved_at"],
            # A twin fills in what the first copy lacked (a webhook knows more than a subject).
            **{name: alert[name] if alert[name] is not None else getattr(event, name)
               for name in _ALERT_FIELDS},
        }
        if decision.resolved_by is not None:
            update.update(state=decision.new_state.value,
                          resolved_by=decision.resolved_by.value, resolved_at=now)
        conn.execute(_UPDATE_ALERT, update)
        ticket_id = ticket.id if ticket is not None else None
        opened = False
        if decision.open_ticket:  # a late raise: the ticket it would have had, closed below
            ticket_id = self._insert_ticket(conn, event, alert["id"], now)
            opened = True
            note = (f"Alert already resolved in {event.source} when its raise arrived (by "
                    f"{channel}); ticket recorded closed by alertd.")
        else:
            note = (f"Alert resolved in {event.source} (reported by {channel}); "
                    "ticket closed by alertd.")
        closing = decision.close_ticket and ticket_id is not None and (
            opened or (ticket is not None and ticket.status == "open"))
        if closing:
            conn.execute(_CLOSE_TICKET, {"row_id": ticket_id, "status": "closed",
                                         "closed_at": now,
                                         "closed_by": f"upstream:{event.source}"})
            conn.execute(_INSERT_NOTE, {
                "ticket_id": ticket_id, "created_at": now, "author": "alertd", "body": note})
        return EventResult(event.source, event.uid, alert["id"], decision.outcome.value,
                           ticket_id, ticket_opened=opened, ticket_closed=closing)

    def _insert_ticket(self, conn: Connection, event: AlertEvent, alert_id: int,
                       now: datetime) -> int:
        placement = (self._placer.place(conn, event, now) if self._placer is not None
                     else Placement())
        ticket_id = conn.execute(_INSERT_TICKET, {
            "customer_id": placement.customer_id, "site_id": placement.site_id,
            "asset_id": placement.asset_id, "end_user_id": placement.end_user_id,
            "type": event.ticket.type or "alert", "status": "open",
            "priority": event.priority,
            "summary": (event.ticket.summary or default_summary(event))[:500],
            "details": event.ticket.details or event.message or "",
            "alert_id": alert_id, "opened_at": now,
        }).scalar()
        assert ticket_id is not None
        return int(ticket_id)


_ALERT_FIELDS = ("device", "site", "customer", "priority", "message")
_DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]
_ALERTS: Table = Alert.__table__  # type: ignore[assignment]
_TICKETS: Table = Ticket.__table__  # type: ignore[assignment]
_NOTES: Table = TicketNote.__table__  # type: ignore[assignment]

_CLAIM_DELIVERY = (
    select(_DELIVERIES.c.attempts, _DELIVERIES.c.source)
    .where(_DELIVERIES.c.id == bindparam("id"),
           _DELIVERIES.c.status == DeliveryStatus.RECEIVED.value)
    .with_for_update(skip_locked=True))
# UPDATEs name the row by `row_id`; the other parameters given become the SET clause.
_FINISH_DELIVERY = update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("row_id"))
_LOCK_ALERT = (
    select(_ALERTS)
    .where(_ALERTS.c.source == bindparam("source"), _ALERTS.c.uid == bindparam("uid"))
    .with_for_update())
_UPDATE_ALERT = update(_ALERTS).where(_ALERTS.c.id == bindparam("row_id"))
_INSERT_TICKET = insert(_TICKETS).returning(_TICKETS.c.id)
_LOCK_TICKET = (select(_TICKETS.c.id, _TICKETS.c.status)
                .where(_TICKETS.c.alert_id == bindparam("alert_id")).with_for_update())
_CLOSE_TICKET = update(_TICKETS).where(_TICKETS.c.id == bindparam("row_id"))
_INSERT_NOTE = insert(_NOTES)
_FIND_DELIVERY = select(Delivery.id).where(Delivery.channel == bindparam("channel"),
                                           Delivery.dedupe_key == bindparam("dedupe_key"))


def _describe(err: Exception) -> str:
    """An error as stored on the delivery and shown to admins: for a database error, the
    driver's first line, not SQLAlchemy's text with the whole statement and its values."""
    if isinstance(err, StatementError) and err.orig is not None:
        first_line = (str(err.orig).splitlines() or [""])[0]
        return f"{type(err.orig).__name__}: {first_line}"[:500]
    return f"{type(err).__name__}: {err}"[:500]


def _load_received(session: Session, delivery_id: int) -> RawDelivery | None:
    delivery = session.scalar(select(Delivery).where(
        Delivery.id == delivery_id, Delivery.status == DeliveryStatus.RECEIVED.value))
    if delivery is None:
        return None
    return RawDelivery(delivery.id, delivery.channel, delivery.source, delivery.content_type,
                       delivery.payload, delivery.meta)

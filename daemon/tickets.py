"""Agent actions on tickets (close, note), applied with the lifecycle in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.core.lifecycle import (
    UPSTREAM_RESOLVABLE_SOURCES,
    AlertSnapshot,
    AlertState,
    ResolvedBy,
    decide_ticket_close,
)
from daemon.metrics import Metrics
from daemon.store.database import Database
from daemon.store.models import Alert, OutboxAction, Ticket, TicketNote

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 100_000


class TicketNotFound(LookupError):
    pass


@dataclass(frozen=True)
class CloseResult:
    ticket_id: int
    alert_id: int | None
    alert_resolved: bool
    outbox_id: int | None


class TicketService:
    def __init__(self, db: Database, metrics: Metrics, clock: Clock = utcnow,
                 on_enqueued: Callable[[], None] | None = None):
        self._db = db
        self._metrics = metrics
        self._clock = clock
        self._on_enqueued = on_enqueued  # wakes the outbox worker: send the resolve now

    async def close(self, ticket_id: int, actor: str, note: str | None = None) -> CloseResult:
        """Close a ticket as an agent; resolve its open alert and queue the upstream resolve.

        Raises `TicketNotFound`, or `TicketAlreadyClosed` (from the core) if it is closed.
        """
        now = self._clock()

        def close(session: Session) -> tuple[CloseResult, str | None]:
            alert_id = session.scalar(select(Ticket.alert_id).where(Ticket.id == ticket_id))
            # Lock order alert -> ticket, the same as the pipeline, so the two never deadlock.
            alert = session.get(Alert, alert_id, with_for_update=True) if alert_id else None
            ticket = session.get(Ticket, ticket_id, with_for_update=True)
            if ticket is None:
                raise TicketNotFound(f"ticket {ticket_id} not found")
            decision = decide_ticket_close(
                ticket.status == "open",
                AlertSnapshot(AlertState(alert.state),
                              ResolvedBy(alert.resolved_by) if alert.resolved_by else None)
                if alert else None,
                upstream_resolvable=alert is not None
                and alert.source in UPSTREAM_RESOLVABLE_SOURCES,
            )
            ticket.status = "closed"
            ticket.closed_at = now
            ticket.closed_by = actor
            if note:
                session.add(TicketNote(ticket_id=ticket.id, created_at=now, author=actor,
                                       body=note[:MAX_NOTE_CHARS]))
            outbox_id = None
            if alert is not None and decision.resolve_alert:
                alert.state = AlertState.RESOLVED.value
                alert.resolved_by = ResolvedBy.TICKET.value
                alert.resolved_at = now
            if alert is not None and decision.resolve_upstream:
                table = OutboxAction.__table__
                insert = self._db.insert_ignore(table, "action", "alert_id").values(
                    action="resolve_alert", source=alert.source, target=alert.uid,
                    alert_id=alert.id, status="pending", attempts=0, next_attempt_at=now,
                    created_at=now,
                )
                outbox_id = session.execute(insert.returning(OutboxAction.id)).scalar()
            result = CloseResult(ticket_id, alert_id, decision.resolve_alert, outbox_id)
            return result, alert.source if alert else None

        result, source = await self._db.write(close)
        self._metrics.tickets_closed.labels("agent").inc()
        if result.outbox_id is not None:
            self._metrics.outbox_enqueued.labels(source or "", "resolve_alert").inc()
            if self._on_enqueued is not None:
                self._on_enqueued()
        log.info("ticket %s closed by %s alert=%s resolved=%s outbox=%s", ticket_id, actor,
                 result.alert_id, result.alert_resolved, result.outbox_id)
        return result

    async def add_note(self, ticket_id: int, author: str, body: str) -> int:
        if not body.strip():
            raise ValueError("a note needs a body")
        now = self._clock()

        def add(session: Session) -> int:
            if session.get(Ticket, ticket_id) is None:
                raise TicketNotFound(f"ticket {ticket_id} not found")
            note = TicketNote(ticket_id=ticket_id, created_at=now, author=author,
                              body=body[:MAX_NOTE_CHARS])
            session.add(note)
            session.flush()
            return note.id

        note_id = await self._db.write(add)
        log.info("ticket %s note %s by %s", ticket_id, note_id, author)
        return note_id

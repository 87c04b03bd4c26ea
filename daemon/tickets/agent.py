"""Agent actions on tickets (close, note): one transaction each through `Transitions`, then
the metrics and log line of what was committed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.metrics import Metrics, source_label
from daemon.store.database import Database
from daemon.tickets.notices import NO_NOTICES, Notices
from daemon.tickets.transitions import CloseResult, Transitions

log = logging.getLogger(__name__)


class AgentActions:
    """What a technician does to a ticket, from the API, the CLI or (later) the console."""

    def __init__(self, db: Database, metrics: Metrics, clock: Clock = utcnow,
                 on_enqueued: Callable[[], None] | None = None,
                 notices: Notices = NO_NOTICES):
        self._db = db
        self._metrics = metrics
        self._clock = clock
        self._on_enqueued = on_enqueued  # wakes the outbox worker: send the resolve now
        self._notices = notices
        self._transitions = Transitions(db.dialect_name, notices=notices)

    async def close(self, ticket_id: int, actor: str, note: str | None = None) -> CloseResult:
        """Close a ticket as an agent; resolve its open alert and queue the upstream resolve.

        Raises `TicketNotFound`, or `TicketAlreadyClosed` (from the core) if it is closed.
        """
        now = self._clock()
        result = await self._db.write(lambda session: self._transitions.close_by_agent(
            session.connection(), ticket_id, actor, note, now))
        self._metrics.tickets_closed.labels("agent").inc()
        if result.outbox_ids:
            self._metrics.outbox_enqueued.labels(source_label(result.source), "resolve_alert"
                                                 ).inc(len(result.outbox_ids))
        if (result.outbox_ids or self._notices.any) and self._on_enqueued is not None:
            self._on_enqueued()  # the resolves, and a notification of the close
        log.info("ticket %s closed by %s alerts_resolved=%s outbox=%s", ticket_id, actor,
                 list(result.alerts_resolved), list(result.outbox_ids),
                 extra={"ticket_id": ticket_id, "alert_id": result.alert_id,
                        "source": result.source})
        return result

    async def add_note(self, ticket_id: int, author: str, body: str) -> int:
        """Add a note; raises `ValueError` for an empty body, `TicketNotFound`."""
        if not body.strip():
            raise ValueError("a note needs a body")
        now = self._clock()

        def add(session: Session) -> int:
            return self._transitions.add_note(session.connection(), ticket_id, author, body,
                                              now)

        note_id = await self._db.write(add)
        log.info("ticket %s note %s by %s", ticket_id, note_id, author,
                 extra={"ticket_id": ticket_id})
        return note_id

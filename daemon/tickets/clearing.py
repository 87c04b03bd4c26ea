"""Tickets closed once their condition stayed clear (`[lifecycle] close_after_clear`, issue 16
rule 3): an upstream resolve of a ticket's last open alert sets its `close_due_at` instead of
closing it; a raise of the condition before then clears it (daemon.tickets.conditions); this
job closes the tickets whose time came, as `auto_close` says then."""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.core.lifecycle import AutoClose, decide_clear_close
from daemon.metrics import Metrics
from daemon.store.database import Database
from daemon.store.models import Ticket
from daemon.tickets import statements as sql
from daemon.tickets.notices import NO_NOTICES, TICKET_UPSTREAM_RESOLVED, Notices
from daemon.tickets.rows import trail_row

log = logging.getLogger(__name__)

MAX_PER_RUN = 500  # tickets closed per run at most; the rest on the next run
CLEARED_BY = "alertd:cleared"


def due_tickets(session: Session, now: datetime, limit: int = MAX_PER_RUN) -> list[int]:
    """The tickets whose close is due, soonest first (the `close_due_at` index)."""
    return list(session.scalars(select(Ticket.id).where(Ticket.close_due_at <= now)
                                .order_by(Ticket.close_due_at).limit(limit)))


def close_cleared(conn: Connection, ticket_id: int, auto_close: AutoClose, now: datetime,
                  notices: Notices = NO_NOTICES) -> bool | None:
    """Close ticket `ticket_id` if its close is (still) due: True when closed, False when left
    open (an agent worked on it meanwhile), None when nothing was due any more.

    Under the ticket's lock its alerts are all resolved: a raise that joins it takes this lock
    and clears `close_due_at` first.
    """
    ticket = sql.LOCK_CLEARING_TICKET.first(conn, {"id": ticket_id})
    if (ticket is None or ticket["status"] != "open" or ticket["close_due_at"] is None
            or ticket["close_due_at"] > now):
        return None
    left_open_because = decide_clear_close(ticket["touched_at"] is not None, auto_close)
    if left_open_because is None:
        sql.close_ticket(conn, ticket_id, CLEARED_BY, now)
        said = "Its condition stayed clear (close_after_clear): ticket closed by alertd."
    else:
        sql.UPDATE_TICKET.run(conn, {"row_id": ticket_id, "close_due_at": None,
                                     "upstream_resolved_at": now})
        said = (f"Its condition stayed clear (close_after_clear); ticket left open because "
                f"{left_open_because}.")
    # The upstream resolve is what decided it, a while later.
    outcome: dict[str, Any] = ({"closed_by": CLEARED_BY} if left_open_because is None
                               else {"left_open_because": left_open_because})
    notices.queue(conn, TICKET_UPSTREAM_RESOLVED, now, source=None, ticket_id=ticket_id,
                  alert_id=ticket["alert_id"], **outcome)
    sql.insert_note(conn, ticket_id, "alertd", said, now)
    if ticket["alert_id"] is not None:
        sql.INSERT_TRAIL.run(conn, trail_row(
            ticket["alert_id"], "cleared", now, reason=f"ticket {ticket_id}: {said}"))
    return left_open_because is None


class ClearedTickets:
    """The scheduled job of `alertd run` that closes cleared tickets (every 30 s)."""

    def __init__(self, db: Database, metrics: Metrics,
                 auto_close: AutoClose = AutoClose.UNTOUCHED, clock: Clock = utcnow,
                 notices: Notices = NO_NOTICES):
        self._notices = notices
        self._db = db
        self._metrics = metrics
        self._auto_close = auto_close
        self._clock = clock

    async def run_once(self) -> int:
        """Close what is due now; how many tickets were closed. Each in a transaction of its
        own, re-checked under its row lock (a raise may have arrived meanwhile)."""
        now = self._clock()
        closed = 0
        for ticket_id in await self._db.read(lambda s: due_tickets(s, now)):
            result = await self._db.write(partial(self._close, ticket_id=ticket_id, now=now))
            if result:
                closed += 1
                self._metrics.tickets_closed.labels("cleared").inc()
            if result is not None:
                log.info("ticket %s: condition stayed clear, %s", ticket_id,
                         "closed" if result else "left open (worked on)",
                         extra={"ticket_id": ticket_id})
        return closed

    def _close(self, session: Session, *, ticket_id: int, now: datetime) -> bool | None:
        return close_cleared(session.connection(), ticket_id, self._auto_close, now,
                             self._notices)

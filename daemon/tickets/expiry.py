"""Alerts that never clear: each minute, alerts open longer than their `expire_after` (the
deciding email rule's, else `[lifecycle] expire_after` of their source) are resolved by alertd,
their tickets closed as `auto_close` says (`Transitions.expire`). Off unless configured."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.core.durations import format_duration
from daemon.core.lifecycle import (
    AlertState,
    AutoClose,
    ResolvedBy,
    decide_expiry,
    rmm_name,
)
from daemon.metrics import Metrics, source_label
from daemon.store.database import Database
from daemon.store.models import Alert
from daemon.tickets import statements as sql
from daemon.tickets.notices import NO_NOTICES, TICKET_CLOSED, Notices
from daemon.tickets.rows import trail_row
from daemon.tickets.transitions import EventResult

log = logging.getLogger(__name__)

# Alerts expired per run at most: a backlog (expiry just configured) drains a batch a minute.
MAX_PER_RUN = 500
_OPEN = AlertState.OPEN.value


def due_alerts(session: Session, now: datetime, per_source_s: Mapping[str, int],
               limit: int = MAX_PER_RUN) -> list[tuple[int, int]]:
    """(alert id, its expire_after in seconds) of the open alerts that are due, oldest first.
    An alert's own `expire_after_s` (from its email rule) wins over its source's."""
    due: list[tuple[int, datetime, int]] = []
    # Every open alert with a rule's expiry, from the non-null entries of its index (the column
    # is cleared when an alert resolves): nothing else is read, nothing when no rule sets one.
    for alert_id, first_seen_at, own_s in session.execute(
            select(Alert.id, Alert.first_seen_at, Alert.expire_after_s)
            .where(Alert.expire_after_s > 0)):  # a range: SQLite's planner enters the index
        # (not None: the query filter, restated for the type checker)
        if own_s is not None and first_seen_at + timedelta(seconds=own_s) <= now:
            due.append((alert_id, first_seen_at, own_s))
    # Per configured source: its open alerts, through the `state` index (only where
    # `[lifecycle] expire_after` names the source; expiry keeps that set small).
    for source, after_s in per_source_s.items():
        cutoff = now - timedelta(seconds=after_s)
        for alert_id, first_seen_at in session.execute(
                select(Alert.id, Alert.first_seen_at)
                .where(Alert.state == _OPEN, Alert.source == source,
                       Alert.expire_after_s.is_(None), Alert.first_seen_at <= cutoff)
                .order_by(Alert.id).limit(limit)):
            due.append((alert_id, first_seen_at, after_s))
    due.sort(key=lambda row: row[1])
    return [(alert_id, after_s) for alert_id, _, after_s in due[:limit]]


def expire_alert(conn: Connection, alert_id: int, after_s: int, auto_close: AutoClose,
                 now: datetime, notices: Notices = NO_NOTICES) -> EventResult | None:
    """Resolve an alert open longer than `after_s` (its `expire_after`): by alertd, not
    upstream (the RMM's alert is left as it is); its ticket closed as `auto_close` says,
    with a note. None when the alert is no longer open."""
    alert = sql.LOCK_ALERT_BY_ID.first(conn, {"id": alert_id})
    if alert is None:
        return None
    ticket, others_open = sql.lock_ticket_of(conn, alert, alert["state"] == "open")
    decision = decide_expiry(sql.snapshot(alert, ticket, others_open), auto_close)
    if decision is None:
        return None
    sql.UPDATE_ALERT.run(conn, {"row_id": alert_id, **sql.resolved(ResolvedBy.EXPIRY, now)})
    ticket_open = ticket is not None and ticket["status"] == "open"
    closing = decision.close_ticket and ticket_open
    sql.INSERT_TRAIL.run(conn, trail_row(
        alert_id, decision.outcome.value, now,
        reason=f"open longer than its expire_after ({format_duration(after_s)})"
        + (f"; ticket left open: {decision.left_open_because}"
           if decision.left_open_because else "")))
    if ticket is not None and ticket_open:
        said = (f"Alert expired: open longer than {format_duration(after_s)} with no "
                f"resolve from {rmm_name(alert['source'])} (expire_after); alertd "
                "stopped waiting for it, and left the alert there as it is. ")
        if closing:
            sql.close_ticket(conn, ticket["id"], "alertd:expiry", now)
            said += "Ticket closed by alertd."
            notices.queue(conn, TICKET_CLOSED, now, source=alert["source"],
                          ticket_id=ticket["id"], alert_id=alert_id, closed_by="alertd:expiry")
        elif others_open:
            said += "The ticket stays open for the other open alerts of its condition."
        else:
            said += f"Ticket left open because {decision.left_open_because}."
        sql.insert_note(conn, ticket["id"], "alertd", said, now)
    return EventResult(alert["source"], alert["uid"], alert_id, decision.outcome.value,
                       ticket["id"] if ticket is not None else None,
                       ticket_closed=closing)


class AlertExpiry:
    """The scheduled expiry of `alertd run` (every minute)."""

    def __init__(self, db: Database, metrics: Metrics, per_source_s: Mapping[str, int],
                 auto_close: AutoClose = AutoClose.UNTOUCHED, clock: Clock = utcnow,
                 notices: Notices = NO_NOTICES):
        self._notices = notices
        self._db = db
        self._metrics = metrics
        self._per_source_s = dict(per_source_s)
        self._clock = clock
        self._auto_close = auto_close

    async def run_once(self) -> int:
        """Expire what is due now; how many alerts were expired. Each in a transaction of its
        own, re-checked under its row lock (a resolve may have arrived meanwhile)."""
        now = self._clock()
        due = await self._db.read(lambda s: due_alerts(s, now, self._per_source_s))
        expired = 0
        for alert_id, after_s in due:
            result = await self._db.write(partial(self._expire, alert_id=alert_id,
                                                  after_s=after_s, now=now))
            if result is None:
                continue
            expired += 1
            self._metrics.lifecycle.labels(source_label(result.source), result.outcome).inc()
            if result.ticket_closed:
                self._metrics.tickets_closed.labels("expiry").inc()
            log.info("alert %s %s/%s expired (open longer than %d s) ticket=%s closed=%s",
                     alert_id, result.source, result.uid, after_s, result.ticket_id,
                     result.ticket_closed, extra={"alert_id": alert_id,
                                                  "ticket_id": result.ticket_id,
                                                  "source": result.source})
        return expired

    def _expire(self, session: Session, *, alert_id: int, after_s: int, now: datetime
                ) -> EventResult | None:
        return expire_alert(session.connection(), alert_id, after_s, self._auto_close, now,
                            self._notices)

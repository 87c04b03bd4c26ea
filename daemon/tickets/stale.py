"""Stale alerts (issue 16, rule 7): an alert open here that its RMM no longer knows (polling
looked it up: 404). alertd cannot resolve it on the RMM's word, so it says so in the alert's
trail, once, and leaves the alert and its ticket as they are (`expire_after` can close it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.store.database import Database
from daemon.store.models import Alert, AlertTrail
from daemon.tickets import statements as sql
from daemon.tickets.rows import trail_row

STALE = "stale"


def mark_stale(conn: Connection, source: str, uid: str, reason: str, now: datetime) -> bool:
    """Add `stale` to the trail of the open alert (source, uid) unless its newest entry says
    so already; whether it was added."""
    alert_id = conn.execute(select(Alert.id).where(
        Alert.source == source, Alert.uid == uid, Alert.state == "open")).scalar()
    if alert_id is None:
        return False
    newest = conn.execute(select(AlertTrail.decision).where(AlertTrail.alert_id == alert_id)
                          .order_by(AlertTrail.id.desc()).limit(1)).scalar()
    if newest == STALE:
        return False
    sql.INSERT_TRAIL.run(conn, trail_row(alert_id, STALE, now, channel=f"poll:{source}"[:16],
                                         reason=reason))
    return True


class StaleMarks:
    """What polling calls for an open alert its RMM does not know (any more)."""

    def __init__(self, db: Database, clock: Clock = utcnow):
        self._db = db
        self._clock = clock

    async def __call__(self, source: str, uid: str, reason: str) -> bool:
        now = self._clock()

        def mark(session: Session) -> bool:
            return mark_stale(session.connection(), source, uid, reason, now)
        return await self._db.write(mark)

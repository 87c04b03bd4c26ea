"""The maintenance windows set through the API and the CLI (issue 16, rule 4): add, list, end.

A window is never deleted: ending it (DELETE /api/maintenance/{id}, `alertd maintenance end`)
moves its end to now, so what it suppressed stays explained. This process rereads the
windows at once; another alertd process within `maintenance.REFRESH_S` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.config.lifecycle_sections import WeeklyWindowConfig
from daemon.core.clock import Clock, utc_iso, utcnow
from daemon.core.durations import format_duration
from daemon.core.maintenance import Scope, Weekly
from daemon.store.database import Database
from daemon.store.models import Alert, MaintenanceWindow
from daemon.store.queries import Page
from daemon.tickets.maintenance import MaintenanceSchedule, window_label

MAX_REASON_CHARS = 2000
WINDOW_STATES = ("scheduled", "active", "ended")


class WindowNotFound(LookupError):
    pass


class WindowRefused(ValueError):
    """A window that cannot be (a value for scope all, an end before its start...)."""


def check_window(scope: Scope, value: str, starts_at: datetime, ends_at: datetime
                 ) -> tuple[datetime, datetime]:
    """The window's start and end in UTC; raises WindowRefused with the reason a window
    cannot be set."""
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise WindowRefused("starts_at and ends_at need a time zone (e.g. Z or +01:00)")
    try:
        starts_at, ends_at = starts_at.astimezone(UTC), ends_at.astimezone(UTC)
    except OverflowError:  # year 1 at +01:00 is before year 1 in UTC
        raise WindowRefused("starts_at or ends_at is out of range") from None
    if ends_at <= starts_at:
        raise WindowRefused("a window must end after it starts (ends_at after starts_at)")
    if (scope is Scope.ALL) != (not value.strip()):
        raise WindowRefused('scope "all" takes no value; every other scope needs one')
    return starts_at, ends_at


def _state(row: Any, now: datetime) -> str:
    return ("scheduled" if now < row.starts_at else "active" if now < row.ends_at
            else "ended")


def _suppressed(session: Session, labels: Sequence[str]) -> dict[str, int]:
    """How many alerts each window (by its label) suppressed (the suppressed_by index)."""
    if not labels:
        return {}
    return dict(session.execute(  # type: ignore[arg-type]
        select(Alert.suppressed_by, func.count()).where(Alert.suppressed_by.in_(labels))
        .group_by(Alert.suppressed_by)).all())


def window_view(row: Any, now: datetime, suppressed: int) -> dict[str, Any]:
    return {"id": row.id, "scope": row.scope, "value": row.value,
            "starts_at": utc_iso(row.starts_at), "ends_at": utc_iso(row.ends_at),
            "reason": row.reason, "state": _state(row, now), "suppressed": suppressed,
            "created_at": utc_iso(row.created_at), "created_by": row.created_by,
            "ended_by": row.ended_by}


def weekly_view(window: WeeklyWindowConfig, weekly: Weekly, now: datetime, suppressed: int
                ) -> dict[str, Any]:
    occurrence = weekly.open_at(now)
    return {"name": window.name, "scope": window.scope.value, "value": window.value,
            "days": window.days, "start": window.start, "duration_s": window.duration,
            "duration": format_duration(window.duration),
            "time_zone": window.time_zone, "reason": window.reason,
            "active": occurrence is not None,
            "active_until": utc_iso(occurrence[1]) if occurrence else None,
            "suppressed": suppressed}


class MaintenanceWindows:
    def __init__(self, db: Database, schedule: MaintenanceSchedule,
                 weekly: Sequence[WeeklyWindowConfig] = (), clock: Clock = utcnow):
        self._db = db
        self._schedule = schedule
        # Each configured window with the one its decisions use (label, zone, days).
        self._weekly = [(config, config.window()) for config in weekly]
        self._clock = clock

    async def add(self, scope: Scope, value: str, starts_at: datetime, ends_at: datetime,
                  reason: str, actor: str) -> dict[str, Any]:
        """Store a window; raises WindowRefused."""
        value = value.strip()
        starts_at, ends_at = check_window(scope, value, starts_at, ends_at)
        now = self._clock()

        def add(session: Session) -> int:
            row = MaintenanceWindow(scope=scope.value, value=value, starts_at=starts_at,
                                    ends_at=ends_at, reason=reason[:MAX_REASON_CHARS],
                                    created_at=now, created_by=actor[:200])
            session.add(row)
            session.flush()
            return row.id
        window_id = await self._db.write(add)
        self._schedule.invalidate()
        found = await self.get(window_id)
        assert found is not None
        return found

    async def get(self, window_id: int) -> dict[str, Any] | None:
        now = self._clock()

        def run(session: Session) -> dict[str, Any] | None:
            row = session.get(MaintenanceWindow, window_id)
            if row is None:
                return None
            label = window_label(row.id)
            return window_view(row, now, _suppressed(session, [label]).get(label, 0))
        return await self._db.read(run)

    async def listing(self, page: Page, state: str | None = None) -> dict[str, Any]:
        """The stored windows, newest first (optionally only those in `state`), and the
        configured weekly ones (`weekly`)."""
        now = self._clock()
        query = select(MaintenanceWindow)
        if state == "scheduled":
            query = query.where(MaintenanceWindow.starts_at > now)
        elif state == "active":
            query = query.where(MaintenanceWindow.starts_at <= now,
                                MaintenanceWindow.ends_at > now)
        elif state == "ended":
            query = query.where(MaintenanceWindow.ends_at <= now)
        if page.before_id is not None:
            query = query.where(MaintenanceWindow.id < page.before_id)
        query = query.order_by(MaintenanceWindow.id.desc()).limit(page.limit)

        def run(session: Session) -> dict[str, Any]:
            rows = list(session.scalars(query))
            counts = _suppressed(session, [window_label(row.id) for row in rows]
                                 + [window.label for _, window in self._weekly])
            items = [window_view(row, now, counts.get(window_label(row.id), 0)) for row in rows]
            return {"items": items,
                    "next_before_id": items[-1]["id"] if len(items) == page.limit else None,
                    "weekly": [weekly_view(config, window.weekly, now,
                                           counts.get(window.label, 0))
                               for config, window in self._weekly if window.weekly]}
        return await self._db.read(run)

    async def end(self, window_id: int, actor: str) -> dict[str, Any]:
        """End a window now (one not started yet is cancelled: it starts and ends now); ending
        an ended window changes nothing. Raises WindowNotFound."""
        now = self._clock()

        def end(session: Session) -> None:
            row = session.get(MaintenanceWindow, window_id, with_for_update=True)
            if row is None:
                raise WindowNotFound(f"maintenance window {window_id} not found")
            if row.ends_at > now:
                row.starts_at = min(row.starts_at, now)
                row.ends_at = now
                row.ended_by = actor[:200]
        await self._db.write(end)
        self._schedule.invalidate()
        found = await self.get(window_id)
        assert found is not None
        return found

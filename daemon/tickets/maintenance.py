"""Maintenance windows applied (issue 16, rule 4): which window holds a new alert's ticket back,
the windows set through the API and the CLI, and the release of suppressed alerts when no
window covers them any more.

`daemon.core.maintenance` decides whether a window is open and covers an alert; this module
finds the windows in force (the configured weekly ones, and the stored ones not over yet, each
value resolved to the synced record it names) and writes what follows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, func, select, tuple_
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.core.events import AlertEvent, TicketFields
from daemon.core.lifecycle import AlertAction, Outcome, ResolvedBy, rmm_name
from daemon.core.maintenance import Scope, Target, Window, window_for
from daemon.metrics import Metrics, source_label
from daemon.store.database import Database
from daemon.store.models import Alert, Asset, Customer, MaintenanceWindow, Site
from daemon.tickets import statements as sql
from daemon.tickets.placement import Placement, TicketPlacer
from daemon.tickets.rows import trail_row

log = logging.getLogger(__name__)

REFRESH_S = 5.0  # how long another process's new window may go unnoticed
# How long the synced record a window's value names is remembered: the lookup by name reads
# the whole customers or sites table, so it is not repeated at every refresh.
RECORD_TTL_S = 300.0
MAX_RELEASED_PER_RUN = 500
_RECORDS = {Scope.CUSTOMER: Customer, Scope.SITE: Site, Scope.DEVICE: Asset}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_label(window_id: int) -> str:
    """How the trail, notes and `alerts.suppressed_by` name a stored window."""
    return f"window {window_id}"


def stored_window(row: Any) -> Window:
    return Window(window_label(row.id), Scope(row.scope), row.value, starts_at=row.starts_at,
                  ends_at=row.ends_at)


def record_id(conn: Connection, scope: Scope, value: str) -> int | None:
    """The synced customer, site or asset that `value` names: by id, else by its name
    (without case) when exactly one has it."""
    model = _RECORDS.get(scope)
    if model is None or not value:
        return None
    table = model.__table__
    if value.isdigit() and len(value) <= 18 and conn.execute(
            select(table.c.id).where(table.c.id == int(value))).first() is not None:
        return int(value)
    ids = conn.execute(select(table.c.id).where(func.lower(table.c.name) == value.lower())
                       .limit(2)).scalars().all()
    return int(ids[0]) if len(ids) == 1 else None


class MaintenanceSchedule:
    """The windows in force, reread every `REFRESH_S` seconds (and at once after this
    process changed one: `invalidate`), from inside a write unit."""

    def __init__(self, weekly: Sequence[Window] = (), clock: Callable[[], float] = time.monotonic):
        self._weekly = tuple(weekly)
        self._clock = clock
        self._windows: list[Window] = []
        self._read_at: float | None = None
        self._records: dict[tuple[Scope, str], tuple[int | None, float]] = {}

    def invalidate(self) -> None:
        self._read_at = None

    def windows(self, conn: Connection, now: datetime) -> list[Window]:
        """The weekly windows and the stored ones not over at `now`, their records resolved."""
        if self._read_at is None or self._clock() - self._read_at >= REFRESH_S:
            rows = conn.execute(select(MaintenanceWindow).where(MaintenanceWindow.ends_at > now)
                                .order_by(MaintenanceWindow.id)).all()
            found = [*self._weekly, *(stored_window(row) for row in rows)]
            self._windows = [Window(w.label, w.scope, w.value,
                                    self._record_id(conn, w.scope, w.value), w.starts_at,
                                    w.ends_at, w.weekly) for w in found]
            self._read_at = self._clock()
        return self._windows

    def _record_id(self, conn: Connection, scope: Scope, value: str) -> int | None:
        key = (scope, value)
        known = self._records.get(key)
        if known is None or self._clock() - known[1] >= RECORD_TTL_S:
            if len(self._records) >= 1000:  # values of windows long over: start afresh
                self._records.clear()
            known = self._records[key] = (record_id(conn, scope, value), self._clock())
        return known[0]

    def window_for(self, conn: Connection, event: AlertEvent, placement: Placement,
                   now: datetime) -> Window | None:
        """The open window that covers `event` placed at `placement`, or None."""
        return window_for(self.windows(conn, now), Target(
            event.customer, event.site, event.device, event.device_ref,
            placement.customer_id, placement.site_id, placement.asset_id), now)

    def any_open(self, conn: Connection, now: datetime) -> bool:
        return any(w.is_open(now) for w in self.windows(conn, now))


def held(event: AlertEvent) -> dict[str, Any]:
    """What a suppressed alert's ticket is made of later (the alert row keeps the rest)."""
    return {"type": event.ticket.type, "summary": event.ticket.summary,
            "details": event.ticket.details, "device_ref": event.device_ref}


def held_event(alert: Mapping[str, Any]) -> AlertEvent:
    """The raise of a suppressed alert, rebuilt from its row."""
    kept = alert["held"] or {}
    return AlertEvent(source=alert["source"], uid=alert["uid"], action=AlertAction.RAISE,
                      device=alert["device"], site=alert["site"], customer=alert["customer"],
                      priority=alert["priority"], message=alert["message"],
                      ticket=TicketFields(kept.get("type"), kept.get("summary"),
                                          kept.get("details")),
                      device_ref=kept.get("device_ref"))


@dataclass(frozen=True)
class Released:
    source: str
    uid: str
    alert_id: int
    ticket_id: int | None  # None: resolved upstream meanwhile, no ticket
    outcome: str


# Whether the RMM resolved an alert (True), still has it open (False), or cannot say (None).
UpstreamCheck = Callable[[str], Awaitable[bool | None]]


class MaintenanceRelease:
    """The job of `alertd run` (every 30 s) that gives each suppressed alert still open its
    ticket once no window covers it, after asking its RMM where polling is configured."""

    def __init__(self, db: Database, metrics: Metrics, schedule: MaintenanceSchedule,
                 placer: TicketPlacer, give_ticket: Callable[..., Any],
                 checks: Mapping[str, UpstreamCheck] | None = None, clock: Clock = utcnow):
        self._db = db
        self._metrics = metrics
        self._schedule = schedule
        self._placer = placer
        # Transitions.release_ticket: the ticket a new alert gets (its own, or its condition's)
        self._give_ticket = give_ticket
        self._checks = dict(checks or {})
        self._clock = clock

    async def run_once(self) -> list[Released]:
        now = self._clock()
        due = await self._db.read(lambda s: self._due(s.connection(), now))
        released = []
        for alert_id, source, uid in due:
            resolved_upstream = None
            check = self._checks.get(source)
            if check is not None:
                try:
                    resolved_upstream = await check(uid)
                except Exception as err:  # an RMM error must not hold every other alert back
                    log.warning("maintenance: could not ask %s about alert %s (%s); opening "
                                "its ticket", source, uid, err)
            result = await self._db.write(partial(
                self._release, alert_id=alert_id, resolved_upstream=resolved_upstream, now=now))
            if result is None:
                continue
            released.append(result)
            self._metrics.lifecycle.labels(source_label(source), result.outcome).inc()
            if result.ticket_id is not None:
                log.info("alert %s %s/%s released from maintenance: ticket %s", alert_id,
                         source, uid, result.ticket_id,
                         extra={"alert_id": alert_id, "ticket_id": result.ticket_id,
                                "source": source})
        return released

    def _due(self, conn: Connection, now: datetime) -> list[tuple[int, str, str]]:
        """The suppressed alerts waiting for their ticket that no open window covers now (at
        most `MAX_RELEASED_PER_RUN`, oldest first; those still covered are passed over, so
        a long window never holds back the alerts of one that ended)."""
        due: list[tuple[int, str, str]] = []
        after = (_EPOCH, 0)
        while len(due) < MAX_RELEASED_PER_RUN:
            # The held_since index holds just the waiting alerts (cleared when one gets its
            # ticket or resolves): a range, so SQLite's planner enters it.
            rows = conn.execute(select(Alert.__table__).where(
                tuple_(Alert.held_since, Alert.id) > tuple_(*after))
                .order_by(Alert.held_since, Alert.id).limit(MAX_RELEASED_PER_RUN)
            ).mappings().all()
            for alert in rows:
                event = held_event(dict(alert))
                placement = self._placer.locate(conn, event)
                if self._schedule.window_for(conn, event, placement, now) is None:
                    due.append((int(alert["id"]), str(alert["source"]), str(alert["uid"])))
            if len(rows) < MAX_RELEASED_PER_RUN:
                break
            after = (rows[-1]["held_since"], rows[-1]["id"])
        return due[:MAX_RELEASED_PER_RUN]

    def _release(self, session: Session, *, alert_id: int, resolved_upstream: bool | None,
                 now: datetime) -> Released | None:
        conn = session.connection()
        alert = sql.LOCK_ALERT_BY_ID.first(conn, {"id": alert_id})
        if alert is None or alert["held_since"] is None:
            return None  # released by another process meanwhile
        if alert["state"] != "open" or alert["ticket_id"] is not None:
            # Nothing to wait for any more (a resolve clears it too; this is the safety net).
            sql.UPDATE_ALERT.run(conn, {"row_id": alert_id, "held": None, "held_since": None})
            return None
        window = alert["suppressed_by"]
        if resolved_upstream:
            sql.UPDATE_ALERT.run(conn, {"row_id": alert_id,
                                        **sql.resolved(ResolvedBy.UPSTREAM, now)})
            sql.INSERT_TRAIL.run(conn, trail_row(
                alert_id, Outcome.RESOLVED.value, now, reason=(
                    f"resolved in {rmm_name(alert['source'])} during {window} (asked when no "
                    "window covered it any more): no ticket")))
            return Released(alert["source"], alert["uid"], alert_id, None,
                            Outcome.RESOLVED.value)
        event = held_event(alert)
        ticket_id, reason = self._give_ticket(conn, event, alert, now)
        sql.UPDATE_ALERT.run(conn, {"row_id": alert_id, "held": None, "held_since": None})
        sql.insert_note(conn, ticket_id, "alertd", (
            f"Alert {alert['uid']} was raised at {alert['first_seen_at']:%Y-%m-%d %H:%M:%S} "
            f"UTC during maintenance ({window}) and is still open now that no window covers "
            "it."), now)
        sql.INSERT_TRAIL.run(conn, trail_row(
            alert_id, Outcome.RELEASED.value, now,
            reason=f"{window} over, the alert still open: {reason}"))
        return Released(alert["source"], alert["uid"], alert_id, ticket_id,
                        Outcome.RELEASED.value)

"""The polling channel (optional, off by default): what email and webhooks missed.

Each poll of one source lists its open alerts upstream, then:
- raises every alert alertd has never seen, as a delivery on channel `poll` (so it is stored,
  deduplicated and traced like any other input);
- reconciles: an alert open in alertd (for longer than `grace_s`, so one raised by email a
  moment ago is not judged by an older listing) that is not in the open list is looked up one
  by one, and resolved only when the RMM confirms it is resolved. An alert the RMM does not
  know (404) is left open and logged: alertd cannot tell why.
A listing that fails part-way reconciles nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.core.events import (
    AlertEvent,
    Channel,
    Interpretation,
    RawDelivery,
    TicketFields,
    clamp_event,
)
from daemon.core.lifecycle import AlertAction, AlertState
from daemon.pipeline import Clock, InboundDelivery, Pipeline, utcnow
from daemon.rmm.datto import DattoAlert, DattoClient
from daemon.rmm.errors import RmmError
from daemon.rmm.syncro import SyncroAlert, SyncroClient
from daemon.store.database import Database
from daemon.store.models import Alert

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Upstream:
    """What a source's API says about one alert."""

    uid: str
    resolved: bool
    event: AlertEvent  # the raise it would be, with the fields the API knows


@dataclass
class PollResult:
    source: str
    open_upstream: int = 0
    raised: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    unknown_upstream: list[str] = field(default_factory=list)
    error: str | None = None


def datto_upstream(alert: DattoAlert) -> Upstream:
    message = alert.diagnostics or alert.context_class
    return Upstream(alert.uid, alert.resolved, AlertEvent(
        source="datto", uid=alert.uid, action=AlertAction.RAISE, device=alert.device_name,
        site=alert.site_name, priority=alert.priority, message=message,
        device_ref=alert.device_uid))


def syncro_upstream(alert: SyncroAlert) -> Upstream:
    summary = ": ".join(p for p in (alert.computer_name, alert.description) if p)
    return Upstream(alert.id, alert.resolved, AlertEvent(
        source="syncro", uid=alert.id, action=AlertAction.RAISE, device=alert.computer_name,
        message=alert.formatted_output or alert.description, device_ref=alert.asset_id,
        ticket=TicketFields(summary=summary or None)))


class Poller:
    """Polls one source. `list_open` yields its open alerts, `lookup` reads one (None: 404)."""

    def __init__(self, source: str, pipeline: Pipeline, db: Database,
                 list_open: Callable[[], AsyncIterator[Upstream]],
                 lookup: Callable[[str], Awaitable[Upstream | None]], *,
                 grace_s: float = 300.0, clock: Clock = utcnow):
        self.source = source
        self._pipeline = pipeline
        self._db = db
        self._list_open = list_open
        self._lookup = lookup
        self._grace_s = grace_s
        self._clock = clock

    async def poll(self) -> PollResult:
        result = PollResult(self.source)
        started = self._clock()
        try:
            upstream = {alert.uid: alert async for alert in self._list_open()}
        except RmmError as err:
            result.error = f"listing open alerts failed; nothing reconciled: {err}"
            log.warning("poll %s: %s", self.source, result.error)
            return result
        result.open_upstream = len(upstream)
        known = await self._db.read(lambda s: self._known(s, list(upstream)))
        for uid, alert in upstream.items():
            if uid not in known:
                await self._deliver(alert.event, started)
                result.raised.append(uid)
        cutoff = started - timedelta(seconds=self._grace_s)
        candidates = await self._db.read(lambda s: self._open_before(s, cutoff))
        for uid in candidates:
            if uid in upstream:
                continue
            try:
                current = await self._lookup(uid)
            except RmmError as err:
                result.error = f"looking up {uid} failed: {err}"
                log.warning("poll %s: %s", self.source, result.error)
                continue
            if current is None:
                result.unknown_upstream.append(uid)
            elif current.resolved:
                resolve = AlertEvent(source=self.source, uid=uid, action=AlertAction.RESOLVE)
                await self._deliver(resolve, started)
                result.resolved.append(uid)
        log.info("poll %s: %d open upstream, raised %d, resolved %d, unknown upstream %d",
                 self.source, result.open_upstream, len(result.raised), len(result.resolved),
                 len(result.unknown_upstream))
        return result

    def _known(self, session: Session, uids: list[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(uids), 500):  # bounded IN lists
            chunk = uids[start:start + 500]
            known.update(session.scalars(select(Alert.uid).where(
                Alert.source == self.source, Alert.uid.in_(chunk))))
        return known

    def _open_before(self, session: Session, cutoff: datetime) -> list[str]:
        return list(session.scalars(select(Alert.uid).where(
            Alert.source == self.source, Alert.state == AlertState.OPEN.value,
            Alert.first_seen_at <= cutoff)))

    async def _deliver(self, event: AlertEvent, started: datetime) -> None:
        event = clamp_event(event)
        body = {"source": event.source, "uid": event.uid, "action": event.action.value,
                **{name: value for name in ("device", "site", "customer", "priority",
                                            "message")
                   if (value := getattr(event, name)) is not None}}
        if event.ticket.summary:
            body["ticket"] = {"summary": event.ticket.summary}
        if event.device_ref:
            body["device_id"] = event.device_ref
        inbound = InboundDelivery(
            channel=Channel.POLL, dedupe_key=f"{event.source}:{event.uid}:{event.action.value}",
            payload=json.dumps(body).encode(), content_type="application/json",
            source=event.source, meta={"polled_at": started.isoformat()})
        meaning = self._pipeline.interpret(RawDelivery(
            0, inbound.channel.value, inbound.source, inbound.content_type, inbound.payload,
            inbound.meta))
        if isinstance(meaning, Interpretation):
            await self._pipeline.store_and_apply(inbound, meaning)
        else:  # cannot happen for events built here; keep it visible if it does
            log.error("poll %s: %s/%s not understood: %s", self.source, event.source,
                      event.uid, meaning)


def _api_poller(source: str, open_alerts: Callable[[], AsyncIterator[T]],
                fetch: Callable[[str], Awaitable[T | None]], to_upstream: Callable[[T], Upstream],
                pipeline: Pipeline, db: Database, grace_s: float) -> Poller:
    async def list_open() -> AsyncIterator[Upstream]:
        async for alert in open_alerts():
            yield to_upstream(alert)

    async def lookup(uid: str) -> Upstream | None:
        alert = await fetch(uid)
        return to_upstream(alert) if alert is not None else None

    return Poller(source, pipeline, db, list_open, lookup, grace_s=grace_s)


def datto_poller(client: DattoClient, pipeline: Pipeline, db: Database, grace_s: float = 300.0
                 ) -> Poller:
    return _api_poller("datto", client.open_alerts, client.alert, datto_upstream, pipeline, db,
                       grace_s)


def syncro_poller(client: SyncroClient, pipeline: Pipeline, db: Database,
                  grace_s: float = 300.0) -> Poller:
    return _api_poller("syncro", client.active_alerts, client.alert, syncro_upstream, pipeline,
                       db, grace_s)

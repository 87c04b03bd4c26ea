"""The polling channel (optional, off by default; `[datto]/[syncro] poll_interval_s`): what
email and webhooks missed, and resolves they do not report (an alert cleared by hand in
Syncro).

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

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from daemon.core.api_event import fit_event
from daemon.core.clock import Clock, utcnow
from daemon.core.events import AlertEvent, Channel, TicketFields
from daemon.core.lifecycle import AlertAction, rmm_name
from daemon.intake.inbound import Inbound
from daemon.intake.pipeline import Pipeline
from daemon.metrics import ChannelHealth
from daemon.rmm.datto import DattoAlert, DattoClient
from daemon.rmm.errors import RmmError
from daemon.rmm.syncro import SyncroAlert, SyncroClient
from daemon.store.queries import Queries

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
        device_ref=alert.device_uid, condition=alert.context_class))


def syncro_upstream(alert: SyncroAlert) -> Upstream:
    summary = ": ".join(p for p in (alert.computer_name, alert.description) if p)
    return Upstream(alert.id, alert.resolved, AlertEvent(
        source="syncro", uid=alert.id, action=AlertAction.RAISE, device=alert.computer_name,
        message=alert.formatted_output or alert.description, device_ref=alert.asset_id,
        condition=alert.trigger, ticket=TicketFields(summary=summary or None)))


class Poller:
    """Polls one source. `list_open` yields its open alerts, `lookup` reads one (None: 404);
    failures are recorded in `health` as channel `poll:<source>`."""

    def __init__(self, source: str, pipeline: Pipeline, queries: Queries,
                 list_open: Callable[[], AsyncIterator[Upstream]],
                 lookup: Callable[[str], Awaitable[Upstream | None]], *,
                 grace_s: float = 300.0, clock: Clock = utcnow,
                 health: ChannelHealth | None = None,
                 on_unknown: Callable[[str, str, str], Awaitable[object]] | None = None):
        self.source = source
        self._health = health
        self._pipeline = pipeline
        self._queries = queries
        self._list_open = list_open
        self._lookup = lookup
        self._grace_s = grace_s
        self._clock = clock
        # (source, uid, reason): an open alert the RMM does not know; its trail says so
        self._on_unknown = on_unknown

    async def poll(self) -> PollResult:
        result = PollResult(self.source)
        started = self._clock()
        try:
            upstream = {alert.uid: alert async for alert in self._list_open()}
        except RmmError as err:
            result.error = f"listing open alerts failed; nothing reconciled: {err}"
            self._failed(result.error)
            return result
        result.open_upstream = len(upstream)
        known = await self._queries.known_alert_uids(self.source, list(upstream))
        for uid, alert in upstream.items():
            if uid not in known:
                await self._deliver(alert.event, started)
                result.raised.append(uid)
        cutoff = started - timedelta(seconds=self._grace_s)
        candidates = await self._queries.open_alert_uids(self.source, seen_before=cutoff)
        for uid in candidates:
            if uid in upstream:
                continue
            try:
                current = await self._lookup(uid)
            except RmmError as err:
                result.error = f"looking up {uid} failed: {err}"
                self._failed(result.error)
                continue
            if current is None:
                result.unknown_upstream.append(uid)
                if self._on_unknown is not None:
                    await self._on_unknown(self.source, uid, (
                        f"{rmm_name(self.source)} no longer knows this alert (polling looked "
                        "it up: not found); left open here"))
            elif current.resolved:
                resolve = AlertEvent(source=self.source, uid=uid, action=AlertAction.RESOLVE)
                await self._deliver(resolve, started)
                result.resolved.append(uid)
        log.info("poll %s: %d open upstream, raised %d, resolved %d, unknown upstream %d",
                 self.source, result.open_upstream, len(result.raised), len(result.resolved),
                 len(result.unknown_upstream))
        return result

    def _failed(self, error: str) -> None:
        log.warning("poll %s: %s", self.source, error)
        if self._health is not None:  # RmmError texts carry no credentials
            self._health.record_error(f"poll:{self.source}", error)

    async def _deliver(self, event: AlertEvent, started: datetime) -> None:
        event = fit_event(event)
        await self._pipeline.ingest(Inbound.of_event(
            Channel.POLL, event, dedupe_key=f"{event.source}:{event.uid}:{event.action.value}",
            meta={"polled_at": started.isoformat()}))


def _api_poller(source: str, open_alerts: Callable[[], AsyncIterator[T]],
                fetch: Callable[[str], Awaitable[T | None]], to_upstream: Callable[[T], Upstream],
                pipeline: Pipeline, queries: Queries, grace_s: float,
                health: ChannelHealth | None,
                on_unknown: Callable[[str, str, str], Awaitable[object]] | None) -> Poller:
    async def list_open() -> AsyncIterator[Upstream]:
        async for alert in open_alerts():
            yield to_upstream(alert)

    async def lookup(uid: str) -> Upstream | None:
        alert = await fetch(uid)
        return to_upstream(alert) if alert is not None else None

    return Poller(source, pipeline, queries, list_open, lookup, grace_s=grace_s, health=health,
                  on_unknown=on_unknown)


def datto_poller(client: DattoClient, pipeline: Pipeline, queries: Queries,
                 grace_s: float = 300.0, health: ChannelHealth | None = None,
                 on_unknown: Callable[[str, str, str], Awaitable[object]] | None = None
                 ) -> Poller:
    return _api_poller("datto", client.open_alerts, client.alert, datto_upstream, pipeline,
                       queries, grace_s, health, on_unknown)


def syncro_poller(client: SyncroClient, pipeline: Pipeline, queries: Queries,
                  grace_s: float = 300.0, health: ChannelHealth | None = None,
                  on_unknown: Callable[[str, str, str], Awaitable[object]] | None = None
                  ) -> Poller:
    return _api_poller("syncro", client.active_alerts, client.alert, syncro_upstream, pipeline,
                       queries, grace_s, health, on_unknown)

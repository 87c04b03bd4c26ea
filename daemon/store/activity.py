"""Read side of GET /api/status and /api/webhooks/config: the newest input of each channel and
what is waiting (deliveries to process or replay, actions owed to the RMMs).

Every read is an index seek or a count over one status, so the answer stays quick however
many rows the tables hold: the newest delivery of a channel or source through
`ix_deliveries_channel_id` / `ix_deliveries_channel_source_id`, the backlogs through the
status indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.core.clock import utc_iso
from daemon.store.database import Database
from daemon.store.models import Delivery, ImapCheckpoint, OutboxAction, SyncRun

# (channel, source): source None means any source (email learns its source from the rules,
# so the newest mail of a channel is not the newest of any one source).
ChannelKey = tuple[str, str | None]

# What waits: (its status column, since when, the statuses that wait).
_BACKLOG = {
    "deliveries": (Delivery.status, Delivery.received_at, ("received", "failed")),
    "outbox": (OutboxAction.status, OutboxAction.created_at, ("pending", "dead")),
}


# The channels whose last input deliveries tell (`last_input`), besides `imap:<account>`.
DELIVERY_CHANNELS = ("smtp", "api", "webhook:datto", "webhook:syncro", "poll:datto",
                     "poll:syncro")


@dataclass(frozen=True)
class StoreFigures:
    """What /metrics reads from the database at each scrape (every figure an index seek or a
    count over one waiting status, so a scrape stays cheap with millions of rows)."""

    waiting: dict[str, dict[str, dict[str, Any]]]  # `Activity.backlogs`
    last_input: dict[str, datetime]  # channel -> its newest input; channels with none left out
    last_sync: dict[tuple[str, str], datetime]  # (source, "ok" | "failed") -> newest end


def newest_delivery(session: Session, channel: str, source: str | None) -> Any:
    """The newest delivery of a channel (and source), or None: id, received_at, status,
    outcome, error. An index seek (`ix_deliveries_channel_id` / `_channel_source_id`)."""
    query = (select(Delivery.id, Delivery.received_at, Delivery.status, Delivery.outcome,
                    Delivery.error)
             .where(Delivery.channel == channel).order_by(Delivery.id.desc()).limit(1))
    if source is not None:
        query = query.where(Delivery.source == source)
    return session.execute(query).first()


def imap_last_inputs(session: Session) -> dict[str, datetime]:
    """Per IMAP account, when its newest batch of mail was stored: the checkpoint moves only
    after a batch is committed. (A delivery records its account only inside its JSON `meta`,
    which no index of both backends can reach.)"""
    query = select(ImapCheckpoint.account, func.max(ImapCheckpoint.updated_at)
                   ).group_by(ImapCheckpoint.account)
    return {account: moment for account, moment in session.execute(query).all()}


def last_input(session: Session, channel: str) -> datetime | None:
    """When the newest input of a named channel (`smtp`, `api`, `webhook:<source>`,
    `poll:<source>`, `imap:<account>`) was stored; None when it never had one. What
    GET /api/status, /metrics and the silence watch call a channel's last input."""
    if channel.startswith("imap:"):
        return imap_last_inputs(session).get(channel.removeprefix("imap:"))
    kind, _, source = channel.partition(":")
    newest = newest_delivery(session, kind, source or None)
    return newest.received_at if newest is not None else None


def _newest(session: Session, channel: str, source: str | None) -> dict[str, Any] | None:
    row = newest_delivery(session, channel, source)
    if row is None:
        return None
    return {"id": row.id, "received_at": utc_iso(row.received_at), "status": row.status,
            "outcome": row.outcome, "error": row.error}


def _age_s(now: datetime, oldest: datetime | None) -> float | None:
    return None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 1)


def _backlogs(session: Session, now: datetime) -> dict[str, dict[str, dict[str, Any]]]:
    """{"deliveries": {"received": {...}, "failed": {...}}, "outbox": {"pending": {...},
    "dead": {...}}}, each `{"count": n, "oldest_age_s": seconds or None}`."""
    answer: dict[str, dict[str, dict[str, Any]]] = {}
    for name, (status_column, since, statuses) in _BACKLOG.items():
        rows = session.execute(
            select(status_column, func.count(), func.min(since))
            .where(status_column.in_(statuses)).group_by(status_column)).all()
        found = {status: (count, oldest) for status, count, oldest in rows}
        answer[name] = {}
        for status in statuses:
            count, oldest = found.get(status, (0, None))
            answer[name][status] = {"count": count, "oldest_age_s": _age_s(now, oldest)}
    return answer


class Activity:
    def __init__(self, db: Database):
        self._db = db

    async def newest_deliveries(self, keys: Iterable[ChannelKey]
                                ) -> dict[ChannelKey, dict[str, Any] | None]:
        """The newest delivery of each (channel, source): id, received_at, status, outcome,
        error; None when there is none."""
        wanted = list(keys)
        return await self._db.read(lambda session: {
            key: _newest(session, *key) for key in wanted})

    async def imap_last_input(self) -> dict[str, datetime]:
        """`imap_last_inputs`, in a read transaction of its own."""
        return await self._db.read(imap_last_inputs)

    async def backlogs(self, now: datetime) -> dict[str, dict[str, dict[str, Any]]]:
        """`_backlogs`, in a read transaction of its own."""
        return await self._db.read(lambda session: _backlogs(session, now))

    async def figures(self, now: datetime) -> StoreFigures:
        """`StoreFigures` for /metrics, in one read transaction."""
        def run(session: Session) -> StoreFigures:
            inputs = {f"imap:{account}": moment
                      for account, moment in imap_last_inputs(session).items()}
            for channel in DELIVERY_CHANNELS:
                if (moment := last_input(session, channel)) is not None:
                    inputs[channel] = moment
            # sync_runs holds a row per run (a few a day): grouping all of them is cheap.
            last_sync = {(source, status): finished for source, status, finished in
                         session.execute(select(SyncRun.source, SyncRun.status,
                                                func.max(SyncRun.finished_at))
                                         .where(SyncRun.status.in_(("ok", "failed")))
                                         .group_by(SyncRun.source, SyncRun.status)).all()
                         if finished is not None}
            return StoreFigures(_backlogs(session, now), inputs, last_sync)
        return await self._db.read(run)

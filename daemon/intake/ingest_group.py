"""HTTP intake in groups: the requests that arrive while a write runs are stored and applied
together, in one unit of a few set-based statements, instead of a few statements each.

The common request is a raise of an alert nobody has seen: a new delivery, a new alert, a
new ticket. For the items of a group that are exactly that, the unit looks their deliveries
up (SQLite) or inserts them (PostgreSQL) in one statement, inserts their alerts in one
(`Transitions.open_new_alerts`), their tickets in one, and writes their deliveries' outcome
in one. Every other item - a duplicate, a twin, a resolve of a known alert, an input with
several events, two items naming one alert or one delivery - runs as it would alone, after
them and in arrival order, in the same transaction. Items naming different alerts commute,
so the end state is the one the items would have produced one by one.

Answers still come only after the commit that holds the item. If the group's unit fails
(a bug, a constraint), each item runs again in a unit of its own, so only a failing one fails.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from daemon.core.events import Interpretation
from daemon.intake.apply_batch import new_alert_candidates, open_in_bulk
from daemon.intake.deliveries import DeliveryRows, StoredRow
from daemon.intake.inbound import ProcessResult
from daemon.store.database import Database
from daemon.store.sqlite_writer import settle
from daemon.tickets.transitions import Transitions

# Items per group at most: bounds one transaction's latency under a flood.
MAX_GROUP = 256
Stored = tuple[StoredRow, ProcessResult | None]  # what an item's unit returns


@dataclass(frozen=True)
class IngestItem:
    """One input to store and apply. `alone` is its unit as it would run by itself (the
    path of every item the group cannot take in bulk); `apply_stored` applies its meaning
    to its delivery once stored (PostgreSQL: the group inserted it)."""

    row: dict[str, Any]  # its `deliveries` row as it arrives
    channel: str
    source: str | None
    meaning: Interpretation | str
    rejected: bool
    now: datetime
    alone: Callable[[Connection], Stored]
    apply_stored: Callable[[Connection, int], ProcessResult]

    @property
    def delivery_key(self) -> tuple[str, str]:
        return self.row["channel"], self.row["dedupe_key"]


class IngestGroups:
    """Collects items while writes run; `submit` returns the item's outcome once committed."""

    def __init__(self, db: Database, rows: DeliveryRows, transitions: Transitions):
        self._db = db
        self._rows = rows
        self._transitions = transitions
        # One group per write lane (SQLite: one), so the next group gathers every request
        # that arrives while the running ones write, however long that takes.
        self._max_running = db.write_lanes
        self._waiting: list[tuple[IngestItem, asyncio.Future[Stored]]] = []
        self._running = 0

    async def submit(self, item: IngestItem) -> Stored:
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running < self._max_running:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                await self._write(group)
        finally:
            self._running -= 1

    async def _write(self, group: list[tuple[IngestItem, asyncio.Future[Stored]]]) -> None:
        items = [item for item, _ in group]
        try:
            outcomes = await self._db.write(lambda session: self._unit(session, items))
        except Exception:
            for item, future in group:  # each alone: only the failing one fails
                try:
                    settle(future, True, await self._db.write(_alone_unit(item)))
                except Exception as err:
                    settle(future, False, err)
            return
        for (_, future), outcome in zip(group, outcomes, strict=True):
            settle(future, True, outcome)

    def _unit(self, session: Session, items: list[IngestItem]) -> list[Stored]:
        conn = session.connection()
        outcomes: list[Stored | None] = [None] * len(items)
        stored_ids: dict[int, int] = {}  # item index -> delivery id the group inserted
        bulk = _bulk_candidates(items)
        if bulk:
            keys = [items[i].delivery_key for i in bulk]
            if self._db.serializes_writes:  # absent now stays absent until the commit
                found = self._rows.find_many(conn, keys)
                for i, key in zip(bulk, keys, strict=True):
                    if key in found:
                        outcomes[i] = (found[key], None)
                bulk = [i for i in bulk if outcomes[i] is None]
            else:  # the unique index decides between processes
                ids = self._rows.store_many(conn, [items[i].row for i in bulk])
                stored_ids = {i: new_id for i, new_id in zip(bulk, ids, strict=True)
                              if new_id is not None}
                bulk = [i for i in bulk if i in stored_ids]
            self._apply_bulk(conn, items, bulk, stored_ids, outcomes)
        for i, item in enumerate(items):  # the rest one by one, in arrival order
            if outcomes[i] is not None:
                continue
            if i in stored_ids:
                delivery_id = stored_ids[i]
                outcomes[i] = (StoredRow(delivery_id, False), item.apply_stored(conn,
                                                                                delivery_id))
            else:
                outcomes[i] = item.alone(conn)
        return [outcome for outcome in outcomes if outcome is not None]

    def _apply_bulk(self, conn: Connection, items: list[IngestItem], bulk: list[int],
                    stored_ids: dict[int, int], outcomes: list[Stored | None]) -> None:
        """Open the new alerts among `bulk`; fill in their outcomes (the others stay None)."""
        now = max((items[i].now for i in bulk), default=None)
        if now is None:
            return
        opened = open_in_bulk(conn, self._transitions, [
            (i, items[i].channel, items[i].meaning, items[i].source, 1) for i in bulk], now)
        ids: list[int]
        if self._db.serializes_writes:
            ids = self._rows.insert_new_many(conn, [{**items[i].row, **changes}
                                                    for i, (_, changes) in opened.items()])
        else:
            self._rows.finish_many(conn, [{"row_id": stored_ids[i], **changes}
                                          for i, (_, changes) in opened.items()])
            ids = [stored_ids[i] for i in opened]
        for (i, (result, _)), delivery_id in zip(opened.items(), ids, strict=True):
            outcomes[i] = (StoredRow(delivery_id, False), replace(result,
                                                                  delivery_id=delivery_id))


def _alone_unit(item: IngestItem) -> Callable[[Session], Stored]:
    return lambda session: item.alone(session.connection())


def _bulk_candidates(items: list[IngestItem]) -> list[int]:
    """Indexes of the items the group may apply in bulk: accepted, a raise of a new-looking
    alert no other item names (`new_alert_candidates`), and no other item of the group names
    the same delivery."""
    deliveries_named = Counter(item.delivery_key for item in items)
    return [i for i in new_alert_candidates([None if item.rejected else item.meaning
                                             for item in items])
            if deliveries_named[items[i].delivery_key] == 1]

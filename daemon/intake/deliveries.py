"""The `deliveries` rows in SQL: store (or find the identical one), claim, finish, retry, replay.

Every function runs inside the caller's write or read unit; the statements on the intake hot
path are built once and prepared (`daemon.store.prepared`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from daemon.core.events import DeliveryStatus, Interpretation, RawDelivery
from daemon.intake.inbound import ProcessResult
from daemon.store.database import insert_ignore
from daemon.store.models import Delivery
from daemon.store.prepared import NumberedInsert, Prepared, json_values
from daemon.tickets.transitions import EventResult

_DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]
_CLAIM = Prepared(
    select(_DELIVERIES.c.attempts, _DELIVERIES.c.source)
    .where(_DELIVERIES.c.id == bindparam("id"),
           _DELIVERIES.c.status == DeliveryStatus.RECEIVED.value)
    .with_for_update(skip_locked=True))
# SQLite (one writer: nothing to skip): the `received` ones among a chunk's deliveries.
_CLAIM_ALL = Prepared(
    select(_DELIVERIES.c.id, _DELIVERIES.c.attempts, _DELIVERIES.c.source)
    .where(_DELIVERIES.c.id.in_(json_values("ids")),
           _DELIVERIES.c.status == DeliveryStatus.RECEIVED.value))
# UPDATEs name the row by `row_id`; the other parameters given become the SET clause.
_FINISH = Prepared(update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("row_id")))
_NUMBERED = NumberedInsert(_DELIVERIES)
_FIND = Prepared(select(_DELIVERIES.c.id, _DELIVERIES.c.status, _DELIVERIES.c.error,
                        _DELIVERIES.c.meta)
                 .where(_DELIVERIES.c.channel == bindparam("channel"),
                        _DELIVERIES.c.dedupe_key == bindparam("dedupe_key")))
# SQLite: the stored ones among a group's keys of one channel, in one statement.
_FIND_MANY = Prepared(select(_DELIVERIES.c.dedupe_key, _DELIVERIES.c.id, _DELIVERIES.c.status,
                             _DELIVERIES.c.error, _DELIVERIES.c.meta)
                      .where(_DELIVERIES.c.channel == bindparam("channel"),
                             _DELIVERIES.c.dedupe_key.in_(json_values("dedupe_keys"))))


@dataclass(frozen=True)
class StoredRow:
    """A delivery as `store` left it: new, or the identical one stored before."""

    id: int
    duplicate: bool
    # For a duplicate: the stored row's state, so a retry is answered as the first was.
    status: DeliveryStatus = DeliveryStatus.RECEIVED
    error: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClaimedDelivery:
    attempts: int  # including this one (counted when it began: `begin_attempt`)
    source: str | None


@dataclass(frozen=True)
class BegunAttempt:
    """A delivery whose attempt is counted and committed: `raw` is to be processed now, or,
    when `gave_up` is set, the attempts ran out and it is `failed` with that reason."""

    raw: RawDelivery
    attempts: int
    gave_up: str | None = None


class DeliveryRows:
    """Statements on `deliveries` for one backend."""

    def __init__(self, dialect_name: str):
        # SQLite: one writer, so nothing else writes until a unit commits: what a unit finds
        # absent stays absent, and a set of rows is looked up (and inserted) in one statement.
        self._serializes_writes = dialect_name == "sqlite"
        self._insert = Prepared(insert_ignore(dialect_name, _DELIVERIES, "channel",
                                              "dedupe_key").returning(_DELIVERIES.c.id))
        self._insert_many = insert_ignore(dialect_name, _DELIVERIES, "channel", "dedupe_key"
                                          ).returning(_DELIVERIES.c.id, _DELIVERIES.c.channel,
                                                      _DELIVERIES.c.dedupe_key)

    def store(self, conn: Connection, row: dict[str, Any]) -> StoredRow:
        """Insert `row`; if its (channel, dedupe_key) is stored already, return that one."""
        new_id = self._insert.scalar(conn, row)
        if new_id is not None:
            return StoredRow(new_id, duplicate=False)
        existing = self.find(conn, row["channel"], row["dedupe_key"])
        assert existing is not None  # the conflicting row is committed and never deleted
        return existing

    def store_all(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[StoredRow]:
        """`store` for each of `rows`, in order (a later row with an earlier one's key is
        its duplicate). SQLite: the absent ones are found in one statement per channel and
        inserted together (`NumberedInsert`)."""
        if not self._serializes_writes:
            return [self.store(conn, row) for row in rows]
        firsts: dict[tuple[str, str], dict[str, Any]] = {}  # each key's first row
        for row in rows:
            firsts.setdefault((row["channel"], row["dedupe_key"]), row)
        found: dict[tuple[str, str], StoredRow | None] = dict.fromkeys(firsts)
        found.update(self.find_many(conn, firsts))
        absent = [key for key, stored in found.items() if stored is None]
        for key, new_id in zip(absent, self.insert_new_many(conn, [firsts[key] for key in absent]),
                               strict=True):
            found[key] = StoredRow(new_id, duplicate=False)
        answers = []
        for row in rows:
            key = (row["channel"], row["dedupe_key"])
            stored = found[key]
            assert stored is not None
            if row is not firsts[key] and not stored.duplicate:  # named twice in this batch
                first = firsts[key]
                stored = StoredRow(stored.id, True, DeliveryStatus(first["status"]),
                                   first["error"], first["meta"])
            answers.append(stored)
        return answers

    @staticmethod
    def find(conn: Connection, channel: str, dedupe_key: str) -> StoredRow | None:
        """The stored delivery with this (channel, dedupe_key), as a duplicate, or None."""
        existing = _FIND.first(conn, {"channel": channel, "dedupe_key": dedupe_key})
        if existing is None:
            return None
        return StoredRow(existing["id"], True, DeliveryStatus(existing["status"]),
                         existing["error"], existing["meta"])

    @staticmethod
    def find_many(conn: Connection, keys: Iterable[tuple[str, str]]
                  ) -> dict[tuple[str, str], StoredRow]:
        """SQLite: `find` for many (channel, dedupe_key) keys, one statement per channel; the
        stored ones, as duplicates, by key."""
        by_channel: dict[str, list[str]] = {}
        for channel, dedupe_key in keys:
            by_channel.setdefault(channel, []).append(dedupe_key)
        return {(channel, row["dedupe_key"]): StoredRow(
                    row["id"], True, DeliveryStatus(row["status"]), row["error"], row["meta"])
                for channel, dedupe_keys in by_channel.items()
                for row in _FIND_MANY.all(conn, {"channel": channel,
                                                 "dedupe_keys": dedupe_keys})}

    def store_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        """Insert `rows` in one statement; each new row's id, or None where its (channel,
        dedupe_key) is stored already."""
        if not rows:
            return []
        ids = {(row.channel, row.dedupe_key): row.id
               for row in conn.execute(self._insert_many, list(rows))}
        return [ids.get((row["channel"], row["dedupe_key"])) for row in rows]

    @staticmethod
    def insert_new_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert deliveries known to be new (found absent under SQLite's write lock, in
        this transaction); their ids, in order."""
        return _NUMBERED.run(conn, rows)

    @staticmethod
    def finish_many(conn: Connection, changes: Sequence[dict[str, Any]]) -> None:
        """`finish` for many deliveries (an executemany per set of changed columns)."""
        by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
        for change in changes:
            by_columns.setdefault(frozenset(change), []).append(change)
        for same in by_columns.values():
            _FINISH.run_many(conn, same)

    @staticmethod
    def claim(conn: Connection, delivery_id: int) -> ClaimedDelivery | None:
        """Lock a `received` delivery to apply it; None when it is done meanwhile or another
        process holds it (`SKIP LOCKED`). Its attempt was counted when it began."""
        row = _CLAIM.first(conn, {"id": delivery_id})
        return ClaimedDelivery(row["attempts"], row["source"]) if row is not None else None

    def claim_all(self, conn: Connection, delivery_ids: Sequence[int]
                  ) -> list[ClaimedDelivery | None]:
        """`claim` for each of `delivery_ids`, in order (SQLite: in one statement)."""
        if not self._serializes_writes:
            return [self.claim(conn, delivery_id) for delivery_id in delivery_ids]
        found = {row["id"]: ClaimedDelivery(row["attempts"], row["source"])
                 for row in _CLAIM_ALL.all(conn, {"ids": list(delivery_ids)})}
        return [found.get(delivery_id) for delivery_id in delivery_ids]

    @staticmethod
    def finish(conn: Connection, changes: dict[str, Any]) -> None:
        """Write a processed delivery's outcome; `changes["row_id"]` names it."""
        _FINISH.run(conn, changes)


def new_row(channel: str, dedupe_key: str, payload: bytes, content_type: str,
            source: str | None, meta: dict[str, Any], rejected_reason: str | None,
            now: datetime, attempt_until: datetime | None = None) -> dict[str, Any]:
    """The `deliveries` row of an input as it arrives: `received`, or `rejected` at the edge.

    `attempt_until`: the first attempt begins with the store (its count is committed with
    the row); if it does not finish, the delivery is due again at that time."""
    rejected = rejected_reason is not None
    return dict(
        channel=channel, source=source, dedupe_key=dedupe_key, received_at=now,
        status=(DeliveryStatus.REJECTED if rejected else DeliveryStatus.RECEIVED).value,
        attempts=0 if attempt_until is None or rejected else 1,
        next_attempt_at=None if rejected else (attempt_until or now), error=rejected_reason,
        content_type=content_type, meta=meta, payload=payload,
    )


def outcome_of(meaning: Interpretation | str, events: tuple[EventResult, ...],
               source: str | None, attempts: int, now: datetime
               ) -> tuple[ProcessResult, dict[str, Any]]:
    """A processed attempt's result (its delivery id still 0) and the delivery's columns as
    it leaves them (pure). `meaning`: the interpreter's answer (a string: why it has none);
    `events`: the lifecycle's results of applying its events."""
    changes: dict[str, Any] = {"attempts": attempts, "processed_at": now,
                               "next_attempt_at": None, "trace": None, "alert_id": None,
                               "outcome": None}
    if isinstance(meaning, str):
        outcome = ProcessResult(0, DeliveryStatus.FAILED, error=meaning)
    elif meaning.rejected_reason is not None:
        outcome = ProcessResult(0, DeliveryStatus.REJECTED, error=meaning.rejected_reason)
    elif not meaning.events:
        outcome = ProcessResult(0, DeliveryStatus.IGNORED, error=meaning.ignored_reason)
    else:
        outcome = ProcessResult(0, DeliveryStatus.PROCESSED, events)
        changes["alert_id"] = events[0].alert_id
        changes["outcome"] = ",".join(e.outcome for e in events)
        # Email knows its source only once the rules have named it.
        changes["source"] = source or events[0].source
    if not isinstance(meaning, str):
        changes["trace"] = meaning.trace
    changes["status"] = outcome.status.value
    changes["error"] = outcome.error
    return outcome, changes


def retry_delay(attempts: int, retry_base_s: float) -> timedelta:
    """Exponential backoff after `attempts` tries, with jitter: instances must not retry in
    step."""
    return timedelta(seconds=retry_base_s * 2 ** (attempts - 1) * random.uniform(0.8, 1.2))


def begin_attempt(session: Session, delivery_id: int, now: datetime, max_attempts: int,
                  retry_base_s: float) -> BegunAttempt | None:
    """Count an attempt of a due `received` delivery before anything else happens to it.

    The count is committed before the delivery is interpreted, so an input that kills the
    process (a crash, a hang the watchdog ends) still uses up its attempts and is `failed`
    after `max_attempts`, instead of taking the daemon down at every start. Until the attempt
    finishes, `next_attempt_at` is its retry time, which also keeps other workers off it.
    None: not `received`, not due, or held by another process.
    """
    delivery = session.get(Delivery, delivery_id, with_for_update={"skip_locked": True})
    if delivery is None or delivery.status != DeliveryStatus.RECEIVED.value or (
            delivery.next_attempt_at is not None and delivery.next_attempt_at > now):
        return None
    raw = RawDelivery(delivery.id, delivery.channel, delivery.source, delivery.content_type,
                      delivery.payload, delivery.meta, received_at=delivery.received_at)
    if delivery.attempts >= max_attempts:
        reason = (f"gave up after {delivery.attempts} attempt(s) that did not finish (alertd "
                  "stopped or crashed while processing it)")
        delivery.status = DeliveryStatus.FAILED.value
        delivery.next_attempt_at = None
        delivery.processed_at = now
        delivery.error = (f"{delivery.error}; {reason}" if delivery.error else reason)[:1000]
        return BegunAttempt(raw, delivery.attempts, gave_up=delivery.error)
    delivery.attempts += 1
    delivery.next_attempt_at = now + retry_delay(delivery.attempts, retry_base_s)
    return BegunAttempt(raw, delivery.attempts)


def due_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """`received` deliveries whose next attempt is due, oldest first."""
    return list(session.scalars(
        select(Delivery.id)
        .where(Delivery.status == DeliveryStatus.RECEIVED.value, Delivery.next_attempt_at <= now)
        .order_by(Delivery.id).limit(limit)))


def make_all_due(session: Session, now: datetime) -> int:
    """Startup recovery: every `received` delivery is due now, also those whose attempt was
    under way (or backing off) when the process stopped. A crash leaves its in-flight attempt
    scheduled `retry_delay` ahead; a restart must not wait for it. Safe with other instances
    running: applying claims the row (`SKIP LOCKED`, status checked), so an attempt another
    instance still has under way is never applied twice; at worst it counts one extra
    attempt. Returns how many were moved forward."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.RECEIVED.value, Delivery.next_attempt_at > now)
        .values(next_attempt_at=now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def statuses(session: Session, ids: Sequence[int]) -> dict[int, DeliveryStatus]:
    rows = session.execute(select(Delivery.id, Delivery.status).where(Delivery.id.in_(ids)))
    return {row.id: DeliveryStatus(row.status) for row in rows}


def record_error(session: Session, delivery_id: int, error: str, now: datetime,
                 max_attempts: int, retry_base_s: float
                 ) -> tuple[DeliveryStatus, str] | None:
    """Record why the attempt counted by `begin_attempt` failed: retry later with backoff, or
    `failed` after `max_attempts`. Returns (new status, channel), or None when the delivery
    is no longer `received`."""
    delivery = session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.status != DeliveryStatus.RECEIVED.value:
        return None
    delivery.error = error
    if delivery.attempts >= max_attempts:
        delivery.status = DeliveryStatus.FAILED.value
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = now + retry_delay(max(1, delivery.attempts), retry_base_s)
    return DeliveryStatus(delivery.status), delivery.channel


class ReplayRefused(Exception):
    """Replay of a delivery that is not in a replayable state."""


def reset_for_replay(session: Session, delivery_id: int, now: datetime) -> None:
    """Put a failed, ignored or rejected delivery back to `received`, due now."""
    delivery = session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise LookupError(f"delivery {delivery_id} not found")
    if delivery.status == DeliveryStatus.PROCESSED.value:
        raise ReplayRefused(
            f"delivery {delivery_id} was processed already; replaying it would count "
            "its alert event twice"
        )
    if delivery.status == DeliveryStatus.RECEIVED.value:
        raise ReplayRefused(f"delivery {delivery_id} is still waiting to be processed")
    delivery.status = DeliveryStatus.RECEIVED.value
    delivery.next_attempt_at = now
    delivery.attempts = 0  # a replay gets every attempt again


def describe_error(err: Exception) -> str:
    """An error as stored on the delivery and shown to admins: for a database error, the
    driver's first line, not SQLAlchemy's text with the whole statement and its values."""
    if isinstance(err, StatementError) and err.orig is not None:
        first_line = (str(err.orig).splitlines() or [""])[0]
        return f"{type(err.orig).__name__}: {first_line}"[:500]
    return f"{type(err).__name__}: {err}"[:500]

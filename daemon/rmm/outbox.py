"""The outbox worker: sends what alertd owes the RMMs (resolve an alert after an agent closed
its ticket) and the `[[notify]]` targets (a ticket's change), reliably and without duplicates.

A row is queued in the transaction that closes the ticket (daemon.tickets.transitions). The
worker claims due rows with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
instances never take the same row; the lease is how long the claim holds if this process dies
mid-call), counts the attempt before calling, calls the source's client, and records the
outcome:

- success, or "already gone" upstream (404) -> `done`; a done row is never sent again;
- a retryable failure (network, 5xx, 409, throttling) -> `pending` again after exponential
  backoff with jitter (Datto's block: after the block), until `max_attempts` -> `dead`;
- a failure retrying cannot fix (credentials refused, permission missing, another 4xx) ->
  `dead` at once, with the reason; `alertd outbox retry` puts it back once the cause is fixed.

Rows of a source without configured API credentials, or of a target no longer configured,
wait, untouched, as `pending`. The only window for a second send is a crash after the
receiver answered and before `done` was committed; both RMMs treat a repeated resolve as done,
and a notification carries its row id (`X-Alertd-Delivery`) for receivers to drop a repeat.

Storm control (notifications): more messages to one target than its `storm_limit_per_minute`
in the last minute, and every row due for it goes out as one digest; with none left this
minute, its rows wait (their attempt not counted, the target not even read) until one is,
and then go as one digest. The count is per alertd process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Table, and_, bindparam, false, or_, select, update
from sqlalchemy.orm import Session

from daemon.config.rmm_sections import OutboxConfig
from daemon.core.clock import Clock, utcnow
from daemon.core.delivery import DeliveryError
from daemon.metrics import Metrics, source_label
from daemon.rmm.errors import Blocked
from daemon.store.database import Database
from daemon.store.models import OutboxAction
from daemon.tickets.notices import NOTIFY
from daemon.tickets.transitions import RESOLVE_ALERT

log = logging.getLogger(__name__)

PENDING, DONE, DEAD, DROPPED = "pending", "done", "dead", "dropped"


STORM_WINDOW = timedelta(minutes=1)
# One digest carries at most this many notifications: its body (each with its full document)
# stays a few hundred KB, under the usual 1 MB limit of receivers and proxies.
MAX_DIGEST_ROWS = 200
MIN_RUN_GAP_S = 1.0


class Resolver(Protocol):
    async def resolve_alert(self, uid: str) -> bool: ...


class Notifier(Protocol):
    """A `[[notify]]` target (`daemon.notify.notifier`)."""

    @property
    def per_minute(self) -> int: ...

    async def send(self, rows: Sequence[ClaimedAction]) -> None:
        """One row: its message; more: one digest. Raises DeliveryError."""


@dataclass(frozen=True)
class OutboxPolicy:
    max_attempts: int = 10
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    lease_s: float = 300.0
    batch: int = 50
    concurrency: int = 4

    @classmethod
    def of(cls, section: OutboxConfig) -> OutboxPolicy:
        """The policy `[outbox]` configures."""
        return cls(max_attempts=section.max_attempts, retry_base_s=section.retry_base_s,
                   retry_max_s=section.retry_max_s, lease_s=section.lease_s,
                   concurrency=section.concurrency)


@dataclass(frozen=True)
class ClaimedAction:
    id: int
    action: str
    source: str  # an RMM for a resolve; the target's name for a notification
    target: str  # the alert's uid for a resolve; the event for a notification
    attempts: int  # including this one
    ticket_id: int | None = None
    payload: Mapping[str, Any] | None = None
    created_at: datetime | None = None


class OutboxRefused(Exception):
    """retry/drop of a row that is not in a state for it."""


_OUTBOX: Table = OutboxAction.__table__  # type: ignore[assignment]
_SET_OUTCOME = (update(_OUTBOX)
                .where(_OUTBOX.c.id == bindparam("row_id"), _OUTBOX.c.status == PENDING))
_DEFER = (update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"), _OUTBOX.c.status == PENDING)
          .values(next_attempt_at=bindparam("next_attempt_at"),
                  attempts=bindparam("attempts")))


class OutboxWorker:
    def __init__(self, db: Database, resolvers: Mapping[str, Resolver], metrics: Metrics,
                 policy: OutboxPolicy = OutboxPolicy(), clock: Clock = utcnow,
                 notifiers: Mapping[str, Notifier] | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self._db = db
        self._resolvers = dict(resolvers)
        self._notifiers = dict(notifiers or {})
        # Storm control, per target, on the monotonic clock (a stepped wall clock must not
        # pause a target): when its last messages went, until when it may send none, and
        # when its last digest went (a storm lasts while digests keep coming).
        self._monotonic = monotonic
        self._sent: defaultdict[str, deque[float]] = defaultdict(deque)
        self._paused: dict[str, float] = {}
        self._last_digest: dict[str, float] = {}
        self._metrics = metrics
        self._policy = policy
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- running -------------------------------------------------------------------------

    def kick(self) -> None:
        """Look for due rows now (a ticket was closed; the periodic job calls it too)."""
        self._wake.set()

    def start(self) -> None:
        if self._resolvers or self._notifiers:
            self._task = asyncio.create_task(self._loop(), name="outbox-worker")
            self.kick()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while await self.run_due():
                    pass  # a full batch: there may be more due right away
            except Exception:  # the database is down: the next kick tries again
                log.exception("outbox: could not process due rows")
            # Intake wakes it for every event when notifications are configured: one look a
            # second at most keeps its claims off the intake's writes.
            await asyncio.sleep(MIN_RUN_GAP_S)

    async def run_due(self) -> int:
        """Claim and send one batch of due rows; return how many were claimed."""
        claimed = await self._db.write(self._claim)
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self._policy.concurrency)

        async def send(rows: list[ClaimedAction]) -> None:
            async with gate:
                if rows[0].action == NOTIFY:
                    await self._notify(rows)
                else:
                    await self._send(rows[0])

        notices: defaultdict[str, list[ClaimedAction]] = defaultdict(list)
        messages: list[list[ClaimedAction]] = []
        for row in claimed:
            if row.action == NOTIFY:
                notices[row.source].append(row)
            else:
                messages.append([row])
        for name, rows in notices.items():
            messages.extend(await self._storm_plan(name, rows))
        await asyncio.gather(*(send(rows) for rows in messages))
        return len(claimed)

    # --- steps ---------------------------------------------------------------------------

    def _claim(self, session: Session, target: str | None = None,
               limit: int | None = None) -> list[ClaimedAction]:
        """Claim due rows: any (`batch` at most), or only target `target`'s notifications."""
        now = self._clock()
        if target is not None:
            which = and_(_OUTBOX.c.action == NOTIFY, _OUTBOX.c.source == target)
        else:
            # A target whose minute is spent is not even read: its rows wait untouched.
            now_s = self._monotonic()
            awake = sorted(name for name in self._notifiers
                           if self._paused.get(name, now_s) <= now_s)
            which = or_(and_(_OUTBOX.c.action == RESOLVE_ALERT,
                             _OUTBOX.c.source.in_(sorted(self._resolvers)))
                        if self._resolvers else false(),
                        and_(_OUTBOX.c.action == NOTIFY, _OUTBOX.c.source.in_(awake))
                        if awake else false())
        query = (select(_OUTBOX.c.id, _OUTBOX.c.action, _OUTBOX.c.source, _OUTBOX.c.target,
                        _OUTBOX.c.attempts, _OUTBOX.c.ticket_id, _OUTBOX.c.payload,
                        _OUTBOX.c.created_at)
                 .where(_OUTBOX.c.status == PENDING, _OUTBOX.c.next_attempt_at <= now, which)
                 .order_by(_OUTBOX.c.next_attempt_at, _OUTBOX.c.id)
                 .limit(limit or self._policy.batch)
                 .with_for_update(skip_locked=True))
        rows = session.execute(query).all()
        if not rows:
            return []
        lease_until = now + timedelta(seconds=self._policy.lease_s)
        session.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_([r.id for r in rows]))
                        .values(attempts=_OUTBOX.c.attempts + 1, next_attempt_at=lease_until))
        return [ClaimedAction(r.id, r.action, r.source, r.target, r.attempts + 1, r.ticket_id,
                              r.payload, r.created_at) for r in rows]

    async def _send(self, row: ClaimedAction) -> None:
        resolver = self._resolvers[row.source]
        try:
            if row.action != RESOLVE_ALERT:
                raise ValueError(f"unknown outbox action {row.action!r}")
            resolved_now = await resolver.resolve_alert(row.target)
        except DeliveryError as err:
            await self._failed(row, err, permanent=not err.retryable)
        except Exception as err:  # a bug: keep the row, retry with backoff, say why
            log.exception("outbox %s: unexpected error", row.id)
            await self._failed(row, err, permanent=False)
        else:
            note = None if resolved_now else "already resolved or gone upstream (404)"
            await self._db.write(lambda s: s.execute(_SET_OUTCOME, {
                "row_id": row.id, "status": DONE, "done_at": self._clock(),
                "last_error": note}))
            self._metrics.outbox_sent.labels(source_label(row.source), "done").inc()
            log.info("outbox %s: %s %s/%s done%s", row.id, row.action, row.source, row.target,
                     f" ({note})" if note else "", extra={"source": row.source})

    async def _storm_plan(self, name: str, rows: list[ClaimedAction]
                          ) -> list[list[ClaimedAction]]:
        """The messages `rows` (due for target `name`) go as: each alone while the target's
        limit allows and no storm is on; else one digest of every row due for it (up to
        `MAX_DIGEST_ROWS`), after which the target is not read for a minute; a storm lasts
        while each minute brings rows for another digest."""
        now_s = self._monotonic()
        window_s = STORM_WINDOW.total_seconds()
        sent = self._sent[name]
        while sent and sent[0] <= now_s - window_s:
            sent.popleft()
        left = self._notifiers[name].per_minute - len(sent)
        storming = now_s - self._last_digest.get(name, -math.inf) < 2 * window_s
        if not storming and len(rows) <= left:
            sent.extend([now_s] * len(rows))
            if len(rows) == left:  # the minute's messages spent: not read until one frees
                self._paused[name] = sent[0] + window_s
            return [[row] for row in rows]
        if left >= 1:
            sent.append(now_s)
            self._last_digest[name] = now_s
            if len(rows) < MAX_DIGEST_ROWS:  # the rest of the target's due rows, too
                rows = rows + await self._db.write(partial(
                    self._claim, target=name, limit=MAX_DIGEST_ROWS - len(rows)))
            if len(rows) < MAX_DIGEST_ROWS:
                self._paused[name] = now_s + window_s  # a full digest: more may be due now
            return [rows]
        # Rows claimed before the target paused (rare: they were in flight): back to wait.
        self._paused[name] = sent[0] + window_s
        until = self._clock() + timedelta(seconds=sent[0] + window_s - now_s)
        await self._db.write(lambda s: s.execute(_DEFER, [
            {"row_id": row.id, "next_attempt_at": until, "attempts": row.attempts - 1}
            for row in rows]))
        self._metrics.notifications.labels(name, "deferred").inc(len(rows))
        log.info("notify %s: over %d messages a minute; waiting for a digest at %s",
                 name, self._notifiers[name].per_minute, f"{until:%H:%M:%S}")
        return []

    async def _notify(self, rows: list[ClaimedAction]) -> None:
        """Send one message (or one digest) to a target; every row shares the outcome."""
        name = rows[0].source
        try:
            await self._notifiers[name].send(rows)
        except DeliveryError as err:
            await self._failed_all(rows, err, permanent=not err.retryable)
            return
        except Exception as err:  # a bug: keep the rows, retry with backoff, say why
            log.exception("notify %s: unexpected error", name)
            await self._failed_all(rows, err, permanent=False)
            return
        note = f"sent in a digest of {len(rows)}" if len(rows) > 1 else None
        now = self._clock()
        await self._db.write(lambda s: s.execute(_SET_OUTCOME, [
            {"row_id": row.id, "status": DONE, "done_at": now, "last_error": note}
            for row in rows]))
        self._metrics.notifications.labels(name, "digested" if note else "done").inc(len(rows))
        log.info("notify %s: %s sent (outbox %s)", name,
                 rows[0].target if len(rows) == 1 else f"digest of {len(rows)}",
                 rows[0].id if len(rows) == 1 else f"{min(r.id for r in rows)}-"
                 f"{max(r.id for r in rows)}")

    async def _failed_all(self, rows: list[ClaimedAction], err: Exception, permanent: bool
                          ) -> None:
        """A failed message: its row, or every row of its digest, in one write."""
        if len(rows) == 1:
            await self._failed(rows[0], err, permanent)
            return
        # A digest stays one (one retry time), backed off as its freshest row.
        retry_at = self._retry_at(min(row.attempts for row in rows), err, self._clock())
        reason = str(err)[:1000] or type(err).__name__
        dead = [row for row in rows if permanent or row.attempts >= self._policy.max_attempts]
        dead_ids = {row.id for row in dead}
        # One executemany: every row names the same columns.
        await self._db.write(lambda s: s.execute(_SET_OUTCOME, [
            {"row_id": row.id, "last_error": reason,
             "status": DEAD if row.id in dead_ids else PENDING,
             "next_attempt_at": None if row.id in dead_ids else retry_at}
            for row in rows]))
        name = rows[0].source
        if dead:
            self._metrics.notifications.labels(name, "dead").inc(len(dead))
        if len(rows) > len(dead):
            self._metrics.notifications.labels(name, "retry").inc(len(rows) - len(dead))
        log.log(logging.ERROR if dead else logging.WARNING,
                "notify %s: digest of %d (outbox %s-%s) failed: %d dead, %d to retry: %s",
                name, len(rows), min(r.id for r in rows), max(r.id for r in rows), len(dead),
                len(rows) - len(dead), reason)

    async def _failed(self, row: ClaimedAction, err: Exception, permanent: bool) -> None:
        now = self._clock()
        reason = str(err)[:1000] or type(err).__name__
        values: dict[str, Any] = {"row_id": row.id, "last_error": reason}
        if permanent or row.attempts >= self._policy.max_attempts:
            values["status"] = DEAD
            outcome = "dead"
        else:
            values["next_attempt_at"] = self._retry_at(row.attempts, err, now)
            outcome = "retry"
        await self._db.write(lambda s: s.execute(_SET_OUTCOME, values))
        if row.action == NOTIFY:
            self._metrics.notifications.labels(row.source, outcome).inc()
        else:
            self._metrics.outbox_sent.labels(source_label(row.source), outcome).inc()
        level = logging.ERROR if outcome == "dead" else logging.WARNING
        log.log(level, "outbox %s: %s %s/%s attempt %d failed (%s): %s", row.id, row.action,
                row.source, row.target, row.attempts, outcome, reason)

    def _retry_at(self, attempts: int, err: Exception, now: datetime) -> datetime:
        delay_s = min(self._policy.retry_max_s, self._policy.retry_base_s * 2 ** (attempts - 1))
        delay_s *= random.uniform(0.8, 1.2)  # instances must not retry in step
        if isinstance(err, Blocked):
            # The client's block deadline is on the monotonic clock.
            delay_s = max(delay_s, err.until_s - time.monotonic())
        return now + timedelta(seconds=delay_s)

    # --- admin actions (CLI and API) -------------------------------------------------------

    async def retry(self, row_id: int) -> None:
        """Put a dead (or waiting) row back to be sent now, with a fresh attempt count."""
        await self._change(row_id, (DEAD, PENDING), PENDING)

    async def drop(self, row_id: int) -> None:
        """Give up on a row: it is kept as `dropped` and never sent."""
        await self._change(row_id, (DEAD, PENDING), DROPPED)

    async def _change(self, row_id: int, allowed: Sequence[str], status: str) -> None:
        await change_outbox_row(self._db, row_id, allowed, status, self._clock())
        if status == PENDING:
            self.kick()


async def change_outbox_row(db: Database, row_id: int, allowed: Sequence[str], status: str,
                            now: datetime) -> None:
    """retry/drop without a running worker (the CLI). Raises LookupError or OutboxRefused."""
    def change(session: Session) -> None:
        row = session.get(OutboxAction, row_id, with_for_update=True)
        if row is None:
            raise LookupError(f"outbox row {row_id} not found")
        if row.status not in allowed:
            raise OutboxRefused(f"outbox row {row_id} is {row.status}; only "
                                f"{' or '.join(allowed)} rows can be changed so")
        row.status = status
        if status == PENDING:
            row.attempts = 0
            row.next_attempt_at = now
    await db.write(change)

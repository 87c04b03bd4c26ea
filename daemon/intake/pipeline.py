"""Deliveries into the alert lifecycle: the one way in for every channel, and its state machine.

A channel hands its input in with one of two verbs:

- `submit` (SMTP): commit the raw input as a `received` delivery and return; the caller
  answers the sender, and the delivery worker processes it later.
- `ingest` (HTTP routes, IMAP, polling): commit the input and apply it in one transaction; if
  applying fails unexpectedly, the input is still committed, alone, and retried like any other.

Processing a delivery is one transaction: claim it, apply what its channel's interpreter says
it means to the lifecycle (`daemon.tickets.transitions`), mark it. A crash anywhere leaves
either nothing changed (the delivery is processed again later) or everything committed once.

Delivery states: received -> processed | ignored | failed (after `max_attempts`, or at once when
it cannot be understood); rejected at the edge. `replay` re-queues failed, ignored, rejected ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.core.conditions import DEFAULT_POLICY, ConditionPolicy
from daemon.core.events import Channel, DeliveryStatus, Interpretation, RawDelivery, Unprocessable
from daemon.core.lifecycle import AutoClose
from daemon.intake import apply_batch, deliveries
from daemon.intake.accounting import IntakeAccounting
from daemon.intake.deliveries import DeliveryRows, StoredRow
from daemon.intake.inbound import (
    Accepted,
    Inbound,
    Ingested,
    Interpreter,
    ProcessResult,
    interpret_batch,
)
from daemon.intake.ingest_group import IngestGroups, IngestItem
from daemon.metrics import Metrics
from daemon.store.database import Database
from daemon.tickets.maintenance import MaintenanceSchedule
from daemon.tickets.notices import NO_NOTICES, Notices
from daemon.tickets.placement import TicketPlacer
from daemon.tickets.transitions import Transitions

log = logging.getLogger(__name__)
Meaning = Interpretation | str | Exception  # an interpreter's answer, or its failure

# Email parsing and rules are CPU work (a large HTML mail takes a second or more): interpreted
# off the event loop, so listeners, health checks and watchdog pings stay live. JSON is cheap.
_OFF_LOOP_CHANNELS = frozenset({Channel.SMTP.value, Channel.IMAP.value})
# Channels whose sender waits for the answer: input their interpreter refuses is `rejected`
# at once (the sender is told why); mail found unreadable is `failed` like any failure.
_EDGE_CHANNELS = frozenset({Channel.API.value, Channel.WEBHOOK.value, Channel.POLL.value})


class Pipeline:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        interpreters: Mapping[str, Interpreter],
        *,
        max_attempts: int = 5,
        retry_base_s: float = 30.0,
        clock: Clock = utcnow,
        placer: TicketPlacer | None = None,
        auto_close: AutoClose = AutoClose.UNTOUCHED,
        conditions: ConditionPolicy = DEFAULT_POLICY,
        close_after_clear_s: int = 0,
        maintenance: MaintenanceSchedule | None = None,
        on_submitted: Callable[[int], None] | None = None,
        notices: Notices = NO_NOTICES,
        on_notices: Callable[[], None] | None = None,
    ):
        self._db = db
        self._interpreters = dict(interpreters)
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._clock = clock
        self._on_submitted = on_submitted  # queues a submitted delivery for the worker
        self._report = IntakeAccounting(metrics, on_notices if notices.any else None, clock)
        self._rows = DeliveryRows(db.dialect_name)
        self._transitions = Transitions(db.dialect_name, placer, auto_close, conditions,
                                        close_after_clear_s, maintenance, notices)
        self._groups = IngestGroups(db, self._rows, self._transitions)

    @property
    def transitions(self) -> Transitions:
        """The lifecycle it applies events with (the maintenance release gives tickets with
        it too: the same conditions and windows)."""
        return self._transitions

    # --- the two ways in ------------------------------------------------------------------

    async def submit(self, inbound: Inbound) -> Accepted:
        """Commit `inbound` as a `received` delivery and queue it for the worker; an identical
        earlier one (same channel and dedupe key) is returned instead, and not queued."""
        accepted = await self._store_alone(inbound)
        if not accepted.duplicate and self._on_submitted is not None:
            self._on_submitted(accepted.delivery_id)
        return accepted

    async def ingest(self, *inbounds: Inbound) -> list[Ingested]:
        """Store and apply each input, in the order given (an IMAP batch in UID order; on
        SQLite the writes share group commits).

        JSON (HTTP, polling) is interpreted first, cheaply, and stored and applied in one
        transaction. Mail is committed first, with its attempt counted, and then interpreted
        and applied: parsing untrusted mail is where a crash or a hang could happen, and a
        message that kills the process must use up its attempts, not stop the daemon at every
        start (see `deliveries.begin_attempt`).

        Input the channel's interpreter refuses is `rejected` (HTTP, polling: the sender is
        answered) or `failed` (mail); a duplicate is found, not applied again. Raises only when
        the input could not be stored at all (the database is down): the caller answers so
        the sender retries.
        """
        if any(inbound.channel.value in _OFF_LOOP_CHANNELS for inbound in inbounds):
            return await self._ingest_committed_first(inbounds)
        meanings = [self._interpret_inbound(inbound) for inbound in inbounds]  # JSON: inline
        now = self._clock()
        pairs = list(zip(inbounds, meanings, strict=True))
        if len(pairs) == 1:  # an HTTP request: grouped with those that arrive meanwhile
            return [await self._ingest_one(*pairs[0], now, grouped=True)]
        if self._db.applies_writes_in_order:  # one writer, first in first out
            return list(await asyncio.gather(*(self._ingest_one(inbound, meaning, now)
                                               for inbound, meaning in pairs)))
        return [await self._ingest_one(inbound, meaning, now) for inbound, meaning in pairs]

    # --- the worker's steps ---------------------------------------------------------------

    async def due_ids(self, limit: int = 500) -> list[int]:
        """Ids of `received` deliveries whose next attempt is due (startup recovery, sweeps)."""
        now = self._clock()
        return await self._db.read(lambda session: deliveries.due_ids(session, now, limit))

    async def make_all_due(self) -> int:
        """Startup recovery: every `received` delivery is due now (see `deliveries`)."""
        now = self._clock()
        return await self._db.write(lambda session: deliveries.make_all_due(session, now))

    async def process(self, delivery_id: int, timed: bool = True) -> ProcessResult | None:
        """Process one delivery if it is `received`, due, and not claimed by another process.

        Its attempt is counted and committed first. Returns None when there was nothing to
        do. `timed`: its time since it arrived goes to `alertd_processing_seconds` (not for a
        replay). Never raises for bad input: an unprocessable delivery is marked failed; an
        unexpected error is recorded on the delivery and retried later with backoff until
        `max_attempts`.
        """
        now = self._clock()
        try:
            begun = await self._db.write(lambda session: deliveries.begin_attempt(
                session, delivery_id, now, self._max_attempts, self._retry_base_s))
        except Exception:  # the database: the delivery stays due; the next sweep takes it
            log.exception("delivery %s: could not begin an attempt", delivery_id,
                          extra={"delivery_id": delivery_id})
            return None
        if begun is None:
            return None
        if not timed:  # a replay: its wait since it first arrived was a person's choice
            begun = replace(begun, raw=replace(begun.raw, received_at=None))
        if begun.gave_up is not None:
            gave_up = ProcessResult(delivery_id, DeliveryStatus.FAILED, error=begun.gave_up)
            self._report.finished(begun.raw.channel, gave_up, begun.raw.received_at)
            return gave_up
        return await self._apply_one(begun.raw, await self._meaning(begun.raw), self._clock())

    def _interpret_guarded(self, raw: RawDelivery) -> Meaning:
        """`_interpret`, with an interpreter's bug returned rather than raised: one message
        must not fail the others of its batch (its attempt is retried with backoff)."""
        try:
            return self._interpret(raw)
        except Exception as err:
            log.exception("delivery %s: the %s interpreter failed", raw.id, raw.channel)
            return err

    async def replay(self, delivery_id: int) -> ProcessResult | None:
        """Put a failed, ignored or rejected delivery back to `received` and process it now.
        Raises `LookupError`, or `ReplayRefused` for a received or processed one."""
        now = self._clock()
        await self._db.write(lambda session: deliveries.reset_for_replay(
            session, delivery_id, now))
        log.info("delivery %s replay requested", delivery_id, extra={"delivery_id": delivery_id})
        return await self.process(delivery_id, timed=False)

    # --- steps ------------------------------------------------------------------------------

    async def _store_alone(self, inbound: Inbound) -> Accepted:
        row = self._new_row(inbound, self._clock())
        stored = await self._db.write(lambda session: self._rows.store(session.connection(), row))
        self._report.stored(inbound.channel.value, stored.id, inbound.dedupe_key,
                            inbound.source, stored.duplicate, inbound.rejected_reason is not None)
        return Accepted(stored.id, stored.duplicate)

    async def _ingest_one(self, inbound: Inbound, meaning: Interpretation | str,
                          now: datetime, grouped: bool = False) -> Ingested:
        """Store and apply one JSON input in a unit of its own, or, `grouped`, with the other
        requests that arrive while a write runs (`daemon.intake.ingest_group`)."""
        channel = inbound.channel.value
        rejected_reason = inbound.rejected_reason
        if rejected_reason is None and isinstance(meaning, str) and channel in _EDGE_CHANNELS:
            rejected_reason = meaning
        row = self._new_row(inbound, now, rejected_reason)

        def store_and_apply(conn: Connection) -> tuple[StoredRow, ProcessResult | None]:
            if self._db.serializes_writes and rejected_reason is None:
                # No other writer until this commits: check for the duplicate, apply, then
                # insert the delivery once, as it ends (no second write of its row).
                found = self._rows.find(conn, row["channel"], row["dedupe_key"])
                if found is not None:
                    return found, None
                result, changes = self._apply_meaning(conn, channel, inbound.source, 1,
                                                      meaning, now)
                stored = self._rows.store(conn, {**row, **changes})
                return stored, replace(result, delivery_id=stored.id)
            stored = self._rows.store(conn, row)
            if stored.duplicate or rejected_reason is not None:
                return stored, None
            return stored, apply_stored(conn, stored.id)

        def apply_stored(conn: Connection, delivery_id: int) -> ProcessResult:
            return self._finish(conn, delivery_id, channel, inbound.source, 1, meaning, now)

        try:
            if grouped:
                stored, result = await self._groups.submit(IngestItem(
                    row, channel, inbound.source, meaning, rejected_reason is not None, now,
                    store_and_apply, apply_stored))
            else:
                stored, result = await self._db.write(
                    lambda session: store_and_apply(session.connection()))
        except Exception:
            log.exception("delivery could not be applied on intake; storing it for a retry")
            accepted = await self._store_alone(inbound)
            retried = await self.process(accepted.delivery_id)
            if retried is None:  # another worker or process got to it first
                return Ingested(accepted.delivery_id, accepted.duplicate, None)
            return Ingested(accepted.delivery_id, accepted.duplicate, retried.status,
                            retried.events, retried.error)
        # One log line per input on this hot path: the result's line names the delivery.
        self._report.stored(channel, stored.id, inbound.dedupe_key, inbound.source,
                            stored.duplicate, rejected_reason is not None,
                            quiet=result is not None)
        if result is not None:
            self._report.finished(channel, result, now)
            return Ingested(stored.id, False, result.status, result.events, result.error)
        if stored.duplicate:
            return Ingested(stored.id, True, stored.status, error=stored.error,
                            stored_meta=stored.meta)
        return Ingested(stored.id, False, DeliveryStatus.REJECTED, error=rejected_reason)

    async def _ingest_committed_first(self, inbounds: Sequence[Inbound]) -> list[Ingested]:
        """Mail: commit every input with its first attempt counted, then interpret and apply
        them in chunks, in order (`apply_batch`)."""
        now = self._clock()
        until = now + deliveries.retry_delay(1, self._retry_base_s)
        rows = [self._new_row(inbound, now, attempt_until=until) for inbound in inbounds]
        stored = await self._db.write(  # one transaction: the batch is in, or none
            lambda session: self._rows.store_all(session.connection(), rows))
        fresh: list[RawDelivery] = []
        for inbound, row in zip(inbounds, stored, strict=True):
            self._report.stored(inbound.channel.value, row.id, inbound.dedupe_key,
                                inbound.source, row.duplicate, False, quiet=True)
            if not row.duplicate:
                fresh.append(RawDelivery(row.id, inbound.channel.value, inbound.source,
                                         inbound.content_type, inbound.payload,
                                         dict(inbound.meta), received_at=now))
        interpreter = self._interpreters.get(fresh[0].channel) if fresh else None
        results = dict(zip((raw.id for raw in fresh), await apply_batch.interpret_and_apply(
            fresh, lambda chunk: asyncio.to_thread(interpret_batch, interpreter, chunk,
                                                   self._interpret_guarded),
            lambda chunk: self._apply_chunk(chunk, self._clock())), strict=True))
        answers = []
        for row in stored:
            result = results.get(row.id)
            if row.duplicate:  # stored before (a crash?) or earlier in this batch: as it is
                latest = result or row
                answers.append(Ingested(row.id, True, latest.status, error=latest.error,
                                        stored_meta=row.meta))
                continue
            answers.append(Ingested(row.id, False, result.status, result.events, result.error)
                           if result is not None else Ingested(row.id, False, None))
        return answers

    async def _apply_one(self, raw: RawDelivery, meaning: Meaning, now: datetime
                         ) -> ProcessResult | None:
        """Apply a delivery whose attempt is counted in a transaction of its own; an
        unexpected error is recorded on it (retried with backoff)."""
        if isinstance(meaning, Exception):  # the interpreter failed: retry it later
            return await self._record_error_safely(raw.id, meaning)

        def apply(session: Session) -> ProcessResult | None:
            conn = session.connection()
            claimed = self._rows.claim(conn, raw.id)
            if claimed is None:  # done meanwhile, or claimed by another process
                return None
            return self._finish(conn, raw.id, raw.channel, claimed.source, claimed.attempts,
                                meaning, now)
        try:
            result = await self._db.write(apply)
        except Exception as err:  # a bug or the database: keep it, retry later
            log.exception("delivery %s processing error", raw.id,
                          extra={"delivery_id": raw.id, "channel": raw.channel})
            return await self._record_error_safely(raw.id, err)
        if result is not None:
            self._report.finished(raw.channel, result, raw.received_at)
        return result

    async def _apply_chunk(self, chunk: Sequence[tuple[RawDelivery, Meaning]], now: datetime
                           ) -> list[ProcessResult | None]:
        """Apply a chunk of deliveries whose attempts are counted in one unit
        (`apply_batch.apply_chunk`); if that unit fails, each alone."""
        results: dict[int, ProcessResult | None] = {}
        pairs: list[tuple[RawDelivery, Interpretation | str]] = []
        for raw, meaning in chunk:
            if isinstance(meaning, Exception):  # the interpreter failed: retry it later
                results[raw.id] = await self._record_error_safely(raw.id, meaning)
            else:
                pairs.append((raw, meaning))
        try:
            applied = await self._db.write(lambda session: apply_batch.apply_chunk(
                session.connection(), self._rows, self._transitions, self._finish, pairs, now))
        except Exception:
            log.exception("a chunk of %d deliveries failed; applying each alone", len(pairs))
            applied = [await self._apply_one(raw, meaning, now) for raw, meaning in pairs]
        else:
            for (raw, _), result in zip(pairs, applied, strict=True):
                if result is not None:
                    self._report.finished(raw.channel, result, raw.received_at)
        results.update(zip((raw.id for raw, _ in pairs), applied, strict=True))
        return [results[raw.id] for raw, _ in chunk]

    def _finish(self, conn: Connection, delivery_id: int, channel: str, source: str | None,
                attempts: int, meaning: Interpretation | str, now: datetime) -> ProcessResult:
        """Apply `meaning` to the lifecycle and mark the stored delivery done (inside the
        write unit)."""
        result, changes = self._apply_meaning(conn, channel, source, attempts, meaning, now)
        self._rows.finish(conn, {"row_id": delivery_id, **changes})
        return replace(result, delivery_id=delivery_id)

    def _apply_meaning(self, conn: Connection, channel: str, source: str | None,
                       attempts: int, meaning: Interpretation | str, now: datetime
                       ) -> tuple[ProcessResult, dict[str, Any]]:
        """Apply `meaning` to the lifecycle (inside the write unit); returns the result (its
        delivery id still 0) and the delivery's columns as the attempt leaves them."""
        events = (tuple(self._transitions.apply_event(conn, channel, event, now)
                        for event in meaning.events)
                  if isinstance(meaning, Interpretation) else ())
        return deliveries.outcome_of(meaning, events, source, attempts, now)

    async def _record_error_safely(self, delivery_id: int, err: Exception
                                   ) -> ProcessResult | None:
        try:
            return await self._record_error(delivery_id, deliveries.describe_error(err))
        except Exception:
            # The database itself is failing: the delivery stays `received` and is due again
            # when its attempt's time is up.
            log.exception("delivery %s: could not record the error", delivery_id)
            return None

    async def _record_error(self, delivery_id: int, error: str) -> ProcessResult | None:
        now = self._clock()
        recorded = await self._db.write(lambda session: deliveries.record_error(
            session, delivery_id, error, now, self._max_attempts, self._retry_base_s))
        if recorded is None:
            return None
        status, channel = recorded
        result = ProcessResult(delivery_id, status, error=error)
        self._report.errored(channel, result)
        return result

    # --- meaning --------------------------------------------------------------------------

    def _interpret_inbound(self, inbound: Inbound) -> Interpretation | str:
        if inbound.rejected_reason is not None:
            return inbound.rejected_reason
        return self._interpret(RawDelivery(0, inbound.channel.value, inbound.source,
                                           inbound.content_type, inbound.payload,
                                           dict(inbound.meta), inbound.document))

    async def _meaning(self, raw: RawDelivery) -> Meaning:
        if raw.channel in _OFF_LOOP_CHANNELS:
            return await asyncio.to_thread(self._interpret_guarded, raw)
        return self._interpret_guarded(raw)

    def _interpret(self, raw: RawDelivery) -> Interpretation | str:
        """The delivery's meaning, or the reason it has none (pure)."""
        interpreter = self._interpreters.get(raw.channel)
        if interpreter is None:
            return f"no interpreter for channel {raw.channel!r}"
        try:
            return interpreter(raw)
        except Unprocessable as err:
            return str(err)

    @staticmethod
    def _new_row(inbound: Inbound, now: datetime, rejected_reason: str | None = None,
                 attempt_until: datetime | None = None) -> dict[str, Any]:
        return deliveries.new_row(inbound.channel.value, inbound.dedupe_key, inbound.payload,
                                  inbound.content_type, inbound.source, dict(inbound.meta),
                                  rejected_reason or inbound.rejected_reason, now,
                                  attempt_until)


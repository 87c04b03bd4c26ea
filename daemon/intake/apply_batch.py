"""Stored deliveries applied in chunks: an IMAP backlog's batch in a few units of set-based
statements instead of a unit of a few statements per message.

A mail batch is committed first, with each message's attempt counted, then interpreted; this
applies the meanings. A chunk is one unit: it claims its deliveries, opens the new alerts of
those that raise exactly one alert no other delivery of the chunk names
(`Transitions.open_new_alerts`: one statement per table for all of them) and writes their
outcome in one `executemany`; every other delivery of the chunk - a resolve, a duplicate of
a known alert, several events, an alert named twice, no meaning - is applied as it would be
alone, after them and in order. Deliveries naming different alerts commute, so the end state
is the one that applying them one by one in order would leave (the argument of
`daemon.intake.ingest_group`, whose HTTP groups do the same for stored-and-applied requests).

If a chunk's unit fails (a bug, a constraint), each of its deliveries is applied in a unit of
its own, so only a failing one fails (and is retried with backoff, like any failure).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection

from daemon.core.events import AlertEvent, Interpretation, RawDelivery, clamp_uid
from daemon.intake import deliveries
from daemon.intake.deliveries import ClaimedDelivery, DeliveryRows
from daemon.intake.inbound import ProcessResult
from daemon.tickets.transitions import Transitions

# Deliveries per unit: large enough that the set-based statements pay, small enough that a
# chunk's unit stays short (an IMAP batch of 200-500 is a few units that group commit joins).
CHUNK = 100

Meaning = Interpretation | str
# (conn, delivery id, channel, source, attempts, meaning, now): apply one delivery alone.
FinishOne = Callable[[Connection, int, str, "str | None", int, Meaning, datetime],
                     ProcessResult]


async def interpret_and_apply(
        raws: Sequence[RawDelivery],
        interpret: Callable[[Sequence[RawDelivery]], Awaitable[list[Meaning | Exception]]],
        apply: Callable[[list[tuple[RawDelivery, Meaning | Exception]]],
                        Awaitable[list[ProcessResult | None]]],
) -> list[ProcessResult | None]:
    """Each delivery's result, chunk by chunk: chunk n + 1 is interpreted (off the loop, or in
    worker processes) while chunk n is applied, and chunks are applied one after the other,
    in order (a raise and a resolve of one alert may sit in different chunks)."""
    results: list[ProcessResult | None] = []
    applying: asyncio.Task[list[ProcessResult | None]] | None = None
    for start in range(0, len(raws), CHUNK):
        chunk = raws[start:start + CHUNK]
        meanings = await interpret(chunk)
        if applying is not None:
            results.extend(await applying)
        applying = asyncio.ensure_future(apply(list(zip(chunk, meanings, strict=True))))
    if applying is not None:
        results.extend(await applying)
    return results


def apply_chunk(conn: Connection, rows: DeliveryRows, transitions: Transitions,
                finish_one: FinishOne, chunk: Sequence[tuple[RawDelivery, Meaning]],
                now: datetime) -> list[ProcessResult | None]:
    """Apply `chunk`'s deliveries (attempts counted) in the caller's unit; each one's result,
    or None where the delivery is done meanwhile or another process holds it."""
    claimed = [rows.claim(conn, raw.id) for raw, _ in chunk]
    results: list[ProcessResult | None] = [None] * len(chunk)
    bulk = _bulk_candidates(chunk, claimed)
    opened = transitions.open_new_alerts(
        conn, [(chunk[i][0].channel, _only_event(chunk[i][1])) for i in bulk], now
    ) if bulk else []
    finished = []
    for i, event_result in zip(bulk, opened, strict=True):
        if event_result is not None:  # None: the alert exists; applied below, alone
            claim = claimed[i]
            assert claim is not None
            result, changes = deliveries.outcome_of(chunk[i][1], (event_result,),
                                                    claim.source, claim.attempts, now)
            results[i] = replace(result, delivery_id=chunk[i][0].id)
            finished.append({"row_id": chunk[i][0].id, **changes})
    rows.finish_many(conn, finished)
    for i, ((raw, meaning), claim) in enumerate(zip(chunk, claimed, strict=True)):
        if results[i] is None and claim is not None:  # in order, after the new alerts
            results[i] = finish_one(conn, raw.id, raw.channel, claim.source, claim.attempts,
                                    meaning, now)
    return results


def _only_event(meaning: Meaning) -> AlertEvent:
    assert isinstance(meaning, Interpretation)
    return meaning.events[0]


def _bulk_candidates(chunk: Sequence[tuple[RawDelivery, Meaning]],
                     claimed: Sequence[ClaimedDelivery | None]) -> list[int]:
    """Indexes of the claimed deliveries that raise one event whose alert (as stored: its
    uid clamped) no other delivery of the chunk names."""
    alerts_named = Counter((event.source, clamp_uid(event.uid)) for _, meaning in chunk
                           if isinstance(meaning, Interpretation) for event in meaning.events)
    return [i for i, ((_, meaning), claim) in enumerate(zip(chunk, claimed, strict=True))
            if claim is not None and isinstance(meaning, Interpretation)
            and len(meaning.events) == 1
            and alerts_named[(meaning.events[0].source,
                              clamp_uid(meaning.events[0].uid))] == 1]

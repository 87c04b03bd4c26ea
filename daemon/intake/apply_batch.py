"""Stored deliveries applied in chunks: an IMAP backlog's batch in a few units of set-based
statements instead of a unit of a few statements per message.

A mail batch is committed first, with each message's attempt counted, then interpreted; this
applies the meanings. A chunk is one unit: it claims its deliveries, opens the new alerts of
those that raise exactly one alert no other delivery of the chunk names
(`Transitions.open_new_alerts`: one statement per table for all of them) and writes their
outcome in one `executemany` per set of changed columns; every other delivery of the chunk -
a resolve, a duplicate of a known alert, several events, an alert named twice, no meaning -
is applied as it would be alone, after them and in order. Deliveries naming different
alerts commute, so the end state is the one that applying them one by one in order would
leave (the argument of `daemon.intake.ingest_group`, whose HTTP groups do the same for
stored-and-applied requests).

If a chunk's unit fails (a bug, a constraint), each of its deliveries is applied in a unit of
its own, so only a failing one fails (and is retried with backoff, like any failure).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from daemon.core.conditions import condition_key
from daemon.core.events import (
    AlertEvent,
    Interpretation,
    RawDelivery,
    clamp_event,
    clamp_uid,
)
from daemon.core.lifecycle import AlertAction
from daemon.intake import deliveries
from daemon.intake.deliveries import DeliveryRows
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
    claimed = rows.claim_all(conn, [raw.id for raw, _ in chunk])
    results: list[ProcessResult | None] = [None] * len(chunk)
    opened = open_in_bulk(conn, transitions, [
        (i, chunk[i][0].channel, chunk[i][1], claim.source, claim.attempts)
        for i in new_alert_candidates([meaning for _, meaning in chunk])
        if (claim := claimed[i]) is not None], now)
    for i, (result, _) in opened.items():
        results[i] = replace(result, delivery_id=chunk[i][0].id)
    rows.finish_many(conn, [{"row_id": chunk[i][0].id, **changes}
                            for i, (_, changes) in opened.items()])
    for i, ((raw, meaning), claim) in enumerate(zip(chunk, claimed, strict=True)):
        if results[i] is None and claim is not None:  # in order, after the new alerts
            results[i] = finish_one(conn, raw.id, raw.channel, claim.source, claim.attempts,
                                    meaning, now)
    return results


def new_alert_candidates(meanings: Sequence[Meaning | None]) -> list[int]:
    """Indexes of the meanings `open_in_bulk` may take: one raise, of an alert (as stored:
    its uid clamped) that no other meaning of the batch names, of a condition (rule 2) that
    no other event of the batch names (its ticket is decided by the events before it in
    order: applied in bulk, before them, it must not depend on them). None: an input left
    out."""
    # Per meaning, each event's (alert as stored, condition); none for an input left out.
    keys = [[((event.source, clamp_uid(event.uid)), condition_key(clamp_event(event)))
             for event in meaning.events] if isinstance(meaning, Interpretation) else []
            for meaning in meanings]
    alerts_named = Counter(alert for each in keys for alert, _ in each)
    conditions_named = Counter(condition for each in keys for _, condition in each)
    return [i for i, (meaning, each) in enumerate(zip(meanings, keys, strict=True))
            if isinstance(meaning, Interpretation) and len(each) == 1
            and meaning.events[0].action is AlertAction.RAISE
            and alerts_named[each[0][0]] == 1
            and (each[0][1] is None or conditions_named[each[0][1]] == 1)]


# (index, channel, its meaning, its source, its attempts)
BulkArrival = tuple[int, str, Meaning, "str | None", int]


def open_in_bulk(conn: Connection, transitions: Transitions, arrivals: list[BulkArrival],
                 now: datetime) -> dict[int, tuple[ProcessResult, dict[str, Any]]]:
    """Open the new alerts among `arrivals` (`new_alert_candidates`) with a few statements;
    by index, each opened one's result (delivery id still 0) and its delivery's columns.
    Those whose alert exists are left out: apply them one by one."""
    opened = transitions.open_new_alerts(
        conn, [(channel, _only_event(meaning)) for _, channel, meaning, _, _ in arrivals],
        now) if arrivals else []
    return {i: deliveries.outcome_of(meaning, (event_result,), source, attempts, now)
            for (i, _, meaning, source, attempts), event_result in zip(arrivals, opened,
                                                                      strict=True)
            if event_result is not None}


def _only_event(meaning: Meaning) -> AlertEvent:
    assert isinstance(meaning, Interpretation)
    return meaning.events[0]

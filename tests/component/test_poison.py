"""A delivery whose processing kills the process uses up its attempts and is set aside as
failed, instead of taking alertd down at every start; a replay gets every attempt again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from daemon.core.api_event import interpret_api_delivery
from daemon.core.events import Channel, Interpretation, RawDelivery
from daemon.intake.inbound import Inbound
from daemon.intake.pipeline import Pipeline
from daemon.metrics import Metrics
from daemon.store.database import Database
from daemon.store.models import Delivery

MAX_ATTEMPTS = 3


class ProcessDied(BaseException):
    """Stands for the process dying mid-processing (a crash, or the watchdog's kill): nothing
    after it runs, like after kill -9."""


async def make_due(db: Database) -> None:
    """Time passes: the unfinished attempt's retry time comes."""
    await db.write(lambda s: s.execute(update(Delivery).values(
        next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))))


async def stored(db: Database) -> Delivery:
    return await db.read(lambda s: s.scalars(select(Delivery)).one())


async def test_a_delivery_that_kills_the_process_is_quarantined(db: Database) -> None:
    poisoned = True

    def interpret(delivery: RawDelivery) -> Interpretation:
        if poisoned:
            raise ProcessDied
        return interpret_api_delivery(delivery)

    pipeline = Pipeline(db, Metrics(), {Channel.API.value: interpret},
                        max_attempts=MAX_ATTEMPTS, retry_base_s=60)
    body = {"source": "datto", "uid": "poison-1", "action": "raise"}
    accepted = await pipeline.submit(Inbound(Channel.API, "poison", json.dumps(body).encode(),
                                             "application/json", "datto"))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(ProcessDied):
            await pipeline.process(accepted.delivery_id)
        row = await stored(db)
        # Counted and committed before the interpreter ran; due again only later.
        assert (row.status, row.attempts) == ("received", attempt)
        assert row.next_attempt_at is not None and row.next_attempt_at > datetime.now(UTC)
        assert await pipeline.process(accepted.delivery_id) is None  # not due yet
        await make_due(db)
    result = await pipeline.process(accepted.delivery_id)
    assert result is not None and result.status.value == "failed"
    row = await stored(db)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert row.error == (f"gave up after {MAX_ATTEMPTS} attempt(s) that did not finish "
                         "(alertd stopped or crashed while processing it)")
    assert await pipeline.due_ids() == []  # set aside: no sweep takes it again
    poisoned = False  # the cause is fixed (a rule, a parser): replay gets every attempt again
    replayed = await pipeline.replay(accepted.delivery_id)
    assert replayed is not None and replayed.status.value == "processed"
    assert (await stored(db)).attempts == 1


async def test_a_restart_retries_the_attempt_a_crash_interrupted_at_once(db: Database
                                                                        ) -> None:
    """The interrupted attempt is scheduled a retry delay ahead; startup recovery does not
    wait for it (nor for a backoff under way), and still counts the attempt."""
    crashed = True

    def interpret(delivery: RawDelivery) -> Interpretation:
        if crashed:
            raise ProcessDied
        return interpret_api_delivery(delivery)

    pipeline = Pipeline(db, Metrics(), {Channel.API.value: interpret},
                        max_attempts=MAX_ATTEMPTS, retry_base_s=3600)
    body = {"source": "datto", "uid": "crash-1", "action": "raise"}
    accepted = await pipeline.submit(Inbound(Channel.API, "crash", json.dumps(body).encode(),
                                             "application/json", "datto"))
    with pytest.raises(ProcessDied):
        await pipeline.process(accepted.delivery_id)
    assert await pipeline.due_ids() == []  # an hour ahead
    crashed = False
    assert await pipeline.make_all_due() == 1
    assert await pipeline.due_ids() == [accepted.delivery_id]
    result = await pipeline.process(accepted.delivery_id)
    assert result is not None and result.status.value == "processed"
    row = await stored(db)
    assert (row.status, row.attempts) == ("processed", 2)
    assert await pipeline.make_all_due() == 0  # nothing received is left to move


async def test_a_bug_in_one_message_leaves_the_rest_of_its_batch_applied(db: Database
                                                                         ) -> None:
    """Mail is committed first; one message whose interpreter raises is retried later on
    its own, and the others of the batch are applied."""
    def interpret(delivery: RawDelivery) -> Interpretation:
        if b"poison" in delivery.payload:
            raise RuntimeError("a parser bug")
        return interpret_api_delivery(delivery)

    pipeline = Pipeline(db, Metrics(), {Channel.IMAP.value: interpret},
                        max_attempts=MAX_ATTEMPTS, retry_base_s=60)
    inbounds = [Inbound(Channel.IMAP, f"mid:{uid}", json.dumps(
        {"source": "datto", "uid": uid, "action": "raise"}).encode(), "message/rfc822")
        for uid in ("a-1", "poison-2", "a-3")]
    results = await pipeline.ingest(*inbounds)
    assert [r.status.value if r.status else None for r in results] == [
        "processed", "received", "processed"]
    assert "a parser bug" in (results[1].error or "")
    rows = await db.read(lambda s: s.scalars(select(Delivery).order_by(Delivery.id)).all())
    assert [(r.status, r.attempts) for r in rows] == [
        ("processed", 1), ("received", 1), ("processed", 1)]
    assert "RuntimeError: a parser bug" in (rows[1].error or "")

"""Mail batches applied in chunks (daemon.intake.apply_batch): a batch ends exactly as its
messages would one by one, in order, on each backend; a failing chunk fails only the
message that fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from daemon.core.api_event import interpret_api_delivery
from daemon.core.events import Channel, DeliveryStatus, RawDelivery
from daemon.intake import apply_batch
from daemon.intake.inbound import Inbound, Ingested
from daemon.intake.pipeline import Pipeline
from daemon.metrics import Metrics
from daemon.store.database import Database
from daemon.store.models import Delivery, Ticket
from tests.component.test_ingest_group import state
from tests.helpers import event_body


def mail(uid: str, action: str = "raise", key: str | None = None) -> Inbound:
    """A message as the IMAP reader hands it in (its payload the API's JSON event: the test
    pipeline reads every channel that way)."""
    payload = json.dumps(event_body(uid, action)).encode()
    return Inbound(channel=Channel.IMAP, dedupe_key=key or f"{uid}:{action}",
                   payload=payload, content_type="message/rfc822")


UNREADABLE = Inbound(channel=Channel.IMAP, dedupe_key="unreadable", payload=b"{}",
                     content_type="message/rfc822")


def backlog() -> list[Inbound]:
    """Three chunks and more, with every kind of message, and one alert's raise and resolve
    in different chunks."""
    batch = [mail(f"new-{n}") for n in range(apply_batch.CHUNK * 2 + 30)]
    batch[5] = mail("flaps")
    batch[6] = mail("flaps", key="flaps-again")  # the same alert twice in one chunk
    batch[apply_batch.CHUNK + 3] = mail("known", "resolve")
    batch[apply_batch.CHUNK + 4] = mail("tomb", "resolve")  # a resolve before any raise
    batch[apply_batch.CHUNK + 5] = mail("new-0", key="new-0:raise")  # message 0 again
    batch[apply_batch.CHUNK * 2 + 7] = mail("new-1", "resolve")  # raised in the first chunk
    batch[apply_batch.CHUNK * 2 + 8] = UNREADABLE
    return batch


def outcomes(answers: list[Ingested]) -> list[tuple[bool, Any, list[str]]]:
    return [(a.duplicate, a.status, [e.outcome for e in a.events]) for a in answers]


async def test_a_backlog_ends_as_its_messages_would_one_by_one(
        db: Database, pipeline: Pipeline, tmp_path: Path) -> None:
    reference_db = Database(f"sqlite:///{tmp_path / 'one-by-one.db'}")
    await reference_db.upgrade()
    reference = Pipeline(reference_db, Metrics(),
                         {c.value: interpret_api_delivery for c in Channel})
    for pipe in (pipeline, reference):
        await pipe.ingest(mail("known"))
    one_by_one = [answer for inbound in backlog()
                  for answer in await reference.ingest(inbound)]
    expected = await reference_db.read(state)
    await reference_db.dispose()

    answers = await pipeline.ingest(*backlog())

    assert outcomes(answers) == outcomes(one_by_one)
    assert await db.read(state) == expected
    # The spot checks, so the comparison cannot pass on two equally wrong runs.
    assert outcomes(answers)[5:7] == [(False, DeliveryStatus.PROCESSED, ["opened"]),
                                      (False, DeliveryStatus.PROCESSED, ["twin"])]
    assert answers[apply_batch.CHUNK + 5].duplicate
    assert answers[apply_batch.CHUNK + 5].delivery_id == answers[0].delivery_id
    assert expected["alerts"]["new-1"] == ("resolved", 2)  # a raise and its resolve
    assert expected["tickets"]["known"] == "closed"
    assert answers[apply_batch.CHUNK * 2 + 8].status == DeliveryStatus.FAILED
    # Every other message opened a ticket of its own.
    assert await db.read(lambda s: s.scalar(select(func.count()).select_from(Ticket))) == (
        1 + apply_batch.CHUNK * 2 + 30 - 6)


async def test_a_failing_chunk_applies_each_message_alone(
        db: Database, pipeline: Pipeline, monkeypatch: Any) -> None:
    transitions = pipeline._transitions
    original = transitions.open_new_alerts
    calls: list[list[str]] = []

    def open_unless_poisoned(conn: Any, arrivals: Any, now: Any) -> Any:
        calls.append([event.uid for _, event in arrivals])
        if len(arrivals) > 1 and any(event.uid == "poison" for _, event in arrivals):
            raise RuntimeError("simulated bug")
        return original(conn, arrivals, now)

    monkeypatch.setattr(transitions, "open_new_alerts", open_unless_poisoned)
    answers = await pipeline.ingest(mail("fine-1"), mail("poison"), mail("fine-2"))

    assert calls[0] == ["fine-1", "poison", "fine-2"]
    assert [a.status for a in answers] == [DeliveryStatus.PROCESSED] * 3
    assert await db.read(lambda s: s.scalar(select(func.count()).select_from(Ticket))) == 3


async def test_an_interpreter_failure_is_recorded_on_its_message_only(
        db: Database, metrics: Metrics) -> None:
    def interpret(raw: RawDelivery) -> Any:
        if b"crash" in raw.payload:
            raise RuntimeError("interpreter bug")
        return interpret_api_delivery(raw)

    pipeline = Pipeline(db, metrics, {c.value: interpret for c in Channel})
    answers = await pipeline.ingest(mail("a"), mail("crash"), mail("b"))

    assert [a.status for a in answers] == [DeliveryStatus.PROCESSED, DeliveryStatus.RECEIVED,
                                           DeliveryStatus.PROCESSED]
    error = await db.read(lambda s: s.scalar(select(Delivery.error).where(
        Delivery.id == answers[1].delivery_id)))
    assert error is not None and "interpreter bug" in error

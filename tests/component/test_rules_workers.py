"""The worker processes that interpret a backlog of mail (daemon/rules/workers.py), with real
child processes: outcomes in order, a poison item failing alone, children started on demand
and stopped when idle, and the mail interpreter giving the same meanings through them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from daemon.config.loading import packaged_rules_path
from daemon.core.events import Interpretation, RawDelivery, Unprocessable
from daemon.rules.email_interpreter import EmailInterpreter, RulesHolder, interpret_mail
from daemon.rules.load import compile_rules, load_rules
from daemon.rules.workers import (
    MAX_CHUNK_BYTES,
    PoolUnavailable,
    WorkerDied,
    WorkerPool,
    _chunks,
)

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def label(context: str, item: bytes) -> str:
    """The work the children do in these tests (imported by name in each child)."""
    if item == b"exit":
        os._exit(3)  # a crash: nothing after it runs
    if item == b"hang":
        time.sleep(60)
    if item == b"bug":
        raise RuntimeError("the parser broke")
    if item == b"unusable":
        raise Unprocessable("nothing usable")
    return f"{context}:{item.decode()}"


@pytest.fixture
def pool() -> WorkerPool:
    pool = WorkerPool(2, timeout_s=5, idle_s=60)
    yield pool
    pool.close()


def test_outcomes_come_back_in_order_with_each_items_exception(pool: WorkerPool) -> None:
    items = [str(n).encode() for n in range(40)]
    items[5], items[17] = b"bug", b"unusable"
    outcomes = pool.map(label, "c", items)
    assert [o for i, o in enumerate(outcomes) if i not in (5, 17)] == [
        f"c:{n}" for n in range(40) if n not in (5, 17)]
    assert isinstance(outcomes[5], RuntimeError) and str(outcomes[5]) == "the parser broke"
    assert isinstance(outcomes[17], Unprocessable) and str(outcomes[17]) == "nothing usable"


def test_an_item_that_kills_its_worker_fails_alone(pool: WorkerPool) -> None:
    items = [b"a", b"b", b"exit", b"d", b"e", b"f", b"g", b"h", b"i", b"j"]
    outcomes = pool.map(label, "c", items)
    assert isinstance(outcomes[2], WorkerDied)
    assert str(outcomes[2]) == "the worker process died (exit status 3) on this message"
    assert [o for i, o in enumerate(outcomes) if i != 2] == [
        f"c:{item.decode()}" for i, item in enumerate(items) if i != 2]
    assert pool.map(label, "c", [b"x"]) == ["c:x"], "the pool goes on"


def test_an_item_that_hangs_is_stopped_and_fails_alone() -> None:
    pool = WorkerPool(2, timeout_s=1)
    try:
        outcomes = pool.map(label, "c", [b"a", b"hang", b"b", b"c"])
    finally:
        pool.close()
    assert isinstance(outcomes[1], WorkerDied)
    assert str(outcomes[1]) == "the worker process took longer than 1 s and was stopped " \
                               "on this message"
    assert [outcomes[0], *outcomes[2:]] == ["c:a", "c:b", "c:c"]


def test_children_start_with_a_batch_and_stop_when_idle() -> None:
    pool = WorkerPool(2, idle_s=0.3)
    try:
        assert pool.running == 0, "nothing runs before the first batch"
        assert pool.map(label, "c", [b"a", b"b", b"c", b"d"]) == ["c:a", "c:b", "c:c", "c:d"]
        assert pool.running == 2
        deadline = time.monotonic() + 10
        while pool.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.running == 0, "idle children are stopped"
        assert pool.map(label, "c", [b"e"]) == ["c:e"], "and started again when needed"
    finally:
        pool.close()
    assert pool.running == 0
    with pytest.raises(PoolUnavailable):
        pool.map(label, "c", [b"f"])


def test_chunks_hold_few_bytes_unless_one_item_is_larger() -> None:
    assert _chunks([0] * 10, 4) == [(0, 4), (4, 8), (8, 10)]
    half = MAX_CHUNK_BYTES // 2
    assert _chunks([half, half, 1, 3 * MAX_CHUNK_BYTES, 1], 10) == [
        (0, 2), (2, 3), (3, 4), (4, 5)]


def test_children_that_cannot_start_make_the_pool_unavailable() -> None:
    pool = WorkerPool(2, command=[sys.executable, "-c", "raise SystemExit(1)"])
    with pytest.raises(PoolUnavailable, match="did not start"):
        pool.map(label, "c", [b"a", b"b"])
    pool.close()


# --- the mail interpreter over the workers ---------------------------------------------------


def deliveries(copies: int) -> list[RawDelivery]:
    raws = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    raws.append(b"\r\n\r\n   \r\n")  # nothing usable: Unprocessable
    return [RawDelivery(n, "imap", None, "message/rfc822", raw, {"uid": n})
            for n, raw in enumerate(raws * copies)]


def same(a: Interpretation | Exception, b: Interpretation | Exception) -> bool:
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and str(a) == str(b)
    return a == b


def test_a_large_batch_means_in_the_workers_what_it_means_here() -> None:
    holder = RulesHolder(load_rules(packaged_rules_path()))
    batch = deliveries(2)
    interpreter = EmailInterpreter(holder, WorkerPool(2), parallel_min_batch=8,
                                   parallel_min_mean_bytes=0)
    try:
        outcomes = interpreter.interpret_many(batch)
        assert interpreter._pool is not None and interpreter._pool.running == 2
    finally:
        interpreter.close()
    expected = []
    for delivery in batch:
        try:
            expected.append(interpret_mail(holder.rules, delivery))
        except Unprocessable as err:
            expected.append(err)
    assert len(outcomes) == len(expected)
    assert all(same(a, b) for a, b in zip(outcomes, expected, strict=True))
    assert sum(isinstance(o, Interpretation) and bool(o.events) for o in outcomes) > 20


def test_the_workers_follow_a_rules_reload() -> None:
    holder = RulesHolder(load_rules(packaged_rules_path()))
    interpreter = EmailInterpreter(holder, WorkerPool(2), parallel_min_batch=8,
                                   parallel_min_mean_bytes=0)
    batch = deliveries(1)
    try:
        before = interpreter.interpret_many(batch)
        holder.rules = compile_rules('[[rule]]\nname = "drop all"\naction = "ignore"\n'
                                     'from = { contains = "@" }\n')
        after = interpreter.interpret_many(batch)
    finally:
        interpreter.close()
    assert any(isinstance(o, Interpretation) and o.events for o in before)
    assert {o.ignored_reason for o in after if isinstance(o, Interpretation)} == {
        "rule 'drop all' ignores it"}


# A worker whose parser kills its process on mail saying "poison" (exit status 3).
POISONED_WORKER = [sys.executable, "-c", """
import os
import daemon.rules.email_interpreter as interpreter
from daemon.rules.workers import main
parse = interpreter.parse_message
def parse_or_die(raw):
    if b"poison" in raw:
        os._exit(3)
    return parse(raw)
interpreter.parse_message = parse_or_die
main()
"""]


def test_a_mail_that_kills_its_worker_fails_alone() -> None:
    holder = RulesHolder(load_rules(packaged_rules_path()))
    batch = deliveries(1)
    batch.insert(9, RawDelivery(99, "imap", None, "message/rfc822",
                                b"From: a@example.com\r\nSubject: poison\r\n\r\nx\r\n", {}))
    interpreter = EmailInterpreter(holder, WorkerPool(2, command=POISONED_WORKER),
                                   parallel_min_batch=8, parallel_min_mean_bytes=0)
    try:
        outcomes = interpreter.interpret_many(batch)
    finally:
        interpreter.close()
    assert isinstance(outcomes[9], WorkerDied)
    assert str(outcomes[9]) == "the worker process died (exit status 3) on this message"
    others = batch[:9] + batch[10:]
    assert all(same(a, b) for a, b in zip(
        outcomes[:9] + outcomes[10:], EmailInterpreter(holder).interpret_many(others),
        strict=True))


def test_a_small_batch_is_interpreted_in_this_process() -> None:
    pool = WorkerPool(2)
    interpreter = EmailInterpreter(RulesHolder(load_rules(packaged_rules_path())), pool,
                                   parallel_min_batch=8, parallel_min_mean_bytes=0)
    outcomes = interpreter.interpret_many(deliveries(1)[:8])
    assert len(outcomes) == 8 and pool.running == 0
    interpreter.close()


def test_a_batch_of_small_mail_is_interpreted_in_this_process() -> None:
    pool = WorkerPool(2)
    interpreter = EmailInterpreter(RulesHolder(load_rules(packaged_rules_path())), pool,
                                   parallel_min_batch=8, parallel_min_mean_bytes=1024)
    small = [RawDelivery(n, "imap", None, "message/rfc822",
                         b"From: a@b.c\r\nSubject: Alert{x}\r\n\r\nshort\r\n", {})
             for n in range(20)]
    assert len(interpreter.interpret_many(small)) == 20 and pool.running == 0
    interpreter.close()


def test_without_workers_a_large_batch_is_interpreted_here() -> None:
    pool = WorkerPool(2, command=[sys.executable, "-c", "raise SystemExit(1)"])
    holder = RulesHolder(load_rules(packaged_rules_path()))
    interpreter = EmailInterpreter(holder, pool, parallel_min_batch=8,
                                   parallel_min_mean_bytes=0)
    batch = deliveries(1)
    outcomes = interpreter.interpret_many(batch)
    interpreter.close()
    assert all(same(a, b) for a, b in zip(
        outcomes, EmailInterpreter(holder).interpret_many(batch), strict=True))

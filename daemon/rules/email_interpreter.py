"""Interpreter of the email channels (smtp, imap): parse the message, run the rules in force,
name the event; a large batch on several cores. `RulesHolder` holds the rules in force (SIGHUP
swaps them)."""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Sequence
from pathlib import Path

from daemon.core.events import Interpretation, RawDelivery, Unprocessable
from daemon.mail.parse import parse_message
from daemon.rules.engine import decide_message
from daemon.rules.load import compile_rules
from daemon.rules.model import RuleSet
from daemon.rules.workers import PoolUnavailable, WorkerPool, default_workers

log = logging.getLogger(__name__)

# A batch goes to the worker processes only when it is a backlog (a poll or IDLE wake-up
# brings a few messages; a backlog comes in batches of `batch_size`, 200 by default) of mail
# that costs something to read. Reading costs roughly with size (~60 us for a 160-byte text
# alert, ~250 us for a 2.5 KB multipart one, ~1.5 ms for 10 KB of HTML); a message handed to
# a worker and its meaning back cost this process 20-50 us, and waiting for the slowest worker
# more. bench/imap_drain.py on 2 shared cores (Dovecot on them too): a backlog of 160-byte
# alerts drained ~25 % slower through the workers, of 2.5 KB multipart ones as fast; either
# way the workers took 97 % of the parsing off this process, which pays where cores are free.
PARALLEL_MIN_BATCH = 64
PARALLEL_MIN_MEAN_BYTES = 1024


class RulesHolder:
    """The rule set in force; SIGHUP replaces `rules` as a whole (a reference swap)."""

    def __init__(self, rules: RuleSet):
        self.rules = rules


def interpret_mail(rules: RuleSet, delivery: RawDelivery) -> Interpretation:
    """What one stored mail means under `rules` (pure). Raises `Unprocessable` with the
    reason."""
    message = parse_message(delivery.payload)
    decision = decide_message(rules, message, delivery.payload)
    trace = {
        **decision.result.trace,
        "message": {"message_id": message.message_id, "from": message.from_address,
                    "subject": message.original_subject, "defects": list(message.defects)},
    }
    if decision.event is None:
        return Interpretation(ignored_reason=decision.ignored_reason, trace=trace)
    event = decision.event
    trace["event"] = {"source": event.source, "uid": event.uid, "action": event.action.value}
    return Interpretation(events=(event,), trace=trace)


class EmailInterpreter:
    """The interpreter of stored mail; reads `holder.rules` at each call (or batch).

    `interpret_many` takes a batch (an IMAP backlog): more than `parallel_min_batch`
    messages of `parallel_min_mean_bytes` or more on average go to `pool`'s worker
    processes, others are interpreted in the calling thread.
    Either way each message's outcome is its `Interpretation` or the exception interpreting it
    raised (`Unprocessable` with the reason, `WorkerDied` for a message that killed its
    worker, anything else a bug), in order; one message's failure is its own. `close()` stops
    the workers (at shutdown).
    """

    def __init__(self, holder: RulesHolder, pool: WorkerPool | None = None,
                 parallel_min_batch: int = PARALLEL_MIN_BATCH,
                 parallel_min_mean_bytes: int = PARALLEL_MIN_MEAN_BYTES):
        self.holder = holder
        self._pool = pool
        self._parallel_min_batch = parallel_min_batch
        self._parallel_min_mean_bytes = parallel_min_mean_bytes

    def __call__(self, delivery: RawDelivery) -> Interpretation:
        return interpret_mail(self.holder.rules, delivery)

    def interpret_many(self, deliveries: Sequence[RawDelivery]
                       ) -> list[Interpretation | Exception]:
        rules = self.holder.rules  # one rule set for the whole batch, even across a SIGHUP
        sizes = [len(delivery.payload) for delivery in deliveries]
        if (self._pool is not None and rules.text is not None
                and len(deliveries) > self._parallel_min_batch
                and sum(sizes) >= self._parallel_min_mean_bytes * len(deliveries)):
            try:
                return self._pool.map(_interpret_in_worker, (rules.text, rules.path),
                                      deliveries, sizes)
            except PoolUnavailable as err:
                log.warning("mail interpreter: %s; interpreting %d message(s) in this "
                            "process", err, len(deliveries))
        return [_outcome(rules, delivery) for delivery in deliveries]

    def close(self) -> None:
        """Stop the worker processes, if any run. Never raises."""
        if self._pool is not None:
            self._pool.close()


def email_interpreter(holder: RulesHolder) -> EmailInterpreter:
    """The interpreter of stored mail, with one worker process per core (at most 4; none on
    one core) for large batches."""
    workers = default_workers()
    return EmailInterpreter(holder, WorkerPool(workers) if workers else None)


def _outcome(rules: RuleSet, delivery: RawDelivery) -> Interpretation | Exception:
    try:
        return interpret_mail(rules, delivery)
    except Exception as err:
        return err


@functools.lru_cache(maxsize=2)
def _rules_of(text: str, path: Path | None) -> RuleSet:
    """The rule set compiled in a worker process, once per text (a SIGHUP brings a new one)."""
    return compile_rules(text, str(path) if path else "<rules>", path)


def _interpret_in_worker(rules: tuple[str, Path | None], delivery: RawDelivery
                         ) -> Interpretation:
    """`interpret_mail` in a worker process: the rules come as their text."""
    try:
        return interpret_mail(_rules_of(*rules), delivery)
    except Unprocessable:
        raise
    except Exception as err:  # a bug: the parent logs it, with this process's traceback
        err.add_note("in the worker process:\n"
                     + "".join(traceback.format_exception(err)).rstrip())
        raise

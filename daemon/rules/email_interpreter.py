"""Interpreter of the email channels (smtp, imap): parse the message, run the rules in force,
name the event; a large batch on several cores. `RulesHolder` holds the rules in force (SIGHUP
swaps them)."""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Mapping, Sequence
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


def senders_checked(meaning: Interpretation, senders: Mapping[str, frozenset[str]]
                    ) -> Interpretation:
    """`meaning`, or its refusal when it names a source whose mail alertd takes only from
    configured senders (`[datto] email_from`) and it came from another (pure)."""
    allowed = [senders[event.source] for event in meaning.events if senders.get(event.source)]
    if not allowed:
        return meaning
    sender = ((meaning.trace or {}).get("message") or {}).get("from") or ""
    if all(sender.casefold() in addresses for addresses in allowed):
        return meaning
    source = next(event.source for event in meaning.events if senders.get(event.source))
    return Interpretation(
        rejected_reason=(f"{source} alert mail from {sender or 'no sender'!r}, which is not "
                         f"a [{source}] email_from address ("
                         f"{', '.join(sorted(senders[source]))})"),
        trace=meaning.trace)


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
                 parallel_min_mean_bytes: int = PARALLEL_MIN_MEAN_BYTES,
                 senders: Mapping[str, frozenset[str]] | None = None):
        self.holder = holder
        # Per source, the only addresses its alert mail is taken from (empty: any).
        self._senders = {source: addresses for source, addresses in (senders or {}).items()
                         if addresses}
        # Sources that could be limited to their senders and are not: said once, in the log.
        self._unchecked = {source for source, addresses in (senders or {}).items()
                           if not addresses}
        self._pool = pool
        self._parallel_min_batch = parallel_min_batch
        self._parallel_min_mean_bytes = parallel_min_mean_bytes

    def __call__(self, delivery: RawDelivery) -> Interpretation:
        return self._checked(interpret_mail(self.holder.rules, delivery))

    def _checked(self, meaning: Interpretation) -> Interpretation:
        if self._unchecked:
            for event in meaning.events:
                if event.source in self._unchecked:
                    self._unchecked.discard(event.source)
                    log.warning("%s alert mail is taken from any sender (this one: %s): set "
                                "[%s] email_from to your account's sender address",
                                event.source, (meaning.trace or {}).get("message", {})
                                .get("from"), event.source)
        return senders_checked(meaning, self._senders) if self._senders else meaning

    def interpret_many(self, deliveries: Sequence[RawDelivery]
                       ) -> list[Interpretation | Exception]:
        outcomes = self._interpret_many(deliveries)
        if not (self._senders or self._unchecked):
            return outcomes
        return [self._checked(outcome) if isinstance(outcome, Interpretation) else outcome
                for outcome in outcomes]

    def _interpret_many(self, deliveries: Sequence[RawDelivery]
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


def email_interpreter(holder: RulesHolder, senders: Mapping[str, frozenset[str]] | None = None
                      ) -> EmailInterpreter:
    """The interpreter of stored mail, with one worker process per core (at most 4; none on
    one core) for large batches; `senders`: see `senders_checked`."""
    workers = default_workers()
    return EmailInterpreter(holder, WorkerPool(workers) if workers else None, senders=senders)


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

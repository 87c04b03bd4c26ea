"""Interpreter of the email channels (smtp, imap): parse the message, run the rules in force,
name the event. `RulesHolder` holds the rules in force (SIGHUP swaps them)."""

from __future__ import annotations

from collections.abc import Callable

from daemon.core.events import Interpretation, RawDelivery
from daemon.mail.parse import parse_message
from daemon.rules.engine import decide_message
from daemon.rules.model import RuleSet


class RulesHolder:
    """The rule set in force; SIGHUP replaces `rules` as a whole (a reference swap)."""

    def __init__(self, rules: RuleSet):
        self.rules = rules


def email_interpreter(holder: RulesHolder) -> Callable[[RawDelivery], Interpretation]:
    """The interpreter of stored mail; reads `holder.rules` at each call."""
    def interpret(delivery: RawDelivery) -> Interpretation:
        message = parse_message(delivery.payload)  # raises Unprocessable with the reason
        decision = decide_message(holder.rules, message, delivery.payload)
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
    return interpret

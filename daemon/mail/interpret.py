"""Interpreter of the email channels (smtp, imap): parse, run the rules, name the event."""

from __future__ import annotations

from daemon.core.events import Interpretation, RawDelivery
from daemon.mail.parse import dedupe_key, parse_message
from daemon.rules.engine import evaluate, to_event
from daemon.rules.model import RuleAction, RuleSet


class RulesHolder:
    """The rule set in force; SIGHUP replaces `rules` as a whole (a reference swap)."""

    def __init__(self, rules: RuleSet):
        self.rules = rules


def email_interpreter(holder: RulesHolder):  # type: ignore[no-untyped-def]
    def interpret(delivery: RawDelivery) -> Interpretation:
        message = parse_message(delivery.payload)  # raises Unprocessable with the reason
        result = evaluate(holder.rules, message)
        trace = {
            **result.trace,
            "message": {"message_id": message.message_id, "from": message.from_address,
                        "subject": message.original_subject, "defects": list(message.defects)},
        }
        if result.decided_by is None:
            return Interpretation(ignored_reason="no rule matched", trace=trace)
        if result.action is RuleAction.IGNORE:
            return Interpretation(
                ignored_reason=f"rule {result.decided_by.name!r} ignores it", trace=trace)
        # A rule without an alert_uid (a catch-all) keys its alert by the message itself.
        event = to_event(result, message, fallback_uid=dedupe_key(delivery.payload))
        assert event is not None
        trace["event"] = {"source": event.source, "uid": event.uid, "action": event.action.value}
        return Interpretation(events=(event,), trace=trace)
    return interpret

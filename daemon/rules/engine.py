"""Rule evaluation (pure): a parsed message and a rule set -> a decision and its trace.

Rules run in order. A rule *hits* when its conditions hold (all of them, or any with
`match = "any"`). Every hit contributes the fields its regexes extract (the first value of a
field wins); the first hit that has an action decides it; evaluation ends after a hit with
`stop = true`. The trace records every rule tried, each condition's result, and where each
field came from, so `alertd rules test` and the delivery record can show why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daemon.core.events import (
    AlertEvent,
    TicketFields,
    Unprocessable,
    clamp_event,
    normalize_uid,
)
from daemon.core.lifecycle import AlertAction
from daemon.mail.parse import ParsedMessage, dedupe_key
from daemon.rules.model import EVENT_FIELDS, Condition, Rule, RuleAction, RuleSet


@dataclass(frozen=True)
class FieldValue:
    value: str
    rule: str
    field: str


@dataclass(frozen=True)
class RuleResult:
    decided_by: Rule | None
    fields: dict[str, FieldValue]
    trace: dict[str, Any]
    ticket: dict[str, str] = field(default_factory=dict)

    @property
    def action(self) -> RuleAction | None:
        return self.decided_by.action if self.decided_by else None


class _Subject:
    """The message's fields, lower-cased lazily once per message for case-free matching."""

    def __init__(self, message: ParsedMessage):
        self.message = message
        self._values: dict[str, str] = {}
        self._lower: dict[str, str] = {}

    def value(self, name: str) -> str:
        if name not in self._values:
            m = self.message
            if name.startswith("header:"):
                text = "\n".join(m.headers.get(name[7:], ()))
            else:
                text = {"from": m.from_address, "to": "\n".join(m.to), "subject": m.subject,
                        "original_subject": m.original_subject, "body": m.body}[name]
            self._values[name] = text
        return self._values[name]

    def lower(self, name: str) -> str:
        if name not in self._lower:
            self._lower[name] = self.value(name).lower()
        return self._lower[name]


def _test(condition: Condition, subject: _Subject, extracted: dict[str, str]) -> bool:
    if condition.op == "regex":
        assert condition.pattern is not None
        match = condition.pattern.search(subject.value(condition.field))
        if match and not condition.negate:
            for name, value in match.groupdict().items():
                if value is not None:
                    extracted.setdefault(name, value.strip())
        return (match is not None) != condition.negate
    text = subject.lower(condition.field) if condition.ignore_case \
        else subject.value(condition.field)
    if condition.op == "equals":
        found = any(line.strip() == condition.value for line in text.split("\n")) \
            if condition.field in ("to",) or condition.field.startswith("header:") \
            else text.strip() == condition.value
    else:
        found = condition.value in text
    return found != condition.negate


def evaluate(rules: RuleSet, message: ParsedMessage) -> RuleResult:
    """Run the rules over one message. Pure: no I/O, nothing stored."""
    subject = _Subject(message)
    fields: dict[str, FieldValue] = {}
    tried: list[dict[str, Any]] = []
    decided_by: Rule | None = None
    for rule in rules.rules:
        extracted: dict[str, str] = {}
        results = []
        for condition in rule.conditions:
            hit = _test(condition, subject, extracted)
            results.append({"condition": condition.label, "hit": hit})
            if hit == rule.match_any:
                break  # a hit settles "any", a miss settles "all": skip the rest
        # So the last condition evaluated decides: the settling one, or the final one.
        hit = bool(results) and bool(results[-1]["hit"])
        tried.append({"rule": rule.name, "hit": hit, "conditions": results})
        if not hit:
            continue
        for name, value in extracted.items():
            if name not in fields:
                fields[name] = FieldValue(value, rule.name, _origin(rule, name))
        if decided_by is None and rule.action is not None:
            decided_by = rule
        if rule.stop:
            break
    trace = {
        "rules": tried,
        "fields": {k: {"value": v.value, "rule": v.rule, "field": v.field}
                   for k, v in fields.items()},
        "decided_by": decided_by.name if decided_by else None,
        "action": decided_by.action.value if decided_by and decided_by.action else None,
    }
    return RuleResult(decided_by, fields, trace)


def _origin(rule: Rule, group: str) -> str:
    """Which message field a named group was extracted from (for the trace)."""
    for condition in rule.conditions:
        if condition.pattern is not None and group in condition.pattern.groupindex:
            return condition.field
    return "?"


def render_ticket(rule: Rule, message: ParsedMessage, fields: dict[str, FieldValue]
                  ) -> dict[str, str]:
    """Render the rule's ticket templates; the message is data in the template context."""
    context: dict[str, Any] = {
        "subject": message.subject, "original_subject": message.original_subject,
        "from": message.from_address, "from_name": message.from_name,
        "to": list(message.to), "body": message.body,
        "message_id": message.message_id or "",
        "headers": {k: list(v) for k, v in message.headers.items()},
        **{name: value.value for name, value in fields.items()},
    }
    rendered = {}
    for key, template in rule.ticket.items():
        try:
            rendered[key] = template.render(context).strip()
        except Exception as err:  # TemplateError, and what templates can raise besides
            # (ZeroDivisionError, the sandbox's OverflowError for huge ranges, ...)
            raise Unprocessable(f"rule {rule.name!r}: ticket.{key} template failed: "
                                f"{type(err).__name__}: {err}") from err
    return rendered


def to_event(result: RuleResult, message: ParsedMessage, fallback_uid: str
             ) -> AlertEvent | None:
    """The lifecycle event a decided rule asks for (None for ignore / no decision).

    The alert id is the extracted `alert_uid`; a rule without one (a catch-all that opens a
    generic ticket) keys the alert by the message itself (`fallback_uid`).
    """
    rule = result.decided_by
    if rule is None or rule.action in (None, RuleAction.IGNORE):
        return None
    assert rule.source is not None  # the loader requires it for raise/resolve
    values = {name: result.fields[name].value for name in EVENT_FIELDS if name in result.fields}
    ticket = render_ticket(rule, message, result.fields)
    uid = values.get("alert_uid") or fallback_uid
    return clamp_event(AlertEvent(
        source=rule.source,
        uid=normalize_uid(rule.source, uid),
        action=AlertAction(rule.action.value),
        device=values.get("device"),
        site=values.get("site"),
        customer=values.get("customer"),
        priority=ticket.get("priority") or values.get("priority"),
        message=values.get("message") or message.subject or None,
        # A `condition` group: with the device, the alert's condition (one ticket each).
        condition=values.get("condition"),
        ticket=TicketFields(
            type=ticket.get("type") or None,
            summary=ticket.get("summary") or message.subject or None,
            details=ticket.get("details") or message.body or None,
        ),
        expire_after_s=rule.expire_after_s,
        rule=rule.name,
    ))


@dataclass(frozen=True)
class MessageDecision:
    """What the email intake does with one parsed message."""

    result: RuleResult
    event: AlertEvent | None  # None: nothing to apply (see ignored_reason)
    ignored_reason: str | None


def decide_message(rules: RuleSet, message: ParsedMessage, raw: bytes) -> MessageDecision:
    """Evaluate the rules and name the lifecycle event, as the SMTP/IMAP interpreter and
    `alertd rules test` both need it. Raises `Unprocessable` when a template fails."""
    result = evaluate(rules, message)
    if result.decided_by is None:
        return MessageDecision(result, None, "no rule matched")
    if result.action is RuleAction.IGNORE:
        return MessageDecision(result, None, f"rule {result.decided_by.name!r} ignores it")
    # A rule without an alert_uid (a catch-all) keys its alert by the message itself.
    event = to_event(result, message, fallback_uid=dedupe_key(raw))
    assert event is not None
    return MessageDecision(result, event, None)

"""`alertd rules test`: what the rules make of one message, as data and as text (pure)."""

from __future__ import annotations

from typing import Any

from daemon.core.conditions import condition_key
from daemon.core.events import Unprocessable
from daemon.mail.parse import parse_message
from daemon.rules.engine import decide_message, evaluate
from daemon.rules.model import RuleSet


def explain_message(rules: RuleSet, raw: bytes) -> dict[str, Any]:
    """Parse and evaluate `raw` like the email intake does, without storing anything."""
    try:
        message = parse_message(raw)
    except Unprocessable as err:
        return {"error": f"unparseable: {err}", "message": None, "trace": None,
                "ticket": None, "event": None, "ignored_reason": None}
    try:  # the same decision the email interpreter makes
        decision = decide_message(rules, message, raw)
        error = None
    except Unprocessable as err:
        decision, error = None, str(err)
    report: dict[str, Any] = {
        "error": error,
        "message": {"message_id": message.message_id, "from": message.from_address,
                    "to": list(message.to), "subject": message.original_subject,
                    "matched_subject": message.subject, "body_chars": len(message.body),
                    "defects": list(message.defects)},
        # A failing template leaves no decision: evaluate again just to show the trace.
        "trace": (decision.result if decision else evaluate(rules, message)).trace,
        "ticket": None, "event": None,
        "ignored_reason": decision.ignored_reason if decision else None,
    }
    if decision is None or decision.event is None:
        return report
    event = decision.event
    report["ticket"] = {"type": event.ticket.type or "alert", "priority": event.priority,
                        "summary": event.ticket.summary, "details": event.ticket.details}
    report["event"] = {"source": event.source, "uid": event.uid, "action": event.action.value,
                       "device": event.device, "site": event.site,
                       "customer": event.customer, "priority": event.priority,
                       "message": event.message, "summary": event.ticket.summary,
                       "condition": condition_key(event)}
    return report


_EFFECT = {
    "raise": "opens the alert and its ticket (or records a twin if the alert is known)",
    "resolve": "resolves the alert and closes its ticket (or records a tombstone if unknown)",
}


def format_explanation(report: dict[str, Any]) -> str:
    if report["message"] is None:
        return f"error: {report['error']}"
    message = report["message"]
    lines = [f"message {message['message_id'] or '(no Message-ID)'} from "
             f"{message['from'] or '(no From)'}",
             f"  subject: {message['subject']}"]
    if message["defects"]:
        lines.append(f"  defects: {', '.join(message['defects'])}")
    lines.append("rules:")
    trace = report["trace"]
    for rule in trace["rules"]:
        verdict = "HIT" if rule["hit"] else "miss"
        if rule["rule"] == trace["decided_by"]:
            verdict += f" -> {trace['action']}"
        lines.append(f"  {rule['rule']}: {verdict}")
        for condition in rule["conditions"]:
            lines.append(f"      {'hit ' if condition['hit'] else 'miss'}  "
                         f"{condition['condition']}")
    if trace["fields"]:
        lines.append("fields:")
        for name, field in trace["fields"].items():
            lines.append(f"  {name} = {field['value']!r}  (from {field['field']}, "
                         f"rule {field['rule']!r})")
    if report["ticket"]:
        lines.append("ticket:")
        for key, value in report["ticket"].items():
            if value is None:
                continue
            first, *rest = str(value).splitlines() or [""]
            lines.append(f"  {key}: {first}" + (f" (+{len(rest)} lines)" if rest else ""))
    if report["event"]:
        event = report["event"]
        lines.append(f"lifecycle: {event['action']} {event['source']} alert {event['uid']}: "
                     f"{_EFFECT[event['action']]}")
        lines.append(f"condition: {event['condition']}" if event["condition"] else
                     "condition: none (no device or no condition group: a ticket of its own)")
    if report["ignored_reason"]:
        lines.append(f"lifecycle: nothing ({report['ignored_reason']})")
    if report["error"]:
        lines.append(f"error: {report['error']}")
    return "\n".join(lines)

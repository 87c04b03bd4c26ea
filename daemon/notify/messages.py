"""What a notification says: the JSON document of an event, and its text (pure).

The document is what an outbound webhook receives; the subject and text (for mail, Teams and
Slack) are rendered from it by the target's templates, run sandboxed like the rules'. Text
from alerts is data: templates never compile it, and each transport escapes it for its own
markup (`daemon.notify.transports`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment


EVENT_WORDS = {
    "ticket.opened": "opened",
    "ticket.reopened": "reopened",
    "ticket.closed": "closed",
    "ticket.upstream_resolved": "resolved upstream",
    "alert.suppressed": "suppressed by maintenance",
    "channel.silent": "opened: a channel is silent",
    "test": "test",
}

DEFAULT_SUBJECT = (
    "[alertd] {% if ticket %}Ticket #{{ ticket.id }} {{ what }}: {{ ticket.title }}"
    "{% else %}Alert {{ what }}: {{ alert.message or alert.uid }}{% endif %}")
DEFAULT_TEXT = """\
{% if ticket -%}
Ticket #{{ ticket.id }} {{ what }}: {{ ticket.title }}
Customer: {{ ticket.customer or "-" }} / Site: {{ ticket.site or "-" }}
Device: {{ ticket.device or "-" }}
Priority: {{ ticket.priority or "-" }} / State: {{ ticket.state }}
{%- if details.closed_by %}
Closed by: {{ details.closed_by }}{% endif %}
{%- if details.left_open_because %}
Left open because {{ details.left_open_because }}{% endif %}
{%- if details.note %}
Note: {{ details.note }}{% endif %}
{%- else -%}
Alert {{ what }}{% if details.window %} ({{ details.window }}){% endif %}:
{{ alert.message or alert.uid }}
Customer: {{ alert.customer or "-" }} / Site: {{ alert.site or "-" }}
Device: {{ alert.device or "-" }}
{%- endif %}
Alert: {{ alert.source }} {{ alert.uid }}
{{ url }}"""

# What an event adds: who closed the ticket and with which note, why an upstream resolve left
# it open, the maintenance window that held an alert back, the silent channel.
DETAIL_KEYS = {"closed_by": None, "note": None, "left_open_because": None, "window": None,
               "channel": None, "last_input_at": None}
MAX_SUBJECT_CHARS = 200
MAX_TEXT_CHARS = 4000  # under Slack's and Teams' message limits, with room for the markup
_SPACE = re.compile(r"\s+")


class TemplateFailed(Exception):
    """A target's template could not be rendered with this event (its text says why)."""


def template_environment() -> SandboxedEnvironment:
    """The targets' templates' environment (jinja2 is loaded with the first target)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # StrictUndefined: a misspelt name fails the test send and `alertd check`, not silently.
    return SandboxedEnvironment(autoescape=False, undefined=StrictUndefined,
                                keep_trailing_newline=False)


@dataclass(frozen=True)
class Templates:
    subject: Any
    text: Any

    @classmethod
    def of(cls, subject: str, text: str) -> Templates:
        """Compile a target's templates (empty: alertd's own). Raises TemplateFailed."""
        from jinja2 import TemplateError

        env = template_environment()
        try:
            return cls(env.from_string(subject or DEFAULT_SUBJECT),
                       env.from_string(text or DEFAULT_TEXT))
        except TemplateError as err:
            raise TemplateFailed(f"template: {err}") from None

    def render(self, document: Mapping[str, Any]) -> tuple[str, str]:
        """(subject, text) of one notification's document: the subject on one line."""
        try:
            subject = self.subject.render(document)
            text = self.text.render(document)
        # Any error: a TemplateError, the sandbox's SecurityError, a filter given wrong data.
        except Exception as err:
            raise TemplateFailed(f"template: {type(err).__name__}: {err}") from None
        subject = _SPACE.sub(" ", subject).strip()[:MAX_SUBJECT_CHARS]
        return subject, text.strip()[:MAX_TEXT_CHARS]


def ticket_part(ticket: Mapping[str, Any], alert: Mapping[str, Any] | None, public_url: str
                ) -> dict[str, Any]:
    """The ticket as a notification shows it: names, not ids; the alert's own words where
    the ticket is not placed on synced records."""
    alert = {**(ticket.get("alert") or {}), **(alert or {})}
    return {
        "id": ticket["id"], "url": f"{public_url}/ui/tickets/{ticket['id']}",
        "title": ticket["summary"], "state": ticket["status"], "type": ticket["type"],
        "priority": ticket["priority"],
        "customer": ticket["customer"] or alert.get("customer"),
        "site": ticket["site"] or alert.get("site"),
        "device": ticket["asset"] or alert.get("device"),
        "opened_at": ticket["opened_at"], "closed_at": ticket["closed_at"],
        "closed_by": ticket["closed_by"], "occurrences": ticket.get("occurrences", 1),
        "alerts": [{"source": a["source"], "uid": a["uid"], "state": a["state"]}
                   for a in ticket.get("alerts", ())],
    }


def alert_part(alert: Mapping[str, Any] | None) -> dict[str, Any]:
    if alert is None:
        return {"id": None, "source": None, "uid": None, "message": None, "device": None,
                "site": None, "customer": None, "priority": None, "state": None}
    return {name: alert.get(name) for name in ("id", "source", "uid", "message", "device",
                                               "site", "customer", "priority", "state")}


def document(delivery_id: int, event: str, occurred_at: str, ticket: Mapping[str, Any] | None,
             alert: Mapping[str, Any] | None, details: Mapping[str, Any], public_url: str
             ) -> dict[str, Any]:
    """One notification as JSON (the webhook body, the templates' context)."""
    part = ticket_part(ticket, alert, public_url) if ticket is not None else None
    return {
        "id": delivery_id, "event": event, "what": EVENT_WORDS.get(event, event),
        "occurred_at": occurred_at, "ticket": part, "alert": alert_part(alert),
        # Every key always there: templates run with StrictUndefined.
        "details": {**DETAIL_KEYS, **details},
        # An alert without a ticket is listed with its window on the maintenance page.
        "url": part["url"] if part else f"{public_url}/ui/maintenance",
    }


MAX_DIGEST_LINE_CHARS = 120
MAX_DIGEST_ALERTS = 5  # per ticket, in a digest's documents (a single one lists up to 100)


def digest(documents: Sequence[Mapping[str, Any]], per_minute: int, public_url: str
           ) -> dict[str, Any]:
    """Many notifications to one target as one: its storm limit was reached. Its id is a
    digest of the row ids it carries: a receiver that drops ids it has seen drops a resent
    digest, never one carrying other rows (each also has its own id in `notifications`)."""
    ids = ",".join(str(doc["id"]) for doc in documents)
    head = (f"{len(documents)} notifications came faster than {per_minute} a minute; here "
            "they are together:")
    tail = f"{public_url}/ui/tickets"
    lines: list[str] = []
    budget = MAX_TEXT_CHARS - len(head) - len(tail) - 40  # room for "... and N more"
    for doc in documents:
        line = ("- " + (f"{doc['event']}: ticket #{doc['ticket']['id']} "
                        f"{doc['ticket']['title']}" if doc["ticket"]
                        else f"{doc['event']}: alert {doc['alert']['source']} "
                             f"{doc['alert']['uid']}"))[:MAX_DIGEST_LINE_CHARS]
        if len(line) + 1 > budget:
            break
        lines.append(line)
        budget -= len(line) + 1
    if len(lines) < len(documents):
        lines.append(f"- ... and {len(documents) - len(lines)} more")
    return {
        "id": "digest-" + sha256(ids.encode()).hexdigest()[:16],
        "event": "digest", "count": len(documents),
        "subject": f"[alertd] {len(documents)} notifications (over {per_minute} a minute)",
        "text": "\n".join([head, *lines, tail]), "url": tail,
        "notifications": [_slim(doc) for doc in documents],
    }


def _slim(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A notification as a digest carries it: its ticket's newest few alerts only."""
    if not doc["ticket"]:
        return dict(doc)
    return {**doc, "ticket": {**doc["ticket"],
                              "alerts": doc["ticket"]["alerts"][-MAX_DIGEST_ALERTS:]}}

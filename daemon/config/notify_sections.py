"""`[[notify]]`: who is told when alertd opens, reopens or closes a ticket (issue 17).

Each entry is one target: a signed outbound webhook, mail through an SMTP relay, or a Teams or
Slack incoming webhook. What is sent is queued in the outbox in the same transaction as the
change it tells of (`daemon.tickets.notices`) and sent by the outbox worker
(`daemon.notify`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from msgspec import Meta, field

from daemon.config.base import (
    LOOPBACK_HOSTS,
    UNREAD_SECRET,
    FieldError,
    MailAddress,
    Secret,
    Section,
)
from daemon.core.events import is_source_name

# What a target can ask for. `alert.suppressed`: a new alert's ticket held back by a
# maintenance window; `channel.silent`: a `[watch]` channel past its silence.
NotifyEvent = Literal["ticket.opened", "ticket.reopened", "ticket.closed",
                      "ticket.upstream_resolved", "alert.suppressed", "channel.silent"]
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def _https_or_loopback(key: str, url: str) -> None:
    """A target URL: https, or http to a loopback host (a local relay or a test receiver);
    the body carries ticket data and the URL of a chat webhook is itself a credential."""
    if url == UNREAD_SECRET:
        return
    parts = urlsplit(url)
    loopback = parts.hostname in LOOPBACK_HOSTS
    if not parts.hostname or parts.scheme not in ("https", "http") or (
            parts.scheme == "http" and not loopback):
        raise FieldError(key, "expected an https:// URL (http:// only to localhost)")


def _compiles(key: str, source: str) -> None:
    """A template is compiled here (unknown filters too) so that a mistake is reported with
    its line; jinja2 is loaded only for a target that has one."""
    if not source:
        return
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    try:
        SandboxedEnvironment().from_string(source)
    except TemplateSyntaxError as err:
        raise FieldError(key, f"template line {err.lineno}: {err.message}") from None
    except RecursionError:  # nested thousands deep: an answer, not a traceback
        raise FieldError(key, "template expressions nested too deeply") from None


class _Target(Section, tag_field="kind", kw_only=True):
    name: str
    events: Annotated[tuple[NotifyEvent, ...], Meta(min_length=1)]
    # Filters: every one given must match. Sources by name, customers by name and priorities
    # by the RMM's word for them, both without case.
    sources: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    # Jinja2 templates (sandboxed, like the rules'); empty: alertd's own text.
    subject: str = ""
    template: str = ""
    # Storm control: more messages than this in a minute to this target become one digest.
    storm_limit_per_minute: Annotated[int, Meta(ge=1, le=1000)] = 10
    timeout_s: Annotated[float, Meta(gt=0, le=120)] = 10.0

    @property
    def kind(self) -> str:
        """The target's `kind` key: "webhook", "teams", "slack" or "email"."""
        return str(type(self).__struct_config__.tag)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise FieldError("name", "a name is 1-64 lowercase letters, digits, '_', '.' or "
                             "'-', starting with a letter or digit")
        if len(set(self.events)) != len(self.events):
            raise FieldError("events", "an event is named twice")
        for source in self.sources:
            if not is_source_name(source):
                raise FieldError("sources", f"{source!r} is not a source name")
        _compiles("subject", self.subject)
        _compiles("template", self.template)


class WebhookTarget(_Target, tag="webhook", kw_only=True):
    """POST a JSON document, signed: `X-Alertd-Signature: sha256=<hex HMAC-SHA256 of the
    body>` with `secret`."""

    url: Annotated[str, Meta(min_length=1)]
    secret: Secret

    def __post_init__(self) -> None:
        super().__post_init__()
        _https_or_loopback("url", self.url)
        value = self.secret.get_secret_value()
        if value != UNREAD_SECRET and len(value) < 16:
            raise FieldError("secret", "a webhook secret has at least 16 characters")


class ChatTarget(_Target, kw_only=True):
    """A Teams or Slack incoming webhook: its URL is the credential (give it as `url_file`
    or `url_env`)."""

    url: Secret

    def __post_init__(self) -> None:
        super().__post_init__()
        _https_or_loopback("url", self.url.get_secret_value())


class TeamsTarget(ChatTarget, tag="teams", kw_only=True):
    """A Microsoft Teams incoming webhook."""


class SlackTarget(ChatTarget, tag="slack", kw_only=True):
    """A Slack incoming webhook."""


class EmailTarget(_Target, tag="email", kw_only=True):
    """Mail through an SMTP relay."""

    smtp_host: Annotated[str, Meta(min_length=1)]
    smtp_port: Annotated[int, Meta(ge=1, le=65535)] = 587
    # "starttls" (587), "tls" (implicit, 465) or "none" (a relay on this host only).
    security: Literal["starttls", "tls", "none"] = "starttls"
    # PEM file of the CA that signed the relay's certificate, when not a public one.
    ca_file: str = ""
    username: str = ""
    password: Secret | None = None
    mail_from: MailAddress = field(name="from")
    to: Annotated[tuple[MailAddress, ...], Meta(min_length=1)]

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.username) != (self.password is not None):
            raise ValueError("give both username and password, or neither")
        if (self.password is not None and self.security == "none"
                and self.smtp_host not in LOOPBACK_HOSTS):
            raise ValueError("a password is sent only over TLS: security = \"starttls\" or "
                             "\"tls\" (\"none\" only to a relay on localhost)")


NotifyTarget = WebhookTarget | TeamsTarget | SlackTarget | EmailTarget


def unique_names(targets: tuple[NotifyTarget, ...]) -> None:
    """Targets are named in the outbox and on the command line: each name once (raises
    ValueError)."""
    names = [target.name for target in targets]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"notify target names must be unique: {', '.join(twice)}")

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

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, SecretStr, field_validator, model_validator

from daemon.config.base import LOOPBACK_HOSTS, UNREAD_SECRET, MailAddress, Section
from daemon.core.events import is_source_name

# What a target can ask for. `alert.suppressed`: a new alert's ticket held back by a
# maintenance window; `channel.silent`: a `[watch]` channel past its silence.
NotifyEvent = Literal["ticket.opened", "ticket.reopened", "ticket.closed",
                      "ticket.upstream_resolved", "alert.suppressed", "channel.silent"]
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)
NOTIFY_KINDS = ("webhook", "teams", "slack", "email")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def _https_or_loopback(url: str) -> str:
    """A target URL: https, or http to a loopback host (a local relay or a test receiver);
    the body carries ticket data and the URL of a chat webhook is itself a credential."""
    if url == UNREAD_SECRET:
        return url
    parts = urlsplit(url)
    loopback = parts.hostname in LOOPBACK_HOSTS
    if not parts.hostname or parts.scheme not in ("https", "http") or (
            parts.scheme == "http" and not loopback):
        raise ValueError("expected an https:// URL (http:// only to localhost)")
    return url


class _Target(Section):
    name: str
    events: tuple[NotifyEvent, ...] = Field(min_length=1)
    # Filters: every one given must match. Sources by name, customers by name and priorities
    # by the RMM's word for them, both without case.
    sources: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    # Jinja2 templates (sandboxed, like the rules'); empty: alertd's own text.
    subject: str = ""
    template: str = ""
    # Storm control: more messages than this in a minute to this target become one digest.
    storm_limit_per_minute: int = Field(default=10, ge=1, le=1000)
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("subject", "template")
    @classmethod
    def _template(cls, source: str) -> str:
        try:  # compiled here (unknown filters too) so a mistake is reported with the line
            SandboxedEnvironment().from_string(source)
        except TemplateSyntaxError as err:
            raise ValueError(f"template line {err.lineno}: {err.message}") from None
        return source

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError("a name is 1-64 lowercase letters, digits, '_', '.' or '-', "
                             "starting with a letter or digit")
        return name

    @field_validator("sources")
    @classmethod
    def _sources(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        for source in sources:
            if not is_source_name(source):
                raise ValueError(f"{source!r} is not a source name")
        return sources

    @field_validator("events")
    @classmethod
    def _events(cls, events: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(events)) != len(events):
            raise ValueError("an event is named twice")
        return events


class WebhookTarget(_Target):
    """POST a JSON document, signed: `X-Alertd-Signature: sha256=<hex HMAC-SHA256 of the
    body>` with `secret`."""

    kind: Literal["webhook"]
    url: Annotated[str, Field(min_length=1)]
    secret: SecretStr

    _url = field_validator("url")(_https_or_loopback)

    @field_validator("secret")
    @classmethod
    def _strong(cls, secret: SecretStr) -> SecretStr:
        value = secret.get_secret_value()
        if value != UNREAD_SECRET and len(value) < 16:
            raise ValueError("a webhook secret has at least 16 characters")
        return secret


class ChatTarget(_Target):
    """A Teams or Slack incoming webhook: its URL is the credential (give it as `url_file`
    or `url_env`)."""

    kind: Literal["teams", "slack"]
    url: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, url: SecretStr) -> SecretStr:
        _https_or_loopback(url.get_secret_value())
        return url


class EmailTarget(_Target):
    """Mail through an SMTP relay."""

    kind: Literal["email"]
    smtp_host: str = Field(min_length=1)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    # "starttls" (587), "tls" (implicit, 465) or "none" (a relay on this host only).
    security: Literal["starttls", "tls", "none"] = "starttls"
    # PEM file of the CA that signed the relay's certificate, when not a public one.
    ca_file: str = ""
    username: str = ""
    password: SecretStr | None = None
    mail_from: MailAddress = Field(alias="from")
    to: tuple[MailAddress, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _auth(self) -> EmailTarget:
        if bool(self.username) != (self.password is not None):
            raise ValueError("give both username and password, or neither")
        if (self.password is not None and self.security == "none"
                and self.smtp_host not in LOOPBACK_HOSTS):
            raise ValueError("a password is sent only over TLS: security = \"starttls\" or "
                             "\"tls\" (\"none\" only to a relay on localhost)")
        return self


NotifyTarget = Annotated[WebhookTarget | ChatTarget | EmailTarget, Field(discriminator="kind")]


def unique_names(targets: tuple[WebhookTarget | ChatTarget | EmailTarget, ...]
                 ) -> tuple[WebhookTarget | ChatTarget | EmailTarget, ...]:
    """Targets are named in the outbox and on the command line: each name once."""
    names = [target.name for target in targets]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"notify target names must be unique: {', '.join(twice)}")
    return targets

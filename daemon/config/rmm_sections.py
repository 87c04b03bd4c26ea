"""Sections of the RMMs: `[datto]`, `[syncro]` (API, webhooks, polling) and `[outbox]`."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta
from msgspec.structs import force_setattr

from daemon.config.base import UNREAD_SECRET, FieldError, MailAddress, Secret, Section

# Datto RMM's platforms: `[datto] api_url = "merlot"` means https://merlot-api.centrastage.net.
DATTO_PLATFORMS = ("pinotage", "merlot", "concord", "vidal", "zinfandel", "syrah")

# Where a Datto webhook `fields` entry can go (`[datto] webhook_fields = { "<key>" = "<target>" }`).
FieldTarget = Literal["summary", "details", "type", "priority", "device", "site", "customer"]


# A ticket's type column holds 64 characters; one line.
TicketType = Annotated[str, Meta(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _secret_checks(current: Secret | None, previous: Secret | None, names: str) -> None:
    """A blank secret would let a blank credential in; a previous secret equal to the
    current one would make a rotation look finished that never happened."""
    for secret in (current, previous):
        if secret is not None and not secret.get_secret_value().strip():
            raise ValueError(f"{names}: a secret must not be empty (remove the key instead)")
    if (current is not None and previous is not None
            and current.get_secret_value() == previous.get_secret_value() != UNREAD_SECRET):
        raise ValueError(f"{names}: the previous secret is the current one")


class DattoConfig(Section, kw_only=True):
    api_url: str = ""
    api_key: Secret | None = None
    api_secret: Secret | None = None
    webhook_secret: Secret | None = None
    # While the secret is rotated: the one being replaced, accepted as well until removed.
    previous_webhook_secret: Secret | None = None
    # A key of the webhook body's free `fields` object -> the ticket field it fills.
    webhook_fields: dict[str, FieldTarget] = {}
    # The type of tickets made by webhook and by polling (Halo's "Default Ticket Type"),
    # unless a mapped webhook field gives one; "" is "alert". Email rules set their own.
    ticket_type: TicketType = ""
    # Seconds between polls of the open alerts (0: off). Halo's integration polls about every
    # 15 minutes; the reads cost one request per 250 alerts.
    poll_interval_s: Annotated[float, Meta(ge=0)] = 0.0
    # Halo's "From Address": Datto alert mail (mail a rule with source = "datto" decides) is
    # taken only from these senders; other senders' is kept as a rejected delivery. Empty:
    # any sender (Datto sets the sender per account: there is no one default to assume).
    email_from: tuple[MailAddress, ...] = ()

    @property
    def api_configured(self) -> bool:
        return bool(self.api_url and self.api_key and self.api_secret)

    def __post_init__(self) -> None:
        if (self.api_url and self.api_url not in DATTO_PLATFORMS
                and not self.api_url.startswith(("https://", "http://"))):
            raise FieldError("api_url", "expected a platform name "
                             f"({', '.join(DATTO_PLATFORMS)}) or a full API URL")
        _secret_checks(self.webhook_secret, self.previous_webhook_secret,
                       "webhook_secret, previous_webhook_secret")
        force_setattr(self, "email_from",
                      tuple(MailAddress(address.casefold()) for address in self.email_from))


class SyncroConfig(Section, kw_only=True):
    api_url: str = ""
    api_key: Secret | None = None
    webhook_auth: Literal["none", "token"] = "token"
    webhook_token: Secret | None = None
    # The type of tickets made by webhook and by polling (Halo's "New Alert Ticket Type");
    # "" is "alert". Email rules set their own.
    ticket_type: TicketType = ""
    # While the token is rotated: the one being replaced, accepted as well until removed.
    previous_webhook_token: Secret | None = None
    # Seconds between polls of the active alerts (0: off), with the API key set. An alert a
    # technician clears by hand in Syncro sends no notification: polling is what closes its
    # ticket (docs/operations.md). Off by default: turned on, its first poll raises every
    # active alert alertd has not seen, which an upgrade must not do unasked.
    poll_interval_s: Annotated[float, Meta(ge=0)] = 0.0
    # Re-read each webhook's alert by the API and trust its `resolved` flag over the body's.
    verify_webhooks: bool = False

    @property
    def api_configured(self) -> bool:
        return bool(self.api_url and self.api_key)

    def __post_init__(self) -> None:
        if self.api_url and not self.api_url.startswith(("https://", "http://")):
            raise FieldError("api_url", "expected the API URL, e.g. "
                             "https://example.syncromsp.com/api/v1")
        _secret_checks(self.webhook_token, self.previous_webhook_token,
                       "webhook_token, previous_webhook_token")


class OutboxConfig(Section, kw_only=True):
    """How alertd sends what it owes the RMMs (resolve calls after an agent closes a ticket)."""

    max_attempts: Annotated[int, Meta(ge=1, le=1000)] = 10
    retry_base_s: Annotated[float, Meta(gt=0)] = 30.0
    retry_max_s: Annotated[float, Meta(gt=0)] = 3600.0
    lease_s: Annotated[float, Meta(gt=0)] = 300.0
    interval_s: Annotated[float, Meta(gt=0)] = 30.0
    concurrency: Annotated[int, Meta(ge=1, le=64)] = 4


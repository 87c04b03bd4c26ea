"""Sections of the RMMs: `[datto]`, `[syncro]` (API, webhooks, polling) and `[outbox]`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from daemon.config.base import UNREAD_SECRET, MailAddress, Section

# Datto RMM's platforms: `[datto] api_url = "merlot"` means https://merlot-api.centrastage.net.
DATTO_PLATFORMS = ("pinotage", "merlot", "concord", "vidal", "zinfandel", "syrah")

# Where a Datto webhook `fields` entry can go (`[datto] webhook_fields = { "<key>" = "<target>" }`).
FieldTarget = Literal["summary", "details", "type", "priority", "device", "site", "customer"]


# A ticket's type column holds 64 characters; one line.
TicketType = Annotated[str, Field(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _secret_checks(current: SecretStr | None, previous: SecretStr | None, names: str) -> None:
    """A blank secret would let a blank credential in; a previous secret equal to the
    current one would make a rotation look finished that never happened."""
    for secret in (current, previous):
        if secret is not None and not secret.get_secret_value().strip():
            raise ValueError(f"{names}: a secret must not be empty (remove the key instead)")
    if (current is not None and previous is not None
            and current.get_secret_value() == previous.get_secret_value() != UNREAD_SECRET):
        raise ValueError(f"{names}: the previous secret is the current one")


class DattoConfig(Section):
    api_url: str = ""
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # While the secret is rotated: the one being replaced, accepted as well until removed.
    previous_webhook_secret: SecretStr | None = None
    # A key of the webhook body's free `fields` object -> the ticket field it fills.
    webhook_fields: dict[str, FieldTarget] = {}
    # The type of tickets made by webhook and by polling (Halo's "Default Ticket Type"),
    # unless a mapped webhook field gives one; "" is "alert". Email rules set their own.
    ticket_type: TicketType = ""
    # Seconds between polls of the open alerts (0: off). Halo's integration polls about every
    # 15 minutes; the reads cost one request per 250 alerts.
    poll_interval_s: float = Field(default=0.0, ge=0)
    # Halo's "From Address": Datto alert mail (mail a rule with source = "datto" decides) is
    # taken only from these senders; other senders' is kept as a rejected delivery. Empty:
    # any sender (Datto sets the sender per account: there is no one default to assume).
    email_from: tuple[MailAddress, ...] = ()

    @property
    def api_configured(self) -> bool:
        return bool(self.api_url and self.api_key and self.api_secret)

    @field_validator("email_from")
    @classmethod
    def _without_case(cls, addresses: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(address.casefold() for address in addresses)

    @model_validator(mode="after")
    def _secrets(self) -> DattoConfig:
        _secret_checks(self.webhook_secret, self.previous_webhook_secret,
                       "webhook_secret, previous_webhook_secret")
        return self

    @field_validator("api_url")
    @classmethod
    def _platform_or_url(cls, value: str) -> str:
        if value and value not in DATTO_PLATFORMS and not value.startswith(("https://", "http://")):
            raise ValueError(
                f"expected a platform name ({', '.join(DATTO_PLATFORMS)}) or a full API URL"
            )
        return value


class SyncroConfig(Section):
    api_url: str = ""
    api_key: SecretStr | None = None
    webhook_auth: Literal["none", "token"] = "token"
    webhook_token: SecretStr | None = None
    # The type of tickets made by webhook and by polling (Halo's "New Alert Ticket Type");
    # "" is "alert". Email rules set their own.
    ticket_type: TicketType = ""
    # While the token is rotated: the one being replaced, accepted as well until removed.
    previous_webhook_token: SecretStr | None = None
    # Seconds between polls of the active alerts (0: off), with the API key set. An alert a
    # technician clears by hand in Syncro sends no notification: polling is what closes its
    # ticket (docs/operations.md). Off by default: turned on, its first poll raises every
    # active alert alertd has not seen, which an upgrade must not do unasked.
    poll_interval_s: float = Field(default=0.0, ge=0)
    # Re-read each webhook's alert by the API and trust its `resolved` flag over the body's.
    verify_webhooks: bool = False

    @field_validator("api_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("expected the API URL, e.g. https://example.syncromsp.com/api/v1")
        return value

    @property
    def api_configured(self) -> bool:
        return bool(self.api_url and self.api_key)

    @model_validator(mode="after")
    def _secrets(self) -> SyncroConfig:
        _secret_checks(self.webhook_token, self.previous_webhook_token,
                       "webhook_token, previous_webhook_token")
        return self


class OutboxConfig(Section):
    """How alertd sends what it owes the RMMs (resolve calls after an agent closes a ticket)."""

    max_attempts: int = Field(default=10, ge=1, le=1000)
    retry_base_s: float = Field(default=30.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)
    lease_s: float = Field(default=300.0, gt=0)
    interval_s: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=64)


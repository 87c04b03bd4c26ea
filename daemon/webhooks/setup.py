"""What `alertd webhook-config` prints: the URL and payloads to paste into Datto RMM or Syncro.

Pure: built from the configuration only. The output contains the shared secret (it must be
pasted into the vendor's settings), so it is printed on request and never logged.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from daemon.config import Config
from daemon.webhooks import datto
from daemon.webhooks.routes import DATTO_PATH, SYNCRO_PATH


class WebhookNotConfigured(Exception):
    """The webhook cannot be set up yet; the message says what to add to the config."""


@dataclass(frozen=True)
class WebhookSetup:
    vendor: str
    url: str
    settings: dict[str, Any]
    warnings: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "url": self.url, **self.settings,
                "warnings": self.warnings}


def _warnings(config: Config) -> list[str]:
    if config.http.public_url:
        return []
    return [f"[http] public_url is not set: this URL is the listen address "
            f"{config.http.listen}, which the vendor's cloud cannot reach. Set public_url to "
            "the HTTPS address of your reverse proxy."]


def _suggestion(section: str, key: str) -> str:
    return (f"[{section}] {key} is not set. Put a long random secret in a file readable by "
            f"alertd only and add to the config:\n  [{section}]\n  {key}_file = "
            f"\"/etc/alertd/secrets/{section}-webhook\"\n"
            f"for example this freshly generated one: {secrets.token_urlsafe(32)}")


def datto_setup(config: Config) -> WebhookSetup:
    if config.datto.webhook_secret is None:
        raise WebhookNotConfigured(_suggestion("datto", "webhook_secret"))
    secret = config.datto.webhook_secret.get_secret_value()
    return WebhookSetup(
        vendor="datto",
        url=config.public_url.rstrip("/") + DATTO_PATH,
        settings={
            "content_type": "application/json",
            "alert_raised_payload": datto.payload_template(resolved=False, secret=secret),
            "alert_resolved_payload": datto.payload_template(resolved=True, secret=secret),
        },
        warnings=_warnings(config),
    )


def syncro_setup(config: Config) -> WebhookSetup:
    url = config.public_url.rstrip("/") + SYNCRO_PATH
    warnings = _warnings(config)
    polling = config.syncro.api_configured and config.syncro.poll_interval_s > 0
    if polling:
        manual = ("An alert a technician clears by hand in Syncro sends no notification: "
                  f"polling closes its ticket (every {config.syncro.poll_interval_s:g} s, for "
                  "alerts alertd has had open for 5 minutes or more).")
    else:
        manual = "An alert a technician clears by hand in Syncro sends no notification."
        warnings.append("alerts cleared by hand in Syncro keep their tickets open until "
                        "closed in alertd: turn on polling ([syncro] api_url, api_key and "
                        "poll_interval_s = 300) to close them.")
    if config.syncro.webhook_auth == "token":
        if config.syncro.webhook_token is None:
            raise WebhookNotConfigured(_suggestion("syncro", "webhook_token"))
        url += "?token=" + quote(config.syncro.webhook_token.get_secret_value(), safe="")
    else:
        warnings.append("[syncro] webhook_auth = \"none\": anyone who can reach this URL can "
                        "raise and resolve Syncro alerts in alertd.")
    return WebhookSetup(
        vendor="syncro", url=url,
        settings={"events": ["RMM Alert - was created", "RMM Alert - was auto-resolved"],
                  "manual_resolves": manual},
        warnings=warnings)


def format_setup(setup: WebhookSetup) -> str:
    """Human-readable instructions with the values to paste."""
    lines: list[str] = []
    if setup.vendor == "datto":
        lines += [
            "Datto RMM webhook for alertd",
            "Where: the account's global webhook settings, or a monitor's Response section.",
            "",
            f"URL:          {setup.url}",
            f"Content type: {setup.settings['content_type']}",
            "",
            "Alert raised payload:",
            json.dumps(setup.settings["alert_raised_payload"], indent=2),
            "",
            "Alert resolved payload:",
            json.dumps(setup.settings["alert_resolved_payload"], indent=2),
            "",
            "The \"state\" field is the shared secret from [datto] webhook_secret: keep these "
            "payloads private.",
            "Datto's test button sends the placeholders unfilled; alertd answers it 422 "
            "(\"this is Datto's test send\") and stores no alert: that answer means the URL "
            "and the secret work.",
        ]
    else:
        lines += [
            "Syncro RMM alert notifications for alertd",
            "Where: Notification Center, in a Notification Set: a webhook for the events "
            "below.",
            "",
            f"URL:    {setup.url}",
            "Events: " + ", ".join(setup.settings["events"]),
            "",
            setup.settings["manual_resolves"],
        ]
        if "?token=" in setup.url:
            lines.append("The URL carries the token from [syncro] webhook_token: keep it "
                         "private.")
    lines += [f"\nWARNING: {w}" for w in setup.warnings]
    return "\n".join(lines)

"""Webhook samples and secrets shared by the webhook tests of the unit and component tiers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.api_client import TOKEN

SAMPLE = json.loads((Path(__file__).parent / "fixtures/webhooks/syncro-rmm-alert-webhook.json")
                    .read_text())
SYNCRO_TOKEN = "syncro-url-token-4d9b2c7e1a"
DATTO_SECRET = "datto-shared-secret-8f3e6a1b"
UID = "5e0c8b1a-7d2f-4c3e-9a6b-1f2e3d4c5b6a"

CONFIG = f"""
[api]
tokens = ["{TOKEN}"]
[syncro]
webhook_token = "{SYNCRO_TOKEN}"
[datto]
webhook_secret = "{DATTO_SECRET}"
webhook_fields = {{ "Client" = "customer", "Ticket type" = "type" }}
"""


def syncro_body(resolved: Any = False, **attributes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SAMPLE)
    body["attributes"]["resolved"] = resolved
    body["attributes"].update(attributes)
    return body

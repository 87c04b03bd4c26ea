"""Datto RMM webhooks: the JSON contract alertd defines and its interpretation (pure, no I/O).

Datto posts a body the MSP writes in the monitor's (or the account's) webhook settings, with
`[variable]` placeholders filled in. alertd defines that body (`raised_payload` /
`resolved_payload`, printed by `alertd webhook-config datto`):

- `alert_uid` (required): `[alert_uid]`, the alert GUID; the same key as the `Alert{...}` of the
  email copy, so both channels name one alert.
- `alert_resolved` (required): "false" in the raised payload, "true" in the resolved one.
- `state`: the shared secret (checked by the route, never stored).
- optional values that fill ticket fields, and a free `fields` object mapped to ticket fields
  by `[datto] webhook_fields`.

Datto's "test" button sends the body with the placeholders left as they are (`[alert_uid]`);
that is refused with an explanation (`TestSend`), never stored as an alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from daemon.config.rmm_sections import FieldTarget
from daemon.core.events import (
    GUID,
    JSON_SPACE,
    AlertEvent,
    Interpretation,
    RawDelivery,
    TicketFields,
    Unprocessable,
    flag_text,
    json_payload,
    normalize_uid,
)
from daemon.core.lifecycle import AlertAction

SOURCE = "datto"
SECRET_FIELD = "state"  # noqa: S105 - the name of the field that carries the secret

# Payload key -> the Datto variable that fills it. Order is the order of the printed template.
VARIABLES = {
    "alert_uid": "[alert_uid]",
    "alert_message": "[alert_message]",
    "alert_priority": "[alert_priority]",
    "alert_category": "[alert_category]",
    "device_hostname": "[device_hostname]",
    "device_uid": "[device_uid]",
    "site_name": "[site_name]",
    "site_uid": "[site_uid]",
    "platform": "[platform]",
}
# Further Datto variables an MSP may add; stored and shown in the ticket details.
OPTIONAL_VARIABLES = ("alert_type", "device_ip", "timestamp", "last_user")
ACCEPTED_KEYS = frozenset({*VARIABLES, "alert_resolved", SECRET_FIELD, "fields",
                           *OPTIONAL_VARIABLES})


_PLACEHOLDER = re.compile(r"^\[[A-Za-z_]+\]$")
# The rules below are the ones the OpenAPI document gives the body (DattoWebhook in
# daemon.http.openapi); tests/unit/test_webhook_parsers.py holds the two to one contract.
_VALUE_LIMIT = 10_000  # characters of a value as sent
_UID_LIMIT = 100  # characters of alert_uid as sent, spaces included


class TestSend(Unprocessable):
    """Datto's "test" button: the placeholders arrived unfilled."""


def payload_template(resolved: bool, secret: str) -> dict[str, Any]:
    """The body to paste into Datto: `resolved=False` for "alert raised", True for resolved."""
    return {"alert_uid": VARIABLES["alert_uid"],
            "alert_resolved": "true" if resolved else "false",
            SECRET_FIELD: secret,
            **{key: value for key, value in VARIABLES.items() if key != "alert_uid"}}


def without_secret(body: Any) -> Any:
    """The body as stored: the shared secret removed (it must not sit in the database)."""
    if isinstance(body, dict) and SECRET_FIELD in body:
        return {key: value for key, value in body.items() if key != SECRET_FIELD}
    return body


def _text(body: dict[str, Any], key: str) -> str | None:
    """A Datto value as text; a placeholder Datto could not fill (`[last_user]`) is absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise Unprocessable(f"'{key}' must be a string, got a JSON {type(value).__name__}")
    if len(value) > _VALUE_LIMIT:
        raise Unprocessable(f"'{key}' is longer than {_VALUE_LIMIT} characters")
    value = value.strip()
    if not value or _PLACEHOLDER.match(value):
        return None
    return value


def _resolved(body: dict[str, Any]) -> bool:
    value = body.get("alert_resolved")
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and (flag := flag_text(value)) is not None:
        return flag
    if value is None:
        raise Unprocessable("'alert_resolved' is missing: it is \"false\" in the alert-raised "
                            "payload and \"true\" in the alert-resolved one "
                            "(see `alertd webhook-config datto`)")
    raise Unprocessable(f"'alert_resolved' must be \"true\" or \"false\", got "
                        f"{json.dumps(value)[:40]}")


def _fields(body: dict[str, Any]) -> dict[str, str]:
    fields = body.get("fields")
    if fields is None:
        return {}
    if not isinstance(fields, dict):
        raise Unprocessable("'fields' must be a JSON object of names to text values")
    out: dict[str, str] = {}
    for name, value in fields.items():
        if isinstance(value, dict | list):
            raise Unprocessable(f"'fields.{name}' must be a text value")
        text = _text(fields, name)
        if text is not None:
            out[str(name)] = text
    return out


def parse_datto_webhook(body: Any, field_map: Mapping[str, FieldTarget]) -> AlertEvent:
    """The event a Datto webhook body (secret already removed) carries.

    Raises `TestSend` for Datto's test button and `Unprocessable` with the reason otherwise.
    """
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object (see `alertd webhook-config datto`)")
    unknown = sorted(set(body) - ACCEPTED_KEYS)
    if unknown:
        raise Unprocessable(f"unknown field(s): {', '.join(unknown)}; put extra values under "
                            "'fields' (accepted: " + ", ".join(sorted(ACCEPTED_KEYS)) + ")")
    raw_uid = body.get("alert_uid")
    if isinstance(raw_uid, str) and _PLACEHOLDER.match(raw_uid.strip()):
        raise TestSend(f"this is Datto's test send: the placeholders were not filled in "
                       f"(alert_uid is literally {raw_uid.strip()!r}); the webhook reached "
                       "alertd and authenticated, and no alert was stored. Real alerts "
                       "carry the alert's GUID.")
    if raw_uid is None or (isinstance(raw_uid, str) and not raw_uid.strip()):
        raise Unprocessable("'alert_uid' is missing: set it to [alert_uid]")
    if not isinstance(raw_uid, str):
        raise Unprocessable(f"'alert_uid' must be a string (the alert GUID), got a JSON "
                            f"{type(raw_uid).__name__}")
    if len(raw_uid) > _UID_LIMIT or not GUID.match(raw_uid.strip(JSON_SPACE)):
        raise Unprocessable(f"'alert_uid' must be a Datto alert GUID, got "
                            f"{json.dumps(raw_uid[:60])}")
    action = AlertAction.RESOLVE if _resolved(body) else AlertAction.RAISE
    values = {key: _text(body, key) for key in (*VARIABLES, *OPTIONAL_VARIABLES)}
    extra = _fields(body)

    mapped: dict[FieldTarget, str] = {}
    unmapped: list[str] = []
    for name, value in extra.items():
        target = field_map.get(name)
        if target is None:
            unmapped.append(f"{name}: {value}")
        else:
            mapped[target] = value

    detail_lines = [values["alert_message"] or ""]
    for label, key in (("Category", "alert_category"), ("Type", "alert_type"),
                       ("Priority", "alert_priority"), ("Device", "device_hostname"),
                       ("Device IP", "device_ip"), ("Site", "site_name"),
                       ("Last user", "last_user"), ("Platform", "platform"),
                       ("Time", "timestamp")):
        if values[key]:
            detail_lines.append(f"{label}: {values[key]}")
    detail_lines += unmapped
    details = "\n".join(line for line in detail_lines if line)

    return AlertEvent(
        source=SOURCE,
        uid=normalize_uid(SOURCE, raw_uid),
        action=action,
        device=mapped.get("device") or values["device_hostname"],
        site=mapped.get("site") or values["site_name"],
        customer=mapped.get("customer"),
        priority=mapped.get("priority") or values["alert_priority"],
        message=values["alert_message"],
        device_ref=values["device_uid"],
        # Which check raised it: with the device, its condition (daemon.core.conditions).
        condition=" / ".join(kind for key in ("alert_category", "alert_type")
                             if (kind := values[key])) or None,
        ticket=TicketFields(type=mapped.get("type"), summary=mapped.get("summary"),
                            details=mapped.get("details") or details),
    )


def datto_interpreter(field_map: Mapping[str, FieldTarget]
                      ) -> Callable[[RawDelivery], Interpretation]:
    """Interpreter of stored Datto webhook deliveries (channel webhook, source datto)."""
    def interpret(delivery: RawDelivery) -> Interpretation:
        event = parse_datto_webhook(json_payload(delivery), field_map)
        return Interpretation(events=(event,), trace={"interpreter": "datto_webhook"})
    return interpret

"""Syncro RMM-alert notifications (Notification Center webhooks): interpretation, pure.

The body is `{"text", "html", "link", "attributes"}` where `attributes` is the alert record
enriched with the full `customer` and `asset` objects (../shared/rmm-facts.md). There is no
event-type field: raised vs resolved is `attributes.resolved` (a boolean or the string
"true"/"false"), or "auto resolved" in the description.

`asset.properties` can hold remote-access passwords: `stored_form` keeps only the keys alertd
needs (`ASSET_PROPERTY_KEYS`) and drops the customer's custom fields, before anything is stored.
"""

from __future__ import annotations

import json
import re
from typing import Any

from daemon.core.events import (
    JSON_SPACE,
    MAX_ID,
    AlertEvent,
    Interpretation,
    RawDelivery,
    TicketFields,
    Unprocessable,
    flag_text,
    json_payload,
)
from daemon.core.lifecycle import AlertAction

SOURCE = "syncro"

# asset.properties keys kept (the rest can be secrets); nested dicts list their kept keys.
ASSET_PROPERTY_KEYS: dict[str, Any] = {
    "device_name": None, "manufacturer": None, "model": None, "os": None,
    "kabuto_information": {
        "last_user": None,
        "general": {"name": None, "manufacturer": None, "model": None,
                    "serial_number": None, "form_factor": None, "domain": None},
        "os": {"name": None, "build": None},
    },
}
# Added by the route when `[syncro] verify_webhooks` is on: {"resolved": bool} as
# `GET /rmm_alerts/{id}` reported it; it decides over the body's own flag.
VERIFIED_KEY = "alertd_verified"
# The rules below are the ones the OpenAPI document gives the body (SyncroNotification in
# daemon.http.openapi); tests/unit/test_webhook_parsers.py holds the two to one contract.
# An alert id is a positive whole number of at most 18 digits (leading zeros aside).
_ID = re.compile(r"0*[1-9][0-9]{0,17}")
_LINK_ID = re.compile(r"/rmm_alerts/(0*[1-9][0-9]{0,17})/?\Z")


def _whitelist(value: Any, keys: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        return None
    kept: dict[str, Any] = {}
    for key, nested in keys.items():
        if key not in value:
            continue
        if nested is None:
            if not isinstance(value[key], dict | list):  # a scalar where a scalar belongs
                kept[key] = value[key]
        else:
            inner = _whitelist(value[key], nested)
            if inner is not None:
                kept[key] = inner
    return kept


def stored_form(body: Any) -> Any:
    """What alertd stores of a Syncro notification: everything except the asset's property
    blob (only `ASSET_PROPERTY_KEYS`), the customer's custom fields, and the html copy of
    `text`."""
    if not isinstance(body, dict):
        return body
    # `html` duplicates `text`; the verification key is alertd's own, never the sender's.
    stored = {key: value for key, value in body.items() if key not in ("html", VERIFIED_KEY)}
    attributes = stored.get("attributes")
    if isinstance(attributes, dict):
        attributes = dict(attributes)
        asset = attributes.get("asset")
        if isinstance(asset, dict):
            asset = {key: value for key, value in asset.items() if key != "rmm_store"}
            if "properties" in asset:
                asset["properties"] = _whitelist(asset["properties"], ASSET_PROPERTY_KEYS)
            attributes["asset"] = asset
        customer = attributes.get("customer")
        if isinstance(customer, dict) and "properties" in customer:
            attributes["customer"] = {key: value for key, value in customer.items()
                                      if key != "properties"}
        stored["attributes"] = attributes
    return stored


def _id_text(value: Any) -> str | None:
    """A record id as text (Syncro ids are integers, sometimes sent as strings)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() or None if isinstance(value, str) else None


def _alert_id(body: dict[str, Any], attributes: dict[str, Any]) -> str:
    """`attributes.id`, or when it is absent or null, the id at the end of `link`."""
    raw = attributes.get("id")
    if isinstance(raw, float) and raw.is_integer():  # 42.0 is the number 42 (JSON Schema)
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw <= MAX_ID:
        return str(raw)
    if isinstance(raw, str) and _ID.fullmatch(raw.strip(JSON_SPACE)):
        return raw.strip(JSON_SPACE)
    if raw is not None:  # a wrong id is refused, not replaced by the link's
        raise Unprocessable(f"'attributes.id' must be a whole number from 1 to {MAX_ID}, got "
                            f"{json.dumps(raw)[:40]}")
    link = body.get("link")
    if isinstance(link, str):
        match = _LINK_ID.search(link.strip(JSON_SPACE))
        if match:
            return match.group(1)
    raise Unprocessable("no alert id: neither 'attributes.id' nor a 'link' ending in "
                        "/rmm_alerts/<id>")


def _resolved(attributes: dict[str, Any]) -> bool:
    value = attributes.get("resolved")
    if isinstance(value, bool):
        if value:
            return True
    elif isinstance(value, str) and (flag := flag_text(value)) is not None:
        if flag:
            return True
    elif value is not None:
        raise Unprocessable(f"'attributes.resolved' must be true or false, got "
                            f"{json.dumps(value)[:40]}")
    properties = attributes.get("properties")
    descriptions = [attributes.get("description"),
                    properties.get("description") if isinstance(properties, dict) else None]
    return any(isinstance(d, str) and "auto resolved" in d.lower() for d in descriptions)


def _str(mapping: Any, key: str) -> str | None:
    if not isinstance(mapping, dict):
        return None
    value = mapping.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _asset_line(asset: Any) -> str | None:
    name, kind = _str(asset, "name"), _str(asset, "asset_type")
    if name is None:
        return None
    return f"Asset: {name} ({kind})" if kind else f"Asset: {name}"


def alert_id_of(body: Any) -> str | None:
    """The alert id a notification names, if any."""
    if not isinstance(body, dict) or not isinstance(body.get("attributes"), dict):
        return None
    try:
        return _alert_id(body, body["attributes"])
    except Unprocessable:
        return None


def parse_syncro_webhook(body: Any) -> AlertEvent:
    """The event a Syncro RMM-alert notification carries; raises `Unprocessable`."""
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object (a Syncro RMM alert notification)")
    attributes = body.get("attributes")
    if not isinstance(attributes, dict):
        raise Unprocessable("'attributes' (the alert record) is missing: is this an RMM alert "
                            "notification?")
    uid = _alert_id(body, attributes)
    verified = body.get(VERIFIED_KEY)
    if isinstance(verified, dict) and isinstance(verified.get("resolved"), bool):
        resolved = verified["resolved"]  # the API's own record, read on arrival
    else:
        resolved = _resolved(attributes)
    action = AlertAction.RESOLVE if resolved else AlertAction.RAISE
    properties = attributes.get("properties")
    asset, customer = attributes.get("asset"), attributes.get("customer")
    description = _str(attributes, "description") or _str(properties, "description")
    output = _str(attributes, "formatted_output") or _str(properties, "formatted_output")
    device = _str(attributes, "computer_name") or _str(asset, "name")
    customer_name = (_str(customer, "business_then_name") or _str(customer, "business_name")
                     or _str(customer, "fullname"))
    # One line: clamp_event joins the lines of a name sent with a line break.
    summary = ": ".join(p for p in (device, description) if p) or f"Syncro RMM alert {uid}"
    detail_lines = [line for line in (
        description, output,
        f"Customer: {customer_name}" if customer_name else None,
        _asset_line(asset),
        f"Syncro: {body['link']}" if isinstance(body.get("link"), str) else None,
    ) if line]
    return AlertEvent(
        source=SOURCE,
        uid=uid,
        action=action,
        device=device,
        customer=customer_name,
        message=output or description,
        device_ref=_id_text(attributes.get("asset_id")) or _id_text(
            asset.get("id") if isinstance(asset, dict) else None),
        condition=_str(properties, "trigger"),  # which check: with the asset, its condition
        ticket=TicketFields(summary=summary[:500],
                            details="\n".join(detail_lines)),
    )


def interpret_syncro_delivery(delivery: RawDelivery) -> Interpretation:
    """Interpreter of stored Syncro webhook deliveries (channel webhook, source syncro)."""
    event = parse_syncro_webhook(json_payload(delivery))
    return Interpretation(events=(event,), trace={"interpreter": "syncro_webhook"})

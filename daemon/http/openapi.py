"""The OpenAPI 3.1 document of the JSON API, served at /api/openapi.json.

Written by hand next to the handlers; tests/test_http_api.py validates real responses against
it and checks that every route is documented, so it cannot drift silently.
"""

from __future__ import annotations

from typing import Any

from daemon import __version__


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
INT = {"type": "integer"}
TIME = {"type": "string", "format": "date-time"}
N_STR, N_INT, N_TIME = _nullable(STR), _nullable(INT), _nullable(TIME)


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


ALERT_REF = _object({"id": INT, "source": STR, "uid": STR,
                     "state": {"enum": ["open", "resolved"]}})
NOTE = _object({"id": INT, "created_at": TIME, "author": STR, "body": STR})
TICKET_PROPS: dict[str, Any] = {
    "id": INT, "type": STR, "status": {"enum": ["open", "closed"]}, "priority": N_STR,
    "summary": STR, "details": STR, "customer_id": N_INT, "site_id": N_INT, "asset_id": N_INT,
    "end_user_id": N_INT, "opened_at": TIME, "closed_at": N_TIME, "closed_by": N_STR,
    "alert": _nullable({"$ref": "#/components/schemas/AlertRef"}),
}
ALERT_PROPS: dict[str, Any] = {
    "id": INT, "source": STR, "uid": STR, "state": {"enum": ["open", "resolved"]},
    "resolved_by": _nullable({"enum": ["upstream", "ticket"]}), "resolved_at": N_TIME,
    "first_seen_at": TIME, "last_seen_at": TIME, "channels": {"type": "array", "items": STR},
    "occurrences": INT, "device": N_STR, "site": N_STR, "customer": N_STR, "priority": N_STR,
    "message": N_STR, "ticket_id": N_INT,
}
DELIVERY_STATUS = {"enum": ["received", "processed", "ignored", "rejected", "failed"]}
DELIVERY_PROPS: dict[str, Any] = {
    "id": INT, "channel": {"enum": ["smtp", "imap", "webhook", "poll", "api"]},
    "source": N_STR, "dedupe_key": STR, "received_at": TIME, "status": DELIVERY_STATUS,
    "attempts": INT, "next_attempt_at": N_TIME, "processed_at": N_TIME, "error": N_STR,
    "outcome": N_STR, "alert_id": N_INT, "content_type": STR, "size_bytes": INT,
}
OUTCOMES = ["opened", "twin", "resolved", "tombstone", "late_raise", "late_twin",
            "already_resolved"]
INGEST_RESULT = _object({
    "delivery_id": INT, "duplicate": {"type": "boolean"}, "status": _nullable(DELIVERY_STATUS),
    "error": N_STR,
    "events": {"type": "array", "items": _object(
        {"alert_id": INT, "outcome": {"enum": OUTCOMES}, "ticket_id": N_INT})},
})
ALERT_EVENT = {
    "type": "object", "additionalProperties": False, "required": ["source", "uid", "action"],
    "properties": {
        "source": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"},
        "uid": {"type": ["string", "integer"]},
        "action": {"enum": ["raise", "resolve"]},
        "device": STR, "device_id": STR, "site": STR, "customer": STR, "priority": STR,
        "message": STR,
        "ticket": {"type": "object", "additionalProperties": False,
                   "properties": {"type": STR, "summary": STR, "details": STR}},
    },
}


DATTO_VALUE = {"type": ["string", "number", "boolean", "null"]}
DATTO_WEBHOOK = {
    "type": "object", "required": ["alert_uid", "alert_resolved"],
    "properties": {
        "alert_uid": {"type": "string", "description": "[alert_uid]: the alert GUID"},
        "alert_resolved": {"enum": ["true", "false", True, False]},
        "state": {"type": "string", "description": "The shared secret"},
        **{key: DATTO_VALUE for key in (
            "alert_message", "alert_priority", "alert_category", "alert_type",
            "device_hostname", "device_uid", "device_ip", "site_name", "site_uid", "platform",
            "timestamp", "last_user")},
        "fields": {"type": "object", "additionalProperties": DATTO_VALUE,
                   "description": "Free values, mapped to ticket fields by "
                                  "[datto] webhook_fields"},
    },
}
SYNCRO_NOTIFICATION = {
    "type": "object", "required": ["attributes"],
    "properties": {
        "text": STR, "html": STR, "link": STR,
        "attributes": {"type": "object", "properties": {
            "id": {"type": ["integer", "string"]},
            "resolved": {"type": ["boolean", "string", "null"]},
            "computer_name": N_STR, "description": N_STR, "formatted_output": N_STR,
            "customer": {"type": ["object", "null"]}, "asset": {"type": ["object", "null"]},
        }},
    },
}


def _webhook(summary: str, description: str, body: dict[str, Any], token: str
             ) -> dict[str, Any]:
    return {
        "summary": summary, "description": description, "security": [],
        "parameters": [_query("token", token)],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": _json(INGEST_RESULT, "Identical to an earlier, applied delivery"),
            "201": _json(INGEST_RESULT, "Stored and applied"),
            "202": _json(INGEST_RESULT, "Stored, not applied now: retried when due (status "
                         "received) or failed (replayable)"),
            **_errors(400, 401, 403, 413, 415, 422, 503),
        },
    }


OUTBOX_STATUS = {"enum": ["pending", "done", "dead", "dropped"]}
OUTBOX_PROPS: dict[str, Any] = {
    "id": INT, "action": STR, "source": STR, "target": STR, "alert_id": N_INT,
    "status": OUTBOX_STATUS, "attempts": INT, "next_attempt_at": N_TIME, "last_error": N_STR,
    "created_at": TIME, "done_at": N_TIME,
}
RMM_CHECK = _object({
    "source": STR,
    "status": {"enum": ["ok", "unreachable", "wrong_endpoint", "bad_credentials",
                        "missing_permission", "not_configured", "error"]},
    "message": STR,
    "probes": {"type": "array", "items": _object({"what": STR, "ok": {"type": "boolean"},
                                                  "detail": STR})},
})


SYNC_RUN = _object({
    "id": INT, "source": {"enum": ["datto", "syncro"]},
    "entities": {"type": "array", "items": {"enum": ["customers", "assets"]}},
    "trigger": {"enum": ["schedule", "cli"]},
    "status": {"enum": ["running", "ok", "failed"]}, "started_at": TIME,
    "finished_at": N_TIME,
    "counts": {"type": "object", "additionalProperties": INT,
               "description": "'<entity>.<create|update|match|deactivate|unchanged>' and "
                              "'skipped' -> how many"},
    "errors": {"type": "array", "items": STR},
})


def _listing(item_ref: str) -> dict[str, Any]:
    return _object({"items": {"type": "array", "items": {"$ref": item_ref}},
                    "next_before_id": N_INT})


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad filter or malformed JSON", 401: "Missing or wrong API token",
            403: "This webhook is off: its secret is not configured",
            404: "Not found", 409: "Conflict with the current state",
            413: "Body larger than [http] max_body_bytes",
            415: "Body is not application/json", 422: "Valid JSON, invalid content",
            503: "Storage unavailable; retry"}
    return {str(code): _json(ERR, text[code]) for code in codes}


def _query(name: str, description: str, schema: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or STR}


PAGING = [
    _query("limit", "Page size, 1-1000 (default 100)", {"type": "integer"}),
    _query("before_id", "Return items with a smaller id (the previous page's next_before_id)",
           {"type": "integer"}),
]
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
ACTOR_BODY = {"actor": {"type": "string", "description": "Who acts (stored as agent:<actor>)"}}


def openapi_document(server_url: str) -> dict[str, Any]:
    """The document, with `server_url` (the configured public URL) as its server."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "alertd API", "version": __version__,
                 "description": "Tickets, alerts and deliveries of one alertd installation."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _object({"error": STR, "detail": STR}),
                "AlertRef": ALERT_REF,
                "Ticket": _object(TICKET_PROPS),
                "TicketWithNotes": _object({**TICKET_PROPS,
                                            "notes": {"type": "array", "items": NOTE}}),
                "Alert": _object(ALERT_PROPS),
                "Delivery": _object(DELIVERY_PROPS),
                "DeliveryWithPayload": _object({
                    **DELIVERY_PROPS, "meta": {"type": "object"}, "trace": {},
                    "payload": STR, "payload_encoding": {"enum": ["utf-8", "base64"]},
                }),
                "AlertEvent": ALERT_EVENT,
                "OutboxRow": _object(OUTBOX_PROPS),
                "RmmCheck": RMM_CHECK,
                "SyncRun": SYNC_RUN,
                "DattoWebhook": DATTO_WEBHOOK,
                "SyncroNotification": SYNCRO_NOTIFICATION,
                "IngestResult": INGEST_RESULT,
            },
        },
        "paths": {
            "/api/tickets": {"get": {
                "summary": "List tickets, newest first",
                "parameters": [_query("status", "open or closed",
                                      {"enum": ["open", "closed"]}),
                               _query("alert_uid", "Upstream alert id"),
                               _query("source", "Alert source (datto, syncro, ...)"),
                               *PAGING],
                "responses": {"200": _json(_listing("#/components/schemas/Ticket"), "Tickets"),
                              **_errors(400, 401)},
            }},
            "/api/tickets/{id}": {"get": {
                "summary": "One ticket with its notes", "parameters": [ID_PARAM],
                "responses": {"200": _json({"$ref": "#/components/schemas/TicketWithNotes"},
                                           "The ticket"), **_errors(401, 404)},
            }},
            "/api/tickets/{id}/close": {"post": {
                "summary": "Close a ticket as an agent (resolves its alert upstream)",
                "parameters": [ID_PARAM],
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"type": "object", "properties": {"note": STR, **ACTOR_BODY}}}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/TicketWithNotes"},
                                           "The closed ticket"),
                              **_errors(400, 401, 404, 409, 413, 415, 422)},
            }},
            "/api/tickets/{id}/notes": {"post": {
                "summary": "Add a note to a ticket", "parameters": [ID_PARAM],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["body"],
                               "properties": {"body": STR, **ACTOR_BODY}}}}},
                "responses": {"201": _json({"$ref": "#/components/schemas/TicketWithNotes"},
                                           "The ticket with the new note"),
                              **_errors(400, 401, 404, 413, 415, 422)},
            }},
            "/api/alerts": {
                "get": {
                    "summary": "List alerts, newest first",
                    "parameters": [_query("source", "datto, syncro, ..."),
                                   _query("uid", "Upstream alert id"),
                                   _query("state", "open or resolved",
                                          {"enum": ["open", "resolved"]}), *PAGING],
                    "responses": {"200": _json(_listing("#/components/schemas/Alert"),
                                               "Alerts"), **_errors(400, 401)},
                },
                "post": {
                    "summary": "Raise or resolve an alert from another system",
                    "description": "Stored as a delivery (channel api) before it is applied. "
                                   "Identical bodies, or the same Idempotency-Key header, "
                                   "are applied once.",
                    "parameters": [{"name": "Idempotency-Key", "in": "header",
                                    "required": False, "schema": STR}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/AlertEvent"}}}},
                    "responses": {
                        "200": _json(INGEST_RESULT, "Duplicate of an earlier, applied delivery"),
                        "201": _json(INGEST_RESULT, "Stored and applied"),
                        "202": _json(INGEST_RESULT, "Stored, not applied now: retried when "
                                     "due (status received) or failed (replayable); also a "
                                     "duplicate of such a delivery"),
                        **_errors(400, 401, 409, 413, 415, 422, 503),
                    },
                },
            },
            "/api/alerts/{id}": {"get": {
                "summary": "One alert", "parameters": [ID_PARAM],
                "responses": {"200": _json({"$ref": "#/components/schemas/Alert"}, "The alert"),
                              **_errors(401, 404)},
            }},
            "/api/deliveries": {"get": {
                "summary": "List deliveries (every raw input), newest first",
                "parameters": [_query("status", "received, processed, ignored, rejected, "
                                      "failed", DELIVERY_STATUS),
                               _query("channel", "smtp, imap, webhook, poll, api"),
                               _query("source", "Source name"), *PAGING],
                "responses": {"200": _json(_listing("#/components/schemas/Delivery"),
                                           "Deliveries"), **_errors(400, 401)},
            }},
            "/api/deliveries/{id}": {"get": {
                "summary": "One delivery with its raw payload and rule trace",
                "parameters": [ID_PARAM],
                "responses": {"200": _json({"$ref": "#/components/schemas/DeliveryWithPayload"},
                                           "The delivery"), **_errors(401, 404)},
            }},
            "/api/deliveries/{id}/replay": {"post": {
                "summary": "Process a failed, ignored or rejected delivery again",
                "parameters": [ID_PARAM],
                "responses": {"200": _json(INGEST_RESULT, "Result of the new attempt"),
                              **_errors(401, 404, 409)},
            }},
            "/api/notify/syncro": {"post": _webhook(
                "Syncro RMM alert notification (Notification Center webhook)",
                "Authenticated by ?token= ([syncro] webhook_token) unless webhook_auth is "
                "\"none\". The asset's property blob is stored only in part (no remote-access "
                "secrets).",
                {"$ref": "#/components/schemas/SyncroNotification"}, "The [syncro] webhook_token")},
            "/api/notify/datto": {"post": _webhook(
                "Datto RMM webhook (the payload printed by `alertd webhook-config datto`)",
                "Authenticated by the 'state' field or ?token= ([datto] webhook_secret); the "
                "secret is not stored. Datto's test send (placeholders not filled in) is "
                "answered 422 and stores no alert.",
                {"$ref": "#/components/schemas/DattoWebhook"}, "The [datto] webhook_secret")},
            "/api/outbox": {"get": {
                "summary": "List outbox rows (resolve calls owed to the RMMs), newest first",
                "parameters": [_query("status", "pending, done, dead or dropped",
                                      OUTBOX_STATUS),
                               _query("source", "datto or syncro"), *PAGING],
                "responses": {"200": _json(_listing("#/components/schemas/OutboxRow"),
                                           "Outbox rows"), **_errors(400, 401)},
            }},
            "/api/outbox/{id}/retry": {"post": {
                "summary": "Send a dead or pending row again now, attempts reset",
                "parameters": [ID_PARAM],
                "responses": {"200": _json({"$ref": "#/components/schemas/OutboxRow"},
                                           "The row, pending"), **_errors(401, 404, 409)},
            }},
            "/api/outbox/{id}/drop": {"post": {
                "summary": "Give up on a dead or pending row (kept as dropped, never sent)",
                "parameters": [ID_PARAM],
                "responses": {"200": _json({"$ref": "#/components/schemas/OutboxRow"},
                                           "The row, dropped"), **_errors(401, 404, 409)},
            }},
            "/api/rmm/{name}/test": {"post": {
                "summary": "Test the RMM API connection: reachability, platform/URL, "
                           "credentials, permissions",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"enum": ["datto", "syncro"]}}],
                "responses": {"200": _json({"$ref": "#/components/schemas/RmmCheck"},
                                           "The diagnosis (status ok or why not)"),
                              **_errors(401, 404)},
            }},
            "/api/sync/runs": {"get": {
                "summary": "The applied sync runs (alertd sync history), newest first",
                "parameters": [_query("source", "datto or syncro"), *PAGING],
                "responses": {"200": _json(_listing("#/components/schemas/SyncRun"),
                                           "Sync runs"), **_errors(400, 401)},
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI document",
                                      "content": {"application/json": {}}}},
            }},
        },
    }

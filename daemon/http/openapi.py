"""The OpenAPI 3.1 document of the JSON API, served at /api/openapi.json.

The request schemas and parameters are generated from the request models that check them
(daemon.http.models); the answers are written here next to the handlers (the browse and
administration routes in openapi_admin.py, the shared building blocks in openapi_parts.py).
tests/api_client.py validates every response of the component tests against it,
tests/component/test_http_api.py checks that every route is documented, and
tests/system/test_api_conformance.py fuzzes the served document against a running alertd
(schemathesis, all checks), so it cannot drift silently.
"""

from __future__ import annotations

from typing import Any

from daemon import __version__
from daemon.core.events import MAX_ID
from daemon.core.lifecycle import Outcome
from daemon.http.api_maintenance import MAINTENANCE_PATHS, MAINTENANCE_SCHEMAS
from daemon.http.models import (
    AlertEventBody,
    AlertQuery,
    CloseBody,
    DeliveryQuery,
    IngestHeaders,
    NoteBody,
    OutboxQuery,
    SyncRunQuery,
    TicketQuery,
)
from daemon.http.openapi_admin import ADMIN_PATHS, ADMIN_SCHEMAS
from daemon.http.openapi_parts import (
    DELIVERY_STATUS,
    ID_PARAM,
    INT,
    N_INT,
    N_STR,
    N_TIME,
    STR,
    TIME,
    answer,
    errors,
    listing,
    model_body,
    model_schemas,
    nullable,
    obj,
    parameters_of,
    query,
)

ALERT_REF = obj({"id": INT, "source": STR, "uid": STR,
                 "state": {"enum": ["open", "resolved"]}, "device": N_STR,
                 "channels": {"type": "array", "items": STR}})
NOTE = obj({"id": INT, "created_at": TIME, "author": STR, "body": STR})
TICKET_PROPS: dict[str, Any] = {
    "id": INT, "type": STR, "status": {"enum": ["open", "closed"]}, "priority": N_STR,
    "summary": STR, "details": STR, "customer_id": N_INT, "site_id": N_INT, "asset_id": N_INT,
    "end_user_id": N_INT, "customer": N_STR, "site": N_STR, "asset": N_STR, "end_user": N_STR,
    "opened_at": TIME, "closed_at": N_TIME, "closed_by": N_STR,
    "touched": {"type": "boolean"}, "touched_at": N_TIME,
    "upstream_resolved": {"type": "boolean"}, "upstream_resolved_at": N_TIME,
    "alert": nullable({"$ref": "#/components/schemas/AlertRef"}),
    "condition": N_STR, "occurrences": INT, "last_raised_at": N_TIME, "close_due_at": N_TIME,
}
ALERT_PROPS: dict[str, Any] = {
    "id": INT, "source": STR, "uid": STR, "state": {"enum": ["open", "resolved"]},
    "resolved_by": nullable({"enum": ["upstream", "ticket", "expiry"]}),
    "resolved_at": N_TIME, "expire_after_s": N_INT,
    "first_seen_at": TIME, "last_seen_at": TIME, "channels": {"type": "array", "items": STR},
    "occurrences": INT, "device": N_STR, "site": N_STR, "customer": N_STR, "priority": N_STR,
    "message": N_STR, "ticket_id": N_INT, "condition": N_STR, "suppressed_by": N_STR,
}
DELIVERY_PROPS: dict[str, Any] = {
    "id": INT, "channel": {"enum": ["smtp", "imap", "webhook", "poll", "api"]},
    "source": N_STR, "dedupe_key": STR, "received_at": TIME, "status": DELIVERY_STATUS,
    "attempts": INT, "next_attempt_at": N_TIME, "processed_at": N_TIME, "error": N_STR,
    "outcome": N_STR, "alert_id": N_INT, "content_type": STR, "size_bytes": INT,
}
TRAIL = obj({
    "alert": obj({"id": INT, "source": STR, "uid": STR, "state": {"enum": ["open", "resolved"]}}),
    "items": {"type": "array", "items": obj({
        "id": INT, "at": TIME, "decision": STR, "channel": N_STR, "actor": N_STR,
        "reason": N_STR})},
    "truncated": {"type": "boolean"},
})
# What an event can do (expiry and the maintenance release are not events).
OUTCOMES = [o.value for o in Outcome if o not in (Outcome.EXPIRED, Outcome.RELEASED)]
INGEST_RESULT = obj({
    "delivery_id": INT, "duplicate": {"type": "boolean"}, "status": nullable(DELIVERY_STATUS),
    "error": N_STR,
    "events": {"type": "array", "items": obj(
        {"alert_id": INT, "outcome": {"enum": OUTCOMES}, "ticket_id": N_INT})},
})
# The webhook bodies are the vendors', read by the parsers in daemon.webhooks (which this
# adapter may not import); tests/unit/test_webhook_parsers.py holds both to one contract.
_SPACE = "[ \\t\\r\\n]*"  # what the parsers strip around a value (spaces, tabs, line breaks)
FLAG_TEXT = {"type": "string",
             "pattern": f"^{_SPACE}([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]){_SPACE}$"}
DATTO_VALUE_CHARS = 10_000
DATTO_VALUE = {"type": ["string", "number", "boolean", "null"], "maxLength": DATTO_VALUE_CHARS,
               "description": "A string, number or boolean; a placeholder Datto could not "
                              "fill ([last_user]) or a blank string counts as absent"}
DATTO_UID_CHARS = 100
DATTO_WEBHOOK = {
    "type": "object", "additionalProperties": False, "required": ["alert_uid", "alert_resolved"],
    "properties": {
        "alert_uid": {"type": "string", "maxLength": DATTO_UID_CHARS,
                      "pattern": f"^{_SPACE}[0-9a-fA-F]{{8}}-([0-9a-fA-F]{{4}}-){{3}}"
                                 f"[0-9a-fA-F]{{12}}{_SPACE}$",
                      "description": "[alert_uid]: the alert GUID (spaces around it are "
                                     "removed); Datto's test send, '[alert_uid]', is "
                                     "answered 422"},
        "alert_resolved": {"anyOf": [{"type": "boolean"}, FLAG_TEXT],
                           "description": "\"true\" or \"false\" (any case) or a boolean"},
        "state": {"type": ["string", "null"],
                  "description": "The shared secret (null or absent: it is in ?token=)"},
        **{key: DATTO_VALUE for key in (
            "alert_message", "alert_priority", "alert_category", "alert_type",
            "device_hostname", "device_uid", "device_ip", "site_name", "site_uid", "platform",
            "timestamp", "last_user")},
        "fields": {"type": ["object", "null"], "additionalProperties": DATTO_VALUE,
                   "description": "Free values, mapped to ticket fields by "
                                  "[datto] webhook_fields"},
    },
}
# A Syncro alert id: a positive whole number, sometimes sent as a string of digits.
SYNCRO_ID_TEXT = "0*[1-9][0-9]{0,17}"
ANY_VALUE: dict[str, Any] = {"description": "Read when it has the expected type, else ignored"}
SYNCRO_NOTIFICATION = {
    "type": "object", "required": ["attributes"],
    # The alert id is attributes.id, or when that is absent (or null) the end of `link`.
    "anyOf": [{"properties": {"attributes": {"required": ["id"], "properties": {
                  "id": {"not": {"type": "null"}}}}}},
              {"required": ["link"], "properties": {"link": {
                  "type": "string", "pattern": f"/rmm_alerts/{SYNCRO_ID_TEXT}/?{_SPACE}$"}}}],
    "properties": {
        "text": ANY_VALUE, "html": ANY_VALUE,
        "link": {"description": "The alert's page, ending in /rmm_alerts/<id>"},
        "attributes": {"type": "object", "properties": {
            "id": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_ID},
                             {"type": "string",
                              "pattern": f"^{_SPACE}{SYNCRO_ID_TEXT}{_SPACE}$"},
                             {"type": "null"}]},
            "resolved": {"anyOf": [{"type": ["boolean", "null"]}, FLAG_TEXT]},
            "computer_name": ANY_VALUE, "description": ANY_VALUE,
            "formatted_output": ANY_VALUE, "customer": ANY_VALUE, "asset": ANY_VALUE,
        }},
    },
}


def _webhook(summary: str, description: str, body: dict[str, Any], token: str
             ) -> dict[str, Any]:
    return {
        "summary": summary, "description": description, "security": [],
        "parameters": [query("token", token)],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": answer(INGEST_RESULT, "Identical to an earlier, applied delivery"),
            "201": answer(INGEST_RESULT, "Stored and applied"),
            "202": answer(INGEST_RESULT, "Stored, not applied now: retried when due (status "
                          "received) or failed (replayable)"),
            **errors(400, 401, 403, 413, 415, 422, 503),
        },
    }


OUTBOX_STATUS = {"enum": ["pending", "done", "dead", "dropped"]}
OUTBOX_PROPS: dict[str, Any] = {
    # action "resolve_alert": source = the RMM, target = the alert's uid; action "notify":
    # source = the [[notify]] target's name, target = the event, ticket_id = its ticket.
    "id": INT, "action": {"enum": ["resolve_alert", "notify"]}, "source": STR, "target": STR,
    "alert_id": N_INT, "ticket_id": N_INT,
    "status": OUTBOX_STATUS, "attempts": INT, "next_attempt_at": N_TIME, "last_error": N_STR,
    "created_at": TIME, "done_at": N_TIME,
}
RMM_CHECK = obj({
    "source": STR,
    "status": {"enum": ["ok", "unreachable", "wrong_endpoint", "bad_credentials",
                        "missing_permission", "not_configured", "error"]},
    "message": STR,
    "probes": {"type": "array", "items": obj({"what": STR, "ok": {"type": "boolean"},
                                              "detail": STR})},
})


SYNC_RUN = obj({
    "id": INT, "source": {"enum": ["datto", "syncro"]},
    "entities": {"type": "array", "items": {"enum": ["customers", "assets"]}},
    "trigger": {"enum": ["schedule", "cli", "api", "console"]},
    "status": {"enum": ["running", "ok", "failed"]}, "started_at": TIME,
    "finished_at": N_TIME,
    "counts": {"type": "object", "additionalProperties": INT,
               "description": "'<entity>.<create|update|match|deactivate|unchanged>' and "
                              "'skipped' -> how many"},
    "errors": {"type": "array", "items": STR},
})


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
                "Error": obj({"error": STR, "detail": STR}),
                "AlertRef": ALERT_REF,
                "Ticket": obj(TICKET_PROPS),
                "TicketWithNotes": obj({**TICKET_PROPS,
                                        "notes": {"type": "array", "items": NOTE},
                                        "alerts": {"type": "array", "items": ALERT_REF}}),
                "ClosedTicket": obj({
                    **TICKET_PROPS, "notes": {"type": "array", "items": NOTE},
                    "alerts": {"type": "array", "items": ALERT_REF},
                    # What this close did: the alerts it resolved, the upstream resolves
                    # it queued.
                    "closing": obj({"alerts_resolved": {"type": "array", "items": INT},
                                    "outbox_ids": {"type": "array", "items": INT}})}),
                "Alert": obj(ALERT_PROPS),
                "Delivery": obj(DELIVERY_PROPS),
                "DeliveryWithPayload": obj({
                    **DELIVERY_PROPS, "meta": {"type": "object"}, "trace": {},
                    "payload": STR, "payload_encoding": {"enum": ["utf-8", "base64"]},
                }),
                **model_schemas(AlertEventBody, CloseBody, NoteBody),
                "OutboxRow": obj(OUTBOX_PROPS),
                "RmmCheck": RMM_CHECK,
                "SyncRun": SYNC_RUN,
                "DattoWebhook": DATTO_WEBHOOK,
                "SyncroNotification": SYNCRO_NOTIFICATION,
                "IngestResult": INGEST_RESULT,
                **ADMIN_SCHEMAS,
                **MAINTENANCE_SCHEMAS,
            },
        },
        "paths": {
            "/api/tickets": {"get": {
                "summary": "List tickets, newest first",
                "parameters": parameters_of(TicketQuery),
                "responses": {"200": answer(listing("#/components/schemas/Ticket"), "Tickets"),
                              **errors(400, 401)},
            }},
            "/api/tickets/{id}": {"get": {
                "summary": "One ticket with its notes", "parameters": [ID_PARAM],
                "responses": {"200": answer({"$ref": "#/components/schemas/TicketWithNotes"},
                                            "The ticket"), **errors(401, 404)},
            }},
            "/api/tickets/{id}/close": {"post": {
                "summary": "Close a ticket as an agent (resolves its alert upstream)",
                "parameters": [ID_PARAM],
                "requestBody": model_body(CloseBody, required=False),
                "responses": {"200": answer({"$ref": "#/components/schemas/ClosedTicket"},
                                            "The closed ticket, and what the close did"),
                              **errors(400, 401, 404, 409, 413, 415, 422)},
            }},
            "/api/tickets/{id}/notes": {"post": {
                "summary": "Add a note to a ticket", "parameters": [ID_PARAM],
                "requestBody": model_body(NoteBody),
                "responses": {"201": answer({"$ref": "#/components/schemas/TicketWithNotes"},
                                            "The ticket with the new note"),
                              **errors(400, 401, 404, 413, 415, 422)},
            }},
            "/api/alerts": {
                "get": {
                    "summary": "List alerts, newest first",
                    "parameters": parameters_of(AlertQuery),
                    "responses": {"200": answer(listing("#/components/schemas/Alert"),
                                                "Alerts"), **errors(400, 401)},
                },
                "post": {
                    "summary": "Raise or resolve an alert from another system",
                    "description": "Stored as a delivery (channel api) before it is applied. "
                                   "Identical bodies, or the same Idempotency-Key header, "
                                   "are applied once.",
                    "parameters": parameters_of(IngestHeaders, "header"),
                    "requestBody": model_body(AlertEventBody),
                    "responses": {
                        "200": answer(INGEST_RESULT, "Duplicate of an earlier, applied delivery"),
                        "201": answer(INGEST_RESULT, "Stored and applied"),
                        "202": answer(INGEST_RESULT, "Stored, not applied now: retried when "
                                      "due (status received) or failed (replayable); also a "
                                      "duplicate of such a delivery"),
                        **errors(400, 401, 409, 413, 415, 422, 503),
                    },
                },
            },
            "/api/alerts/{id}": {"get": {
                "summary": "One alert", "parameters": [ID_PARAM],
                "responses": {"200": answer({"$ref": "#/components/schemas/Alert"}, "The alert"),
                              **errors(401, 404)},
            }},
            "/api/alerts/{id}/trail": {"get": {
                "summary": "Every decision alertd took about an alert, with its reason "
                           "(the newest 1,000, oldest first)",
                "parameters": [ID_PARAM],
                "responses": {"200": answer(TRAIL, "The alert and its trail"),
                              **errors(401, 404)},
            }},
            "/api/deliveries": {"get": {
                "summary": "List deliveries (every raw input), newest first",
                "parameters": parameters_of(DeliveryQuery),
                "responses": {"200": answer(listing("#/components/schemas/Delivery"),
                                            "Deliveries"), **errors(400, 401)},
            }},
            "/api/deliveries/{id}": {"get": {
                "summary": "One delivery with its raw payload and rule trace",
                "parameters": [ID_PARAM],
                "responses": {"200": answer({"$ref": "#/components/schemas/DeliveryWithPayload"},
                                            "The delivery"), **errors(401, 404)},
            }},
            "/api/deliveries/{id}/replay": {"post": {
                "summary": "Process a failed, ignored or rejected delivery again",
                "parameters": [ID_PARAM],
                "responses": {"200": answer(INGEST_RESULT, "Result of the new attempt"),
                              **errors(401, 404, 409)},
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
                "summary": "List outbox rows (resolve calls owed to the RMMs, notifications "
                           "owed to [[notify]] targets), newest first",
                "parameters": parameters_of(OutboxQuery),
                "responses": {"200": answer(listing("#/components/schemas/OutboxRow"),
                                            "Outbox rows"), **errors(400, 401)},
            }},
            "/api/outbox/{id}/retry": {"post": {
                "summary": "Send a dead or pending row again now, attempts reset",
                "parameters": [ID_PARAM],
                "responses": {"200": answer({"$ref": "#/components/schemas/OutboxRow"},
                                            "The row, pending"), **errors(401, 404, 409)},
            }},
            "/api/outbox/{id}/drop": {"post": {
                "summary": "Give up on a dead or pending row (kept as dropped, never sent)",
                "parameters": [ID_PARAM],
                "responses": {"200": answer({"$ref": "#/components/schemas/OutboxRow"},
                                            "The row, dropped"), **errors(401, 404, 409)},
            }},
            "/api/rmm/{name}/test": {"post": {
                "summary": "Test the RMM API connection: reachability, platform/URL, "
                           "credentials, permissions",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"enum": ["datto", "syncro"]}}],
                "responses": {"200": answer({"$ref": "#/components/schemas/RmmCheck"},
                                            "The diagnosis (status ok or why not)"),
                              **errors(401, 404)},
            }},
            "/api/sync/runs": {"get": {
                "summary": "The applied sync runs (alertd sync history), newest first",
                "parameters": parameters_of(SyncRunQuery),
                "responses": {"200": answer(listing("#/components/schemas/SyncRun"),
                                            "Sync runs"), **errors(400, 401)},
            }},
            **ADMIN_PATHS,
            **MAINTENANCE_PATHS,
            "/api/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI document",
                                      "content": {"application/json": {}}}},
            }},
        },
    }

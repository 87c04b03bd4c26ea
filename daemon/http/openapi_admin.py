"""The OpenAPI paths and schemas of the browse and administration routes (daemon.http.api_browse,
api_admin, api_status), merged into the document by daemon.http.openapi."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from daemon.http.models import AssetQuery, CustomerQuery, EndUserQuery, RulesTestBody, SiteQuery
from daemon.http.openapi_parts import (
    BOOL,
    DELIVERY_STATUS,
    INT,
    N_INT,
    N_STR,
    N_TIME,
    NUMBER,
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
    ref,
)

STRINGS = {"type": "array", "items": STR}
ANY_OBJECT = {"type": "object"}

CUSTOMER = obj({"id": INT, "name": STR, "top_level": N_STR, "active": BOOL,
                "updated_at": TIME})
SITE = obj({"id": INT, "name": STR, "customer_id": INT, "customer": STR, "active": BOOL,
            "updated_at": TIME})
END_USER = obj({"id": INT, "name": STR, "email": N_STR, "phone": N_STR, "customer_id": N_INT,
                "customer": N_STR, "is_default": BOOL, "active": BOOL, "updated_at": TIME})
ASSET = obj({"id": INT, "name": STR, "serial": N_STR, "asset_type": N_STR,
             "customer_id": N_INT, "customer": N_STR, "site_id": N_INT, "site": N_STR,
             "end_user_id": N_INT, "end_user": N_STR, "active": BOOL,
             "fields": {"type": "object", "description": "Mapped RMM fields ([sync] "
                                                         "field_mappings)"},
             "updated_at": TIME})

RULES_REPORT = obj({
    "error": nullable({"type": "string", "description": "Why no event could be made "
                                                         "(unparseable, a template failed)"}),
    "message": nullable(obj({
        "message_id": N_STR, "from": STR, "to": STRINGS, "subject": STR,
        "matched_subject": STR, "body_chars": INT, "defects": STRINGS})),
    "trace": nullable(obj({
        "rules": {"type": "array", "items": obj({
            "rule": STR, "hit": BOOL,
            "conditions": {"type": "array", "items": obj({"condition": STR, "hit": BOOL})}})},
        "fields": {"type": "object", "additionalProperties": obj(
            {"value": STR, "rule": STR, "field": STR})},
        "decided_by": N_STR, "action": N_STR})),
    "ticket": nullable(obj({"type": STR, "priority": N_STR, "summary": STR, "details": STR})),
    "event": nullable(obj({"source": STR, "uid": STR, "action": {"enum": ["raise", "resolve"]},
                           "device": N_STR, "site": N_STR, "customer": N_STR,
                           "priority": N_STR, "message": N_STR, "summary": N_STR,
                           "condition": N_STR})),
    "ignored_reason": N_STR,
})

LAST_DELIVERY = obj({"id": INT, "received_at": TIME, "status": DELIVERY_STATUS,
                     "outcome": N_STR, "error": N_STR})
WEBHOOK_VENDOR = obj({
    "configured": BOOL,
    "message": nullable({"type": "string", "description": "What to configure first"}),
    "setup": nullable({**obj({"vendor": STR, "url": STR, "warnings": STRINGS}),
                       "description": "What `alertd webhook-config <vendor> --json` prints, "
                                      "every secret replaced by ********"}),
    "last_delivery": nullable(ref("LastDelivery")),
})

SYNC_SOURCE = {"enum": ["datto", "syncro"]}
SYNC_REPORT = obj({
    "run_id": N_INT, "source": SYNC_SOURCE,
    "entities": {"type": "array", "items": {"enum": ["customers", "assets"]}},
    "preview": BOOL, "status": {"enum": ["ok", "failed"]}, "started_at": TIME,
    "finished_at": N_TIME,
    "counts": {"type": "object", "additionalProperties": INT},
    "skipped": STRINGS, "errors": STRINGS,
    "operations": {"type": "array", "description": "Previews only",
                   "items": obj({"entity": STR, "action": STR, "name": STR, "ext_id": N_STR,
                                 "id": INT, "values": ANY_OBJECT, "before": ANY_OBJECT,
                                 "via": STR}, required=["entity", "action", "name"])},
}, required=["run_id", "source", "entities", "preview", "status", "started_at", "finished_at",
             "counts", "skipped", "errors"])

WAITING = obj({"count": INT, "oldest_age_s": nullable(NUMBER)})
STATUS = obj({
    "version": STR, "started_at": TIME, "uptime_s": NUMBER,
    "database": {"type": "string", "description": "The database URL without its password"},
    "channels": {"type": "array", "items": obj({
        "channel": {"enum": ["smtp", "imap", "webhook", "poll", "api"]},
        "name": STR, "enabled": BOOL, "address": N_STR, "last_input_at": N_TIME,
        "last_delivery_id": N_INT,
        "last_error": nullable(obj({"at": TIME, "message": STR})),
    })},
    "backlog": obj({"deliveries": obj({"received": WAITING, "failed": WAITING}),
                    "outbox": obj({"pending": WAITING, "dead": WAITING})}),
})

ADMIN_SCHEMAS: dict[str, Any] = {
    "Customer": CUSTOMER, "Site": SITE, "EndUser": END_USER, "Asset": ASSET,
    "RulesReport": RULES_REPORT, "LastDelivery": LAST_DELIVERY,
    "WebhookVendor": WEBHOOK_VENDOR, "SyncReport": SYNC_REPORT, "Status": STATUS,
    **model_schemas(RulesTestBody),
}


def _browse(what: str, schema: str, params: type[BaseModel]) -> dict[str, Any]:
    return {"get": {
        "summary": f"List {what} (imported by the sync), newest first, with the names of "
                   "what they belong to",
        "parameters": parameters_of(params),
        "responses": {"200": answer(listing(f"#/components/schemas/{schema}"), what.title()),
                      **errors(400, 401)},
    }}


SOURCE_PARAM = {"name": "source", "in": "path", "required": True, "schema": SYNC_SOURCE}


def _sync(summary: str, description: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "description": description, "parameters": [SOURCE_PARAM],
        "responses": {"200": answer(ref("SyncReport"), "The run's report (status ok or "
                                                        "failed, with the errors)"),
                      **errors(401, 404),
                      "409": answer(ref("Error"), "Refused: the RMM's API credentials are "
                                    "not configured, no entity is enabled in [sync.<source>], "
                                    "or another sync is running")},
    }}


ADMIN_PATHS: dict[str, Any] = {
    "/api/customers": _browse("customers", "Customer", CustomerQuery),
    "/api/sites": _browse("sites", "Site", SiteQuery),
    "/api/assets": _browse("assets", "Asset", AssetQuery),
    "/api/end-users": _browse("end users", "EndUser", EndUserQuery),
    "/api/rules/test": {"post": {
        "summary": "What the rules in force make of one email (stores nothing)",
        "description": "The report of `alertd rules test --json`. A message the rules cannot "
                       "use is still a 200, with `error` set.",
        "requestBody": model_body(RulesTestBody),
        "responses": {"200": answer(ref("RulesReport"), "The report"),
                      **errors(400, 401, 413, 415, 422)},
    }},
    "/api/webhooks/config": {"get": {
        "summary": "What to paste into Datto RMM and Syncro (secrets masked), and the last "
                   "webhook each one sent",
        "responses": {"200": answer(obj({"datto": ref("WebhookVendor"),
                                         "syncro": ref("WebhookVendor")}), "Per vendor"),
                      **errors(401)},
    }},
    "/api/sync/{source}/preview": _sync(
        "Preview a sync: what it would create, update, match and deactivate",
        "Reads the RMM like a run and writes nothing (no history row either); the answer "
        "lists the operations."),
    "/api/sync/{source}/run": _sync(
        "Run a sync of the entities enabled in [sync.<source>]; answered when it ends",
        "Recorded in /api/sync/runs with trigger api."),
    "/api/status": {"get": {
        "summary": "Each intake channel's last input and last error, the backlogs, version, "
                   "database and uptime",
        "responses": {"200": answer(ref("Status"), "The status"), **errors(401)},
    }},
}

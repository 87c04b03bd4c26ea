"""The JSON API's routes. Each handler's module is imported at its first request: the API's
request models (pydantic) and its OpenAPI document are ~10 MiB that an idle alertd, and one
that only takes webhooks and mail, does not need (issue 15, item 5)."""

from __future__ import annotations

from aiohttp import web

from daemon.http.app import add_lazy_routes

# (method, path, "module:handler" under daemon.http)
API_ROUTES = (
    ("GET", "/api/openapi.json", "api:openapi_json"),
    ("GET", "/api/tickets", "api:list_tickets"),
    ("GET", "/api/tickets/{id}", "api:get_ticket"),
    ("POST", "/api/tickets/{id}/close", "api:close_ticket"),
    ("POST", "/api/tickets/{id}/notes", "api:add_note"),
    ("GET", "/api/alerts", "api:list_alerts"),
    ("POST", "/api/alerts", "api:ingest_alert"),
    ("GET", "/api/alerts/{id}", "api:get_alert"),
    ("GET", "/api/alerts/{id}/trail", "api:get_alert_trail"),
    ("GET", "/api/deliveries", "api:list_deliveries"),
    ("GET", "/api/deliveries/{id}", "api:get_delivery"),
    ("POST", "/api/deliveries/{id}/replay", "api:replay_delivery"),
    ("GET", "/api/outbox", "api:list_outbox"),
    ("POST", "/api/outbox/{id}/retry", "api:retry_outbox"),
    ("POST", "/api/outbox/{id}/drop", "api:drop_outbox"),
    ("POST", "/api/rmm/{name}/test", "api:test_rmm"),
    ("GET", "/api/sync/runs", "api:list_sync_runs"),
    ("GET", "/api/customers", "api_browse:list_customers"),
    ("GET", "/api/sites", "api_browse:list_sites"),
    ("GET", "/api/assets", "api_browse:list_assets"),
    ("GET", "/api/end-users", "api_browse:list_end_users"),
    ("POST", "/api/rules/test", "api_admin:test_rules"),
    ("GET", "/api/webhooks/config", "api_admin:webhooks_config"),
    ("POST", "/api/sync/{source}/preview", "api_admin:sync_preview"),
    ("POST", "/api/sync/{source}/run", "api_admin:sync_run"),
    ("POST", "/api/maintenance", "api_maintenance:add_window"),
    ("GET", "/api/maintenance", "api_maintenance:list_windows"),
    ("GET", "/api/maintenance/{id}", "api_maintenance:get_window"),
    ("DELETE", "/api/maintenance/{id}", "api_maintenance:end_window"),
    ("GET", "/api/status", "api_status:status"),
)


def setup_api_routes(app: web.Application) -> None:
    add_lazy_routes(app, API_ROUTES, "daemon.http")

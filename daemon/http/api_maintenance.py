"""The JSON API's maintenance windows (issue 16, rule 4): set, list, end.

    POST   /api/maintenance          {"scope", "value", "starts_at", "ends_at", "reason"} -> 201
    GET    /api/maintenance          the stored windows, newest first, and the weekly ones
    GET    /api/maintenance/{id}
    DELETE /api/maintenance/{id}     ends it now (it is kept, with what it suppressed)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon.core.maintenance import Scope
from daemon.http.app import CONTEXT
from daemon.http.errors import ApiError
from daemon.http.models import WINDOW_BODIES, MaintenanceBody, MaintenanceQuery, ScopedWindowBody
from daemon.http.openapi_parts import (
    ID_PARAM,
    INT,
    N_INT,
    N_STR,
    N_TIME,
    STR,
    TIME,
    answer,
    errors,
    model_body,
    model_schemas,
    obj,
    parameters_of,
    ref,
)
from daemon.http.params import body_of, listing_call, listing_query, path_id
from daemon.http.submissions import read_json_body
from daemon.tickets.windows import WindowNotFound, WindowRefused


def _actor(name: str) -> str:
    return f"agent:{name[:100]}" if name else "agent:api"


async def add_window(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    _, parsed = await read_json_body(request)
    scope = parsed.get("scope") if isinstance(parsed, dict) else None
    model = WINDOW_BODIES.get(scope) if isinstance(scope, str) else None
    if model is None:
        raise ApiError(422, "the body must be a JSON object whose 'scope' is one of "
                            f"{', '.join(WINDOW_BODIES)}")
    body = body_of(model, parsed)
    try:
        window = await ctx.maintenance.add(
            Scope(body.scope), body.value if isinstance(body, ScopedWindowBody) else "",
            body.starts_at, body.ends_at, body.reason, _actor(body.actor))
    except WindowRefused as err:
        raise ApiError(422, str(err)) from None
    return web.json_response(window, status=201)


@listing_call
async def list_windows(request: web.Request) -> web.Response:
    page, filters = listing_query(request, MaintenanceQuery)
    return web.json_response(await request.app[CONTEXT].maintenance.listing(
        page, filters["state"]))


async def get_window(request: web.Request) -> web.Response:
    window = await request.app[CONTEXT].maintenance.get(path_id(request))
    if window is None:
        raise ApiError(404, "maintenance window not found")
    return web.json_response(window)


async def end_window(request: web.Request) -> web.Response:
    try:
        window = await request.app[CONTEXT].maintenance.end(path_id(request), "agent:api")
    except WindowNotFound:
        raise ApiError(404, "maintenance window not found") from None
    return web.json_response(window)


# --- its part of the OpenAPI document ------------------------------------------------------

SCOPE = {"enum": [scope.value for scope in Scope]}
WINDOW = obj({
    "id": INT, "scope": SCOPE, "value": STR, "starts_at": TIME, "ends_at": TIME, "reason": STR,
    "state": {"enum": ["scheduled", "active", "ended"]},
    "suppressed": INT, "created_at": TIME, "created_by": STR, "ended_by": N_STR,
})
WEEKLY_WINDOW = obj({
    "name": STR, "scope": SCOPE, "value": STR, "days": {"type": "array", "items": STR},
    "start": STR, "duration_s": INT, "duration": STR, "time_zone": STR, "reason": STR,
    "active": {"type": "boolean"}, "active_until": N_TIME, "suppressed": INT,
})
MAINTENANCE_SCHEMAS: dict[str, Any] = {
    "MaintenanceWindow": WINDOW, "WeeklyWindow": WEEKLY_WINDOW,
    **model_schemas(MaintenanceBody),
}
MAINTENANCE_PATHS: dict[str, Any] = {
    "/api/maintenance": {
        "post": {
            "summary": "Set a maintenance window: raises in its scope open no ticket until "
                       "it ends",
            "requestBody": model_body(MaintenanceBody),
            "responses": {"201": answer(ref("MaintenanceWindow"), "The window"),
                          **errors(400, 401, 413, 415, 422)},
        },
        "get": {
            "summary": "The stored windows, newest first, and the configured weekly ones",
            "parameters": parameters_of(MaintenanceQuery),
            "responses": {"200": answer(obj({
                "items": {"type": "array", "items": ref("MaintenanceWindow")},
                "next_before_id": N_INT,
                "weekly": {"type": "array", "items": ref("WeeklyWindow")}}), "Windows"),
                **errors(400, 401)},
        },
    },
    "/api/maintenance/{id}": {
        "get": {"summary": "One maintenance window", "parameters": [ID_PARAM],
                "responses": {"200": answer(ref("MaintenanceWindow"), "The window"),
                              **errors(401, 404)}},
        "delete": {"summary": "End a window now (one not started yet is cancelled); it is "
                              "kept with what it suppressed",
                   "parameters": [ID_PARAM],
                   "responses": {"200": answer(ref("MaintenanceWindow"), "The ended window"),
                                 **errors(401, 404)}},
    },
}

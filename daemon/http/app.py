"""The aiohttp application factory, shared by `alertd run` and the tests.

Everything a handler needs travels in one typed `AppContext` under `CONTEXT`; later features
(webhooks, the web console) add their routes through `route_setups` without touching this file.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from daemon.config import Config
from daemon.core.clock import utcnow
from daemon.http.auth import TokenStore
from daemon.http.errors import Handler, error_middleware, error_response
from daemon.intake.pipeline import Pipeline
from daemon.log_summary import LogSummary
from daemon.metrics import ChannelHealth, Metrics
from daemon.rmm.clients import RmmClients
from daemon.rmm.outbox import OutboxWorker
from daemon.rules.email_interpreter import RulesHolder
from daemon.store.activity import Activity
from daemon.store.browse import Browse
from daemon.store.database import Database
from daemon.store.queries import Queries
from daemon.sync.runner import SyncRunner
from daemon.tickets.agent import AgentActions
from daemon.tickets.windows import MaintenanceWindows

log = logging.getLogger(__name__)
_refusals_log = logging.getLogger("daemon.http.refusals")
_secrets_log = logging.getLogger("daemon.webhooks.secrets")
SECRET_USE_LOG_S = 3600.0

# Paths under /api that answer without the API token. Webhook routes (/api/notify/...) carry
# their own per-vendor authentication.
PUBLIC_API_PATHS = frozenset({"/api/openapi.json"})
PUBLIC_API_PREFIXES = ("/api/notify/",)
# The `method` label of alertd_http_requests_total: a closed set, so a client cannot make
# series without limit (aiohttp's parser takes some 40 methods, WebDAV's among them).
METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class Readiness:
    """What /readyz reports besides the database: set by the service as listeners bind."""

    listeners: dict[str, bool] = field(default_factory=dict)

    @property
    def listeners_bound(self) -> bool:
        return bool(self.listeners) and all(self.listeners.values())


@dataclass
class AppContext:
    """What the HTTP handlers share (built by the composition root)."""

    config: Config
    db: Database
    metrics: Metrics
    pipeline: Pipeline
    agent: AgentActions
    queries: Queries
    tokens: TokenStore
    outbox: OutboxWorker
    rmm: RmmClients
    rules: RulesHolder
    sync: SyncRunner
    browse: Browse
    activity: Activity
    health: ChannelHealth
    maintenance: MaintenanceWindows
    # vendor -> () -> what to paste into the vendor (secrets included: the route masks
    # them); raises LookupError with what to configure when the vendor's secret is not set.
    webhook_setups: Mapping[str, Callable[[], dict[str, Any]]]
    readiness: Readiness = field(default_factory=Readiness)
    # Refused requests (API tokens, webhook secrets), logged as one line per cause and minute.
    refusals: LogSummary = field(default_factory=lambda: LogSummary(_refusals_log))
    # Which webhook secret senders use (current or previous), logged at most once an hour.
    secret_use: LogSummary = field(default_factory=lambda: LogSummary(
        _secrets_log, interval_s=SECRET_USE_LOG_S))


CONTEXT = web.AppKey("alertd.context", AppContext)

RouteSetup = Callable[[web.Application], None]


def _make_auth_middleware(ctx: AppContext) -> Middleware:
    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        protected = (path == "/api" or path.startswith("/api/")) and not (
            path in PUBLIC_API_PATHS or path.startswith(PUBLIC_API_PREFIXES)
        )
        if protected and not ctx.tokens.check(request.headers.get("Authorization")):
            ctx.metrics.auth_failures.labels("api").inc()
            ctx.refusals.note("API request refused (401)", "missing or wrong API token")
            return error_response(
                401, "missing or wrong API token: send 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": 'Bearer realm="alertd"'},
            )
        return await handler(request)

    return auth_middleware


def _make_metrics_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        method = request.method if request.method in METHOD_LABELS else "other"
        metrics.http_requests.labels(method, route, str(response.status)).inc()
        metrics.http_request_duration.labels(route).observe(time.perf_counter() - started)
        return response

    return metrics_middleware


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        await asyncio.wait_for(ctx.db.ping(), timeout=2.0)
        database = "ok"
    except Exception as err:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness: database unreachable: %s", type(err).__name__)
        database = "unreachable"
    checks = {"database": database,
              "listeners": "bound" if ctx.readiness.listeners_bound else "not bound"}
    ready = database == "ok" and ctx.readiness.listeners_bound
    return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                             status=200 if ready else 503)


async def metrics_view(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        figures = await asyncio.wait_for(ctx.activity.figures(utcnow()), timeout=5.0)
    except Exception as err:  # the database: the other metrics still answer
        log.warning("metrics: could not read the database's figures: %s", type(err).__name__)
        ctx.metrics.store.update(None)
    else:
        # Only the sources the scheduled sync covers: an RMM whose sync was switched off or
        # its keys removed must not keep its last (failed, old) run alive in alert rules.
        scheduled = (set(ctx.sync.enabled_sources()) if ctx.config.sync.schedule != "off"
                     else set())
        ctx.metrics.store.update(
            figures.waiting,
            {channel: moment.timestamp() for channel, moment in figures.last_input.items()},
            {(source, result): moment.timestamp()
             for (source, result), moment in figures.last_sync.items() if source in scheduled})
    response = web.Response(body=ctx.metrics.render())
    response.headers["Content-Type"] = ctx.metrics.content_type
    return response


def lazy_handler(target: str) -> Handler:
    """The handler named by `target` ("package.module:function"), imported at its first
    request: what an idle alertd does not serve, it does not hold in memory (the API's
    request models and OpenAPI document, the console's pages; issue 15, item 5).
    `handler.load()` imports it now (the tests resolve every route so)."""
    module_name, _, name = target.partition(":")
    loaded: list[Handler] = []

    def load() -> Handler:
        if not loaded:
            loaded.append(getattr(importlib.import_module(module_name), name))
        return loaded[0]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await (loaded[0] if loaded else load())(request)

    handler.__name__ = handler.__qualname__ = name
    handler.load = load  # type: ignore[attr-defined]
    return handler


def add_lazy_routes(app: web.Application, routes: Iterable[tuple[str, str, str]],
                    package: str) -> None:
    """Add (method, path, "module:handler") routes whose handlers live under `package`,
    each imported at its first request (`lazy_handler`); GET answers HEAD too, as
    `add_get` does."""
    for method, path, target in routes:
        handler = lazy_handler(f"{package}.{target}")
        if method == "GET":
            app.router.add_get(path, handler)
        else:
            app.router.add_route(method, path, handler)


def create_app(ctx: AppContext, route_setups: Iterable[RouteSetup] = ()) -> web.Application:
    """Build the application. `route_setups` add feature routes (API, webhooks, console)."""
    app = web.Application(
        # Outermost first: errors become JSON, then metrics see the final status, then auth.
        middlewares=[
            _make_metrics_middleware(ctx.metrics),
            error_middleware,
            _make_auth_middleware(ctx),
        ],
        client_max_size=ctx.config.http.max_body_bytes,
    )
    app[CONTEXT] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    for setup in route_setups:
        setup(app)
    return app

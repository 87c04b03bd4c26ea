"""The admin pages: webhooks (what to paste into the RMMs), sync (history, Preview, Run now)
and status (each channel's last input and error, the backlogs)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon.console.state import list_page, render
from daemon.http.api_admin import webhook_config, webhook_secrets
from daemon.http.api_status import status_report
from daemon.http.app import CONTEXT
from daemon.store.queries import BadFilter
from daemon.sync.runner import SOURCES, SyncRefused


async def webhooks_page(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    vendors = await webhook_config(ctx)
    # For the "Reveal" boxes: the secrets as configured (a signed-in admin may copy them,
    # as `alertd webhook-config` prints them); the set-ups above show them masked.
    secrets = {"datto": ctx.config.datto.webhook_secret,
               "syncro": ctx.config.syncro.webhook_token}
    revealed = {vendor: secret.get_secret_value() if secret is not None else None
                for vendor, secret in secrets.items()}
    return render(request, "webhooks.html", vendors=vendors, revealed=revealed,
                  masked_count=len(webhook_secrets(ctx)))


async def sync_page(request: web.Request, report: dict[str, Any] | None = None,
                    error: str | None = None, status: int = 200) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        runs = await ctx.queries.sync_runs(list_page(request))
    except BadFilter as err:
        runs, error, status = {"items": [], "next_before_id": None}, str(err), 400
    return render(request, "sync.html", status=status, runs=runs, report=report, error=error,
                  sources=SOURCES, enabled=ctx.sync.enabled_sources(),
                  configured=[s for s in SOURCES if getattr(ctx.rmm, s) is not None])


async def run_sync(request: web.Request) -> web.Response:
    source, action = request.match_info["source"], request.match_info["action"]
    if source not in SOURCES:
        return await sync_page(request, error=f"There is no RMM named {source!r}.", status=404)
    preview = action == "preview"
    try:
        report = await request.app[CONTEXT].sync.run(source, preview=preview, keep_ops=True,
                                                     trigger="console")
    except SyncRefused as err:  # not configured, nothing enabled, or another run is going
        return await sync_page(request, error=f"Sync {source}: {err}.", status=409)
    return await sync_page(request, report={
        **report.as_json(), "summary": report.summary(),
        "lines": [op.describe() for op in report.ops or ()][:2000]})


async def status_page(request: web.Request) -> web.Response:
    return render(request, "status.html", status_report=await status_report(request.app[CONTEXT]))

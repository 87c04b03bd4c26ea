"""GET /api/status: each intake channel's last input and last error, the backlogs, the
version, the database (without its password) and the uptime.

The last input comes from the database (the newest delivery of the channel or source; for an
IMAP account, when its checkpoint last moved), so it survives a restart. The last error is
what the adapters recorded in `ChannelHealth` since this process started: listener and
connection failures leave no delivery behind.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon import __version__
from daemon.core.clock import utc_iso, utcnow
from daemon.http.app import CONTEXT, AppContext

RMM_SOURCES = ("datto", "syncro")


def _channel(ctx: AppContext, channel: str, name: str, health_key: str, *, enabled: bool,
             address: str | None, newest: dict[str, Any] | None = None,
             last_input_at: str | None = None) -> dict[str, Any]:
    error = ctx.health.last_error(health_key)
    return {
        "channel": channel, "name": name, "enabled": enabled, "address": address,
        "last_input_at": newest["received_at"] if newest else last_input_at,
        "last_delivery_id": newest["id"] if newest else None,
        "last_error": {"at": utc_iso(error.at), "message": error.message} if error else None,
    }


def _webhook_configured(ctx: AppContext, vendor: str) -> bool:
    try:
        ctx.webhook_setups[vendor]()
    except LookupError:
        return False
    return True


async def status(request: web.Request) -> web.Response:
    return web.json_response(await status_report(request.app[CONTEXT]))


async def status_report(ctx: AppContext) -> dict[str, Any]:
    """The answer of GET /api/status (the console's status page shows the same)."""
    config = ctx.config
    keys = [("smtp", None), ("api", None),
            *(("webhook", s) for s in RMM_SOURCES), *(("poll", s) for s in RMM_SOURCES)]
    newest = await ctx.activity.newest_deliveries(keys)
    imap_inputs = await ctx.activity.imap_last_input()
    channels = [_channel(ctx, "smtp", "smtp", "smtp", enabled=config.smtp.enabled,
                         address=str(config.smtp.listen), newest=newest[("smtp", None)])]
    for account in config.imap.accounts:
        channels.append(_channel(
            ctx, "imap", account.name, f"imap:{account.name}", enabled=True,
            address=f"{account.host}:{account.effective_port}",
            last_input_at=utc_iso(imap_inputs.get(account.name))))
    for source in RMM_SOURCES:
        channels.append(_channel(ctx, "webhook", source, f"webhook:{source}",
                                 enabled=_webhook_configured(ctx, source), address=None,
                                 newest=newest[("webhook", source)]))
    for source in RMM_SOURCES:
        polling = (getattr(ctx.rmm, source) is not None
                   and getattr(config, source).poll_interval_s > 0)
        channels.append(_channel(ctx, "poll", source, f"poll:{source}", enabled=polling,
                                 address=None, newest=newest[("poll", source)]))
    channels.append(_channel(ctx, "api", "api", "api", enabled=True, address=None,
                             newest=newest[("api", None)]))
    return {
        "version": __version__,
        "started_at": utc_iso(ctx.health.started_at),
        "uptime_s": round(ctx.health.uptime_s(), 1),
        "database": ctx.db.display_url,
        "channels": channels,
        "backlog": await ctx.activity.backlogs(utcnow()),
    }

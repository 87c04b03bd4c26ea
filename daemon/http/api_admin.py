"""The JSON API's administration routes: test the rules on a message, show the webhook set-up,
preview or run a sync.

Nothing here stores anything, except a sync run (which records itself, like `alertd sync`).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from aiohttp import web

from daemon.http.app import CONTEXT, AppContext
from daemon.http.errors import ApiError
from daemon.http.models import RulesTestBody
from daemon.http.params import body_of
from daemon.http.submissions import read_json_body
from daemon.rules.explain import explain_message
from daemon.sync.runner import SOURCES, SyncRefused

MASK = "********"


async def test_rules(request: web.Request) -> web.Response:
    """POST /api/rules/test: what `alertd rules test --json` prints for the message, with the
    rules in force. The body's size is capped by `[http] max_body_bytes` (413)."""
    ctx = request.app[CONTEXT]
    _, parsed = await read_json_body(request)
    message = body_of(RulesTestBody, parsed).message
    rules = ctx.rules.rules  # once: a SIGHUP swap during the test must not mix two rule sets
    # Parsing a large message takes a while: off the event loop, like the email intake.
    report = await asyncio.to_thread(explain_message, rules, message.encode("utf-8"))
    return web.json_response(report)


def masked(value: Any, secrets: list[str]) -> Any:
    """`value` (JSON) with every occurrence of each secret, as given or URL-quoted, replaced by
    `MASK` in every string, wherever the set-up put it."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, list):
        return [masked(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: masked(item, secrets) for key, item in value.items()}
    return value


def webhook_secrets(ctx: AppContext) -> list[str]:
    """The configured webhook secrets in every form a set-up may show them, longest first."""
    config = ctx.config
    found = [s.get_secret_value() for s in (config.datto.webhook_secret,
                                            config.syncro.webhook_token) if s is not None]
    forms = {form for secret in found if secret
             for form in (secret, quote(secret, safe=""), quote(secret))}
    return sorted(forms, key=len, reverse=True)  # a longer form first: no partial masks


async def webhooks_config(request: web.Request) -> web.Response:
    """GET /api/webhooks/config: per vendor, what to paste into it (secrets masked) or what to
    configure first, and the last webhook delivery received from it."""
    return web.json_response(await webhook_config(request.app[CONTEXT]))


async def webhook_config(ctx: AppContext) -> dict[str, Any]:
    """The answer of GET /api/webhooks/config (the console's webhooks page shows the same)."""
    secrets = webhook_secrets(ctx)
    newest = await ctx.activity.newest_deliveries(
        ("webhook", vendor) for vendor in ctx.webhook_setups)
    answer: dict[str, Any] = {}
    for vendor, build in ctx.webhook_setups.items():
        try:
            setup, message = masked(build(), secrets), None
        except LookupError as err:  # the vendor's secret is not set
            setup, message = None, str(err)
        answer[vendor] = {"configured": setup is not None, "message": message,
                          "setup": setup, "last_delivery": newest[("webhook", vendor)]}
    return answer


async def _sync(request: web.Request, preview: bool) -> web.Response:
    source = request.match_info["source"]
    if source not in SOURCES:
        raise ApiError(404, f"no RMM named {source!r}: datto or syncro")
    try:
        report = await request.app[CONTEXT].sync.run(source, preview=preview, keep_ops=preview,
                                                     trigger="api")
    except SyncRefused as err:  # not configured, nothing enabled, or another run is going
        raise ApiError(409, str(err)) from None
    return web.json_response(report.as_json())


async def sync_preview(request: web.Request) -> web.Response:
    """POST /api/sync/{source}/preview: what a run would write (its operations); writes
    nothing, not even a history row."""
    return await _sync(request, preview=True)


async def sync_run(request: web.Request) -> web.Response:
    """POST /api/sync/{source}/run: a sync run, answered when it ends (recorded in
    /api/sync/runs with trigger "api")."""
    return await _sync(request, preview=False)


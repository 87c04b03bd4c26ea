"""The webhook routes: `POST /api/notify/syncro` and `POST /api/notify/datto` (thin adapters).

Each route authenticates with its vendor's shared secret (constant-time comparison), stores the
body without its secrets, and applies it like every other delivery (`store_and_apply`).
Unauthenticated requests store nothing and are counted in `alertd_auth_failures_total`.
"""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web

from daemon.core.events import Channel, Unprocessable
from daemon.http.app import CONTEXT, AppContext
from daemon.http.errors import ApiError
from daemon.http.ingest import canonical_sha256, read_json_body, store_and_apply
from daemon.pipeline import InboundDelivery
from daemon.webhooks import datto, syncro

log = logging.getLogger(__name__)

SYNCRO_PATH = "/api/notify/syncro"
DATTO_PATH = "/api/notify/datto"


def _secret_matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def _refuse(ctx: AppContext, route: str, status: int, detail: str) -> ApiError:
    ctx.metrics.auth_failures.labels(route).inc()
    log.warning("webhook %s refused (%d): %s", route, status, detail)
    return ApiError(status, detail)


def _inbound(source: str, stored: object, rejected: str | None, request: web.Request
             ) -> InboundDelivery:
    """The delivery of a webhook: the stored form (no secrets) is also what dedupes retries."""
    body_sha256 = canonical_sha256(stored)
    return InboundDelivery(
        channel=Channel.WEBHOOK, dedupe_key=f"{source}:sha256:{body_sha256}",
        payload=json.dumps(stored, ensure_ascii=False).encode(),
        content_type="application/json", source=source,
        # The query string is never stored: it can carry the token.
        meta={"remote": request.remote, "body_sha256": body_sha256},
        rejected_reason=rejected,
    )


async def syncro_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    config = ctx.config.syncro
    if config.webhook_auth == "token":
        if config.webhook_token is None:
            raise _refuse(ctx, "syncro_webhook", 403, "Syncro webhooks are off: "
                          "[syncro] webhook_token is not set (or set webhook_auth = \"none\")")
        presented = request.query.get("token")
        if presented is None or not _secret_matches(
                presented, config.webhook_token.get_secret_value()):
            raise _refuse(ctx, "syncro_webhook", 401,
                          "missing or wrong token: the URL must end in ?token=<token> "
                          "(see `alertd webhook-config syncro`)")
    _, body = await read_json_body(request)
    stored = syncro.stored_form(body)
    try:
        syncro.parse_syncro_webhook(stored)
        rejected = None
    except Unprocessable as err:
        rejected = str(err)
    return await store_and_apply(ctx, _inbound(syncro.SOURCE, stored, rejected, request))


async def datto_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    config = ctx.config.datto
    if config.webhook_secret is None:
        raise _refuse(ctx, "datto_webhook", 403,
                      "Datto webhooks are off: [datto] webhook_secret is not set")
    expected = config.webhook_secret.get_secret_value()
    query_token = request.query.get("token")
    if query_token is not None and not _secret_matches(query_token, expected):
        raise _refuse(ctx, "datto_webhook", 401, "wrong token in ?token=")
    _, body = await read_json_body(request)
    state = body.get(datto.SECRET_FIELD) if isinstance(body, dict) else None
    if state is not None and not (isinstance(state, str) and _secret_matches(state, expected)):
        raise _refuse(ctx, "datto_webhook", 401, "wrong secret in the 'state' field")
    if state is None and query_token is None:
        raise _refuse(ctx, "datto_webhook", 401,
                      "missing secret: send it as the 'state' field (or ?token=); see "
                      "`alertd webhook-config datto`")
    stored = datto.without_secret(body)
    try:
        datto.parse_datto_webhook(stored, config.webhook_fields)
        rejected = None
    except Unprocessable as err:
        rejected = str(err)
    return await store_and_apply(ctx, _inbound(datto.SOURCE, stored, rejected, request))


def setup_webhook_routes(app: web.Application) -> None:
    app.router.add_post(SYNCRO_PATH, syncro_webhook)
    app.router.add_post(DATTO_PATH, datto_webhook)

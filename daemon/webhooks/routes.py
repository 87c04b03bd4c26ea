"""The webhook routes: `POST /api/notify/syncro` and `POST /api/notify/datto` (thin adapters).

Each route authenticates with its vendor's shared secret (constant-time comparison), and hands
the body without its secrets to the pipeline's `ingest`: the webhook channel's interpreter
reads it (the same one that replays it later), then it is stored and applied in one
transaction.
Unauthenticated requests store nothing and are counted in `alertd_auth_failures_total`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from aiohttp import web

from daemon.config.base import Secret
from daemon.core.canonical import canonical_json, sha256_hex
from daemon.core.events import Channel
from daemon.http.app import CONTEXT, AppContext
from daemon.http.errors import ApiError
from daemon.http.submissions import ingest_and_answer, read_json_body
from daemon.intake.inbound import Inbound
from daemon.rmm.errors import RmmError
from daemon.rmm.syncro import SyncroClient
from daemon.webhooks import datto, syncro
from daemon.webhooks.masking import mask_secrets

log = logging.getLogger(__name__)

SYNCRO_PATH = "/api/notify/syncro"
DATTO_PATH = "/api/notify/datto"
# `[syncro] verify_webhooks`: how long a webhook may wait for the API's word (Syncro's sender
# must get its answer well before it gives up; past this the body's flag stands).
VERIFY_TIMEOUT_S = 5.0


def _secret_matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


CURRENT, PREVIOUS = "current", "previous"


def _which_secret(presented: str, current: Secret | None, previous: Secret | None
                  ) -> str | None:
    """Which configured secret `presented` is: "current", "previous" (the one being rotated
    out), or None. Both are compared, in constant time each, whatever the first gave."""
    matches = [(name, _secret_matches(presented, secret.get_secret_value()))
               for name, secret in ((CURRENT, current), (PREVIOUS, previous))
               if secret is not None and secret.get_secret_value()]
    return next((name for name, matched in matches if matched), None)


def _used(ctx: AppContext, route: str, which: str, setting: str) -> None:
    """Count which secret a caller used; say so in the log at most once an hour per route
    and secret (a sender still on the previous one is what blocks removing it)."""
    ctx.metrics.webhook_secrets.labels(route, which).inc()
    if which == PREVIOUS:
        ctx.secret_use.note(f"webhook {route}", f"a sender authenticated with {setting}: "
                            "update it to the current one, then remove the previous one")
    else:
        ctx.secret_use.note(f"webhook {route}", "senders use the current secret",
                            logging.INFO)


def _refuse(ctx: AppContext, route: str, status: int, detail: str) -> ApiError:
    ctx.metrics.auth_failures.labels(route).inc()
    # One line per cause and minute: a misconfigured or hostile sender must not flood the log.
    ctx.refusals.note(f"webhook {route} refused ({status})", detail)
    # GET /api/status shows it: a wrong secret in the vendor is the usual set-up mistake.
    ctx.health.record_error(f"webhook:{route.removesuffix('_webhook')}",
                            f"refused ({status}): {detail}")
    return ApiError(status, detail)


def _webhook_secrets(ctx: AppContext) -> list[str]:
    secrets = (ctx.config.datto.webhook_secret, ctx.config.syncro.webhook_token,
               ctx.config.datto.previous_webhook_secret, ctx.config.syncro.previous_webhook_token)
    return [secret.get_secret_value() for secret in secrets if secret is not None]


def _inbound(ctx: AppContext, source: str, stored: object, request: web.Request) -> Inbound:
    """The delivery of a webhook: the stored form (no secrets) is also what dedupes retries."""
    # The known secret fields are gone already; a sender may still have put a secret
    # anywhere else (a list around the alert, a URL in a custom field): mask it by value.
    stored = mask_secrets(stored, _webhook_secrets(ctx))
    # Canonical: a retry with other spacing or key order is the same delivery.
    payload = canonical_json(stored)
    body_sha256 = sha256_hex(payload)
    return Inbound(
        channel=Channel.WEBHOOK, dedupe_key=f"{source}:sha256:{body_sha256}", payload=payload,
        content_type="application/json", source=source,
        # The query string is never stored: it can carry the token.
        meta={"remote": request.remote, "body_sha256": body_sha256}, document=stored,
    )


async def syncro_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    config = ctx.config.syncro
    if config.webhook_auth == "token":
        if config.webhook_token is None:
            raise _refuse(ctx, "syncro_webhook", 403, "Syncro webhooks are off: "
                          "[syncro] webhook_token is not set (or set webhook_auth = \"none\")")
        presented = request.query.get("token")
        which = None if presented is None else _which_secret(
            presented, config.webhook_token, config.previous_webhook_token)
        if which is None:
            raise _refuse(ctx, "syncro_webhook", 401,
                          "missing or wrong token: the URL must end in ?token=<token> "
                          "(see `alertd webhook-config syncro`)")
        _used(ctx, "syncro_webhook", which, "[syncro] previous_webhook_token")
    _, body = await read_json_body(request)
    stored = syncro.stored_form(body)
    if config.verify_webhooks and ctx.rmm.syncro is not None:
        stored = await _verified(ctx.rmm.syncro, stored)
    return await ingest_and_answer(ctx, _inbound(ctx, syncro.SOURCE, stored, request))


async def _verified(client: SyncroClient, stored: Any) -> Any:
    """The stored form with the API's own `resolved` flag added (`[syncro] verify_webhooks`):
    webhook bodies have been seen to disagree with the alert record. If the API cannot be
    asked, the body's flag stands (the alert must not wait for the API)."""
    alert_id = syncro.alert_id_of(stored)
    if alert_id is None:
        return stored
    try:
        async with asyncio.timeout(VERIFY_TIMEOUT_S):
            alert = await client.alert(alert_id)
    except TimeoutError:
        log.warning("syncro webhook: the API did not answer for alert %s within %.0f s; "
                    "using the body", alert_id, VERIFY_TIMEOUT_S)
        return stored
    except RmmError as err:
        log.warning("syncro webhook: could not verify alert %s by the API, using the body: "
                    "%s", alert_id, err)
        return stored
    if alert is None:
        log.warning("syncro webhook: alert %s is unknown to the API; using the body", alert_id)
        return stored
    return {**stored, syncro.VERIFIED_KEY: {"resolved": alert.resolved}}


async def datto_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    config = ctx.config.datto
    if config.webhook_secret is None:
        raise _refuse(ctx, "datto_webhook", 403,
                      "Datto webhooks are off: [datto] webhook_secret is not set")
    current, previous = config.webhook_secret, config.previous_webhook_secret
    query_token = request.query.get("token")
    by_query = None if query_token is None else _which_secret(query_token, current, previous)
    if query_token is not None and by_query is None:
        raise _refuse(ctx, "datto_webhook", 401, "wrong token in ?token=")
    _, body = await read_json_body(request)
    state = body.get(datto.SECRET_FIELD) if isinstance(body, dict) else None
    by_state = (_which_secret(state, current, previous) if isinstance(state, str)
                else None)
    if state is not None and by_state is None:
        raise _refuse(ctx, "datto_webhook", 401, "wrong secret in the 'state' field")
    # "previous" when either credential is the previous secret: that sender must be updated
    # before the previous secret goes, whatever the other credential says.
    which = PREVIOUS if PREVIOUS in (by_state, by_query) else by_state or by_query
    if which is None:
        raise _refuse(ctx, "datto_webhook", 401,
                      "missing secret: send it as the 'state' field (or ?token=); see "
                      "`alertd webhook-config datto`")
    _used(ctx, "datto_webhook", which, "[datto] previous_webhook_secret")
    return await ingest_and_answer(ctx, _inbound(ctx, datto.SOURCE, datto.without_secret(body),
                                                 request))


def setup_webhook_routes(app: web.Application) -> None:
    app.router.add_post(SYNCRO_PATH, syncro_webhook)
    app.router.add_post(DATTO_PATH, datto_webhook)

"""Issue 17, item 10: each webhook secret has a `previous_...` companion, accepted as well
until removed, so an admin rotates it without losing alerts; alertd counts which one senders
use and says so in the log at most once an hour."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from daemon.config import Config, ConfigError
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import Delivery
from tests.api_client import Api
from tests.component.test_webhooks import datto_body, post_datto, post_syncro
from tests.webhook_samples import TOKEN, syncro_body

OLD_DATTO, NEW_DATTO = "datto-secret-before-rotation-1", "datto-secret-after-rotation-22"
OLD_SYNCRO, NEW_SYNCRO = "syncro-token-before-rotation-1", "syncro-token-after-rotation-22"


@pytest.fixture
async def hooks(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
                db: Database, db_url: str, tmp_path: Path) -> Api:
    old = tmp_path / "old-datto-secret"
    old.write_text(OLD_DATTO + "\n")
    config = make_config(f"""
[api]
tokens = ["{TOKEN}"]
[datto]
webhook_secret = "{NEW_DATTO}"
previous_webhook_secret_file = "{old}"
[syncro]
webhook_token = "{NEW_SYNCRO}"
previous_webhook_token = "{OLD_SYNCRO}"
""", db_url=db_url)
    ctx = build_services(config, db)
    return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)


def used(hooks: Api, route: str, secret: str) -> float:
    value = hooks.ctx.metrics.registry.get_sample_value(
        "alertd_webhook_secret_used_total", {"route": route, "secret": secret})
    return value or 0.0


async def test_both_datto_secrets_are_accepted_while_rotating(
        hooks: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.webhooks.secrets")
    for n, secret in enumerate((OLD_DATTO, NEW_DATTO, OLD_DATTO, NEW_DATTO)):
        status, answer = await post_datto(hooks, datto_body(
            uid=f"5e0c8b1a-7d2f-4c3e-9a6b-00000000000{n}", state=secret))
        assert status == 201, answer
    status, _ = await post_datto(hooks, datto_body(state="datto-secret-some-third-one"))
    assert status == 401
    # The previous secret in the query string is accepted too.
    status, _ = await post_datto(hooks, datto_body(
        uid="5e0c8b1a-7d2f-4c3e-9a6b-000000000009", state=None), params={"token": OLD_DATTO})
    assert status == 201
    assert (used(hooks, "datto_webhook", "previous"), used(hooks, "datto_webhook", "current")) \
        == (3.0, 2.0)
    # Said once (the next hour's summary counts the rest), naming what to do.
    lines = [r.getMessage() for r in caplog.records if r.name == "daemon.webhooks.secrets"]
    assert lines == [
        "webhook datto_webhook: a sender authenticated with [datto] previous_webhook_secret: "
        "update it to the current one, then remove the previous one",
        "webhook datto_webhook: senders use the current secret"]
    assert not any(OLD_DATTO in r.getMessage() or NEW_DATTO in r.getMessage()
                   for r in caplog.records)


async def test_both_syncro_tokens_are_accepted_while_rotating(hooks: Api) -> None:
    for alert_id, token in ((501234567, OLD_SYNCRO), (501234568, NEW_SYNCRO)):
        status, answer = await post_syncro(hooks, syncro_body(id=alert_id), token=token)
        assert status == 201, answer
    status, _ = await post_syncro(hooks, syncro_body(id=501234569), token="some-third-token")
    assert status == 401
    assert (used(hooks, "syncro_webhook", "previous"),
            used(hooks, "syncro_webhook", "current")) == (1.0, 1.0)


async def test_neither_secret_is_stored(hooks: Api) -> None:
    """A sender that echoes the secret elsewhere in the body (a custom field) has it masked,
    the previous one as the current one."""
    status, _ = await post_datto(hooks, datto_body(
        state=OLD_DATTO, fields={"Note": f"old {OLD_DATTO} new {NEW_DATTO}"}))
    assert status == 201
    payloads = await hooks.ctx.db.read(lambda s: list(s.scalars(select(Delivery.payload))))
    assert payloads and not any(OLD_DATTO.encode() in p or NEW_DATTO.encode() in p
                                for p in payloads)


async def test_a_request_with_the_previous_secret_anywhere_counts_as_previous(
        hooks: Api) -> None:
    """The body's `state` updated, the URL's ?token= not: the sender still needs the
    previous secret, so the rotation must not look finished."""
    status, _ = await post_datto(hooks, datto_body(state=NEW_DATTO),
                                 params={"token": OLD_DATTO})
    assert status == 201
    assert (used(hooks, "datto_webhook", "previous"), used(hooks, "datto_webhook", "current")) \
        == (1.0, 0.0)


@pytest.mark.parametrize(("section", "keys", "message"), [
    ("datto", 'webhook_secret = "s3cret-value"\nprevious_webhook_secret = ""',
     "a secret must not be empty"),
    ("datto", 'webhook_secret = "s3cret-value"\nprevious_webhook_secret = "s3cret-value"',
     "the previous secret is the current one"),
    ("syncro", 'webhook_token = " "', "a secret must not be empty"),
    ("syncro", 'webhook_token = "t0ken-value"\nprevious_webhook_token = "t0ken-value"',
     "the previous secret is the current one"),
])
def test_a_secret_that_would_weaken_the_check_is_a_config_error(
        make_config: Callable[..., Config], section: str, keys: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        make_config(f"[{section}]\n{keys}\n")
    assert "s3cret-value" not in str(err.value) and "t0ken-value" not in str(err.value)

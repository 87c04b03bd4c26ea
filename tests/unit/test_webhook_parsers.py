"""The webhook parsers (pure) and `alertd webhook-config` run in-process on a config file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from daemon.core.events import Unprocessable
from daemon.core.lifecycle import AlertAction
from daemon.http.openapi import DATTO_WEBHOOK, SYNCRO_NOTIFICATION
from daemon.webhooks import datto, syncro
from tests.webhook_samples import CONFIG, DATTO_SECRET, SYNCRO_TOKEN, UID, syncro_body

# --- pure parsers ----------------------------------------------------------------------------


def test_datto_template_round_trip() -> None:
    raised = datto.payload_template(resolved=False, secret="s")
    filled = {k: (UID if k == "alert_uid" else v) for k, v in raised.items()}
    event = datto.parse_datto_webhook(datto.without_secret(filled), {})
    assert (event.uid, event.action) == (UID, AlertAction.RAISE)
    # Placeholders Datto left unfilled are treated as absent.
    assert event.device is None and event.message is None
    resolved = datto.payload_template(resolved=True, secret="s")
    assert resolved["alert_resolved"] == "true" and resolved["state"] == "s"


def test_syncro_parser_refuses_a_bad_resolved_flag() -> None:
    with pytest.raises(Unprocessable, match=r"'attributes\.resolved' must be true or false"):
        syncro.parse_syncro_webhook(syncro_body(resolved="yes"))
    with pytest.raises(Unprocessable, match="no alert id"):
        syncro.parse_syncro_webhook({"attributes": {"resolved": False}, "link": "x"})


# --- alertd webhook-config -------------------------------------------------------------------


def test_webhook_config_prints_what_to_paste(write_config: Callable[..., Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.cli.main import main
    config = write_config(CONFIG + '[http]\npublic_url = "https://alertd.example.com/"\n')
    assert main(["webhook-config", "datto", "--json", "--config", str(config)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["url"] == "https://alertd.example.com/api/notify/datto"
    assert printed["content_type"] == "application/json" and printed["warnings"] == []
    raised, resolved = printed["alert_raised_payload"], printed["alert_resolved_payload"]
    assert raised["alert_uid"] == "[alert_uid]" and raised["state"] == DATTO_SECRET
    assert (raised["alert_resolved"], resolved["alert_resolved"]) == ("false", "true")
    assert main(["webhook-config", "syncro", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"https://alertd.example.com/api/notify/syncro?token={SYNCRO_TOKEN}" in out
    assert "RMM Alert - was created" in out


def test_webhook_config_without_a_secret_says_what_to_add(
        write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.cli.main import main
    config = write_config("")
    assert main(["webhook-config", "datto", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "[datto] webhook_secret is not set" in err and "webhook_secret_file" in err
    assert main(["webhook-config", "syncro", "--config", str(config)]) == 2
    assert "[syncro] webhook_token is not set" in capsys.readouterr().err


# --- the documented schema and the parsers agree ----------------------------------------------

def _datto(**values: object) -> dict[str, object]:
    return {"alert_uid": UID, "alert_resolved": "false", **values}


def _syncro(attributes: dict[str, object], **values: object) -> dict[str, object]:
    return {"attributes": attributes, **values}


@pytest.mark.parametrize(("body", "accepted"), [
    (_datto(), True),
    (_datto(alert_uid=f" \t{UID.upper()}\n", alert_resolved=" TRUE "), True),
    (_datto(alert_resolved=True, fields={"Client": "ACME", "n": 5}, alert_message=None), True),
    (_datto(alert_uid="[alert_uid]"), False),  # Datto's test send
    (_datto(alert_uid=UID + " " * 80), False),  # past the 100 characters
    (_datto(alert_resolved="maybe"), False),
    (_datto(alert_message="x" * 10_001), False),
    (_datto(alert_message=" " * 10_001), False),  # the length as sent, before stripping
    (_datto(fields={"x": [1]}), False),
    (_datto(extra="typo"), False),
])
def test_datto_parser_accepts_what_the_document_allows(body: dict[str, object],
                                                       accepted: bool) -> None:
    _agree(DATTO_WEBHOOK, lambda b: datto.parse_datto_webhook(b, {}), body, accepted)


@pytest.mark.parametrize(("body", "accepted"), [
    (_syncro({"id": 42}), True),
    (_syncro({"id": 42.0}), True),  # JSON Schema's integer: the number 42
    (_syncro({"id": " 0042 ", "resolved": " False\n"}), True),
    (_syncro({"resolved": None}, link="https://x.syncromsp.com/rmm_alerts/42/"), True),
    (_syncro({"id": None}, link="https://x/rmm_alerts/42"), True),
    (_syncro({"id": 42, "customer": "not an object", "computer_name": 5}), True),
    (_syncro({"id": 0}), False),
    (_syncro({"id": "0"}), False),
    (_syncro({"id": 10**18}), False),
    (_syncro({"id": 0}, link="https://x/rmm_alerts/42"), False),  # a wrong id is no fallback
    (_syncro({}, link="https://x/rmm_alerts/0"), False),
    (_syncro({"id": 42, "resolved": "yes"}), False),
    ({"text": "no attributes"}, False),
])
def test_syncro_parser_accepts_what_the_document_allows(body: dict[str, object],
                                                        accepted: bool) -> None:
    _agree(SYNCRO_NOTIFICATION, syncro.parse_syncro_webhook, body, accepted)


def _agree(schema: dict[str, object], parse: Callable[[object], object], body: object,
           accepted: bool) -> None:
    assert Draft202012Validator(schema).is_valid(body) is accepted
    try:
        parse(body)
        parsed = True
    except Unprocessable:
        parsed = False
    assert parsed is accepted

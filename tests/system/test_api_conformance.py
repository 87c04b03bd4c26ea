"""The served OpenAPI document against the running service: schemathesis generates requests
from /api/openapi.json (valid ones and invalid ones, every phase) and runs all its checks on
the answers of `alertd run` on SQLite. A request the document allows must not be refused, one
it forbids must be, and every answer must match the document."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.engine import Status, events

from tests.daemon_process import Daemon

TOKEN = "conformance-token-0123456789"
DATTO_SECRET = "conformance-datto-secret"

CONFIG = f"""
[api]
tokens = ["{TOKEN}"]
[datto]
webhook_secret_env = "CONFORMANCE_DATTO_SECRET"
[syncro]
webhook_auth = "none"
"""

SETTINGS: dict[str, Any] = {
    "headers": {"Authorization": f"Bearer {TOKEN}"},
    "seed": 20240611,
    "workers": 1,
    # No NUL in generated strings: every JSON body holding one is refused whole as malformed
    # (400, daemon.http.submissions), a transport rule no field schema can state.
    "generation": {"max-examples": 25, "deterministic": True, "database": "none",
                   "allow-x00": False},
    "checks": {
        "enabled": True,  # all of them (`st run --checks all`)
        # A body past [http] max_body_bytes is refused by its size (413) before its content
        # is read: a note of 100000 escaped control characters is 600 kB.
        "negative_data_rejection": {"expected-statuses": [
            400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]},
    },
}


def _with_datto_secret(context: Any, case: Any) -> Any:
    """Datto webhooks carry their secret in the body's `state` (or ?token=): without it every
    request would stop at the 401. A `state` of another type stays, to be refused."""
    if case.path != "/api/notify/datto":
        return case
    if isinstance(case.body, dict) and isinstance(case.body.get("state"), str):
        case.body["state"] = DATTO_SECRET
    if isinstance(case.query, dict) and "token" in case.query:
        case.query["token"] = DATTO_SECRET
    return case


def _with_window_in_order(context: Any, case: Any) -> Any:
    """A window must end after it starts: a rule across two fields that JSON Schema cannot
    state (the service answers 422 with that reason). Two generated date-times that parse
    become one valid window; anything else stays, to be refused."""
    if case.path != "/api/maintenance" or case.method.upper() != "POST":
        return case
    body = case.body
    if not isinstance(body, dict):
        return case
    try:
        datetime.fromisoformat(body["starts_at"])
        datetime.fromisoformat(body["ends_at"])
    except (KeyError, TypeError, ValueError):
        return case
    body["starts_at"], body["ends_at"] = "2030-01-01T22:00:00+01:00", "2030-01-02T02:00:00Z"
    return case


def _report(recorder: Any, case_id: str, check: str, info: Any) -> str:
    """One failure: the check, what it says, the request to reproduce it and the answer."""
    interaction = recorder.interactions.get(case_id)
    answer = interaction.response.content[:300] if interaction and interaction.response else b""
    return f"{check}: {info.failure}\n{info.code_sample}\nanswer: {answer!r}"


def _fuzz(url: str) -> tuple[list[str], int]:
    """Run every schemathesis phase against `url`; (the failures found, cases generated)."""
    config = schemathesis.Config.from_dict(SETTINGS)
    schema = schemathesis.openapi.from_url(url, config=config)
    schema.hook("map_case")(_with_datto_secret)
    schema.hook("map_case")(_with_window_in_order)
    failures: list[str] = []
    generated = 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            generated += len(event.recorder.cases)
            if event.status in (Status.FAILURE, Status.ERROR):
                for case_id, checks in event.recorder.checks.items():
                    failures += [_report(event.recorder, case_id, check.name, check.failure_info)
                                 for check in checks if check.failure_info is not None]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"error: {event}")
        elif isinstance(event, events.EngineFinished):
            failures += [str(failure) for failure in event.failures]
    return failures, generated


async def test_the_api_keeps_to_its_openapi_document(tmp_path: Path,
                                                     monkeypatch: Any) -> None:
    monkeypatch.setenv("CONFORMANCE_DATTO_SECRET", DATTO_SECRET)
    daemon = Daemon(tmp_path, CONFIG)
    try:
        await daemon.start()
        # In a thread: the event loop keeps reading the daemon's log meanwhile.
        failures, generated = await asyncio.to_thread(_fuzz, daemon.url("/api/openapi.json"))
        assert await daemon.stop() == 0
    finally:
        daemon.close()
    assert generated > 500, generated
    assert not failures, "\n\n".join(failures)


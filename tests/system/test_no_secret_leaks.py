"""No configured secret is ever stored, logged or served: a real `alertd run` with every kind
of secret configured gets hostile and ordinary input that carries them (right and wrong, in
bodies, query strings and headers); then its whole log, its database files and every GET
answer of the API are searched for each secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.daemon_process import Daemon

API_TOKEN = "api-token-7c1e9b2a4d6f8e0a"
DATTO_SECRET = "datto-webhook-secret-5b3d1f"
SYNCRO_TOKEN = "syncro-webhook-token-9e7c5a"
SMTP_PASSWORD = "smtp-password-2a4c6e8b"
IMAP_PASSWORD = "imap-password-1b3d5f7a"
DATTO_API_SECRET = "datto-api-secret-0f2e4d6c"
SECRETS = (API_TOKEN, DATTO_SECRET, SYNCRO_TOKEN, SMTP_PASSWORD, IMAP_PASSWORD,
           DATTO_API_SECRET)
UID = "6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


def config(tmp_path: Path) -> str:
    (tmp_path / "imap-password").write_text(IMAP_PASSWORD + "\n")
    return f"""
[api]
tokens = ["{API_TOKEN}"]
[datto]
webhook_secret = "{DATTO_SECRET}"
api_url = "http://127.0.0.1:9"
api_key = "datto-api-key"
api_secret = "{DATTO_API_SECRET}"
[syncro]
webhook_token = "{SYNCRO_TOKEN}"
[[smtp.users]]
username = "rmm"
password = "{SMTP_PASSWORD}"
[[imap.accounts]]
name = "alerts"
host = "127.0.0.1"
port = 9
tls = "none"
username = "alerts"
password_file = "{tmp_path / 'imap-password'}"
poll_interval_s = 1
"""


async def hostile_traffic(daemon: Daemon) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    datto = {"alert_uid": UID, "alert_resolved": "false", "alert_message": "disk"}
    requests: list[tuple[str, dict[str, Any], Any]] = [
        (f"/api/notify/datto?token={DATTO_SECRET}", {}, [{**datto, "state": DATTO_SECRET}]),
        ("/api/notify/datto", {}, {**datto, "state": DATTO_SECRET,
                                   "link": f"https://x/?token={DATTO_SECRET}&s={SYNCRO_TOKEN}"}),
        ("/api/notify/datto", {}, {**datto, "state": DATTO_SECRET[:-1]}),  # wrong: refused
        ("/api/notify/datto", {}, {**datto, "state": DATTO_SECRET, "alert_uid": DATTO_SECRET}),
        (f"/api/notify/syncro?token={SYNCRO_TOKEN}", {},
         {"attributes": {"id": 7, "description": f"token={SYNCRO_TOKEN}"}}),
        (f"/api/notify/syncro?token={SYNCRO_TOKEN}x", {}, {"attributes": {"id": 8}}),
        ("/api/alerts", {"Authorization": f"Bearer {API_TOKEN}x"}, {"uid": "x"}),
        ("/api/alerts", auth, {"source": "datto", "uid": "u", "action": "raise"}),
    ]
    async with aiohttp.ClientSession() as http:
        for path, headers, body in requests:
            async with http.post(daemon.url(path), headers=headers, json=body) as response:
                assert response.status < 500, (path, response.status, await response.text())
        for token in (API_TOKEN + "\x00", API_TOKEN[:-1]):
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
            writer.write(f"GET /api/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         f"{token}\r\nConnection: close\r\n\r\n".encode())
            await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()


async def every_api_answer(daemon: Daemon) -> str:
    """The text of every GET route's answer: listings, each item, status, config, metrics."""
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    answers: list[str] = []
    async with aiohttp.ClientSession() as http:
        async def get(path: str) -> Any:
            async with http.get(daemon.url(path), headers=auth) as response:
                text = await response.text()
                answers.append(text)
                return json.loads(text) if response.content_type == "application/json" else None

        for listing, item in (("/api/deliveries", "/api/deliveries/{}"),
                              ("/api/alerts", "/api/alerts/{}"),
                              ("/api/tickets", "/api/tickets/{}")):
            for entry in (await get(listing))["items"]:
                await get(item.format(entry["id"]))
        for path in ("/api/outbox", "/api/sync/runs", "/api/status", "/api/webhooks/config",
                     "/api/customers", "/api/sites", "/api/assets", "/api/end-users",
                     "/api/openapi.json", "/metrics", "/healthz", "/readyz"):
            await get(path)
    return "\n".join(answers)


async def test_no_configured_secret_is_logged_stored_or_served(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, config(tmp_path))
    await daemon.start()
    try:
        await hostile_traffic(daemon)
        await asyncio.sleep(1.5)  # the IMAP account fails to connect, and logs that
        served = await every_api_answer(daemon)
    finally:
        assert await daemon.stop() == 0
        daemon.close()
    log = "\n".join(daemon.log)
    assert "delivery" in served and "imap" in log.lower()  # the searches saw real content
    stored = b"".join(path.read_bytes() for path in daemon.state_dir.iterdir()
                      if path.name.startswith("alertd.db"))
    assert len(stored) > 0
    for secret in SECRETS:
        assert secret not in log, secret
        assert secret.encode() not in stored, secret
        assert secret not in served, secret

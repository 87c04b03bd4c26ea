"""`alertd notify list|test` as a process: what was sent where, or exactly what failed."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SECRET = "cli-test-secret-0123456789"


class Hook(BaseHTTPRequestHandler):
    answers: list[int] = []
    verified: list[bool] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        self.verified.append(hmac.compare_digest(self.headers["X-Alertd-Signature"], expected))
        status = self.answers.pop(0) if self.answers else 204
        self.send_response(status)
        payload = b'{"error": "bad token"}' if status >= 300 else b""
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True,
                          text=True, timeout=60)


def test_notify_test_says_what_was_sent_and_what_failed(
        write_config: Callable[..., Path], hook_url: str) -> None:
    path = write_config(f"""\
        [[notify]]
        name = "ops"
        kind = "webhook"
        url = "{hook_url}"
        secret = "{SECRET}"
        events = ["ticket.opened"]
        """)
    listed = run_cli("notify", "list", "--config", str(path))
    assert listed.returncode == 0
    assert f"ops   webhook  {hook_url}  ticket.opened" in listed.stdout
    Hook.answers, Hook.verified = [], []
    sent = run_cli("notify", "test", "ops", "--config", str(path))
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == f"notify ops: test message sent to {hook_url}"
    assert Hook.verified == [True]
    Hook.answers = [401]
    failed = run_cli("notify", "test", "ops", "--config", str(path))
    assert failed.returncode == 1
    assert failed.stdout.strip() == (
        f'notify ops: FAILED: {hook_url} answered HTTP 401: {{"error": "bad token"}} '
        "(retrying would not help: fix the target)")
    assert SECRET not in listed.stdout + sent.stdout + failed.stdout + failed.stderr
    unknown = run_cli("notify", "test", "nope", "--config", str(path))
    assert unknown.returncode != 0
    assert "no [[notify]] target named 'nope' (targets: ops)" in unknown.stderr


def test_a_chat_webhooks_url_is_never_printed(write_config: Callable[..., Path]) -> None:
    secret_url = "http://127.0.0.1:9/services/T000/B000/very-secret-path"
    path = write_config(f"""\
        [[notify]]
        name = "chat"
        kind = "slack"
        url = "{secret_url}"
        events = ["ticket.opened"]
        """)
    failed = run_cli("notify", "test", "chat", "--config", str(path))
    assert failed.returncode == 1
    assert "notify chat: FAILED: http://127.0.0.1:9: ClientConnectorError" in failed.stdout
    assert "very-secret-path" not in failed.stdout + failed.stderr
    listed = run_cli("notify", "list", "--config", str(path))
    assert "very-secret-path" not in listed.stdout

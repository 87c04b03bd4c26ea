"""The remote CLI (issue 18, item 6): `alertd --url URL --token-file FILE ...` against a running
daemon prints what the same command prints on the server, and says clearly what is wrong
(token, address, a command that only works on the server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.daemon_process import ROOT, Daemon

TOKEN = "remote-cli-token-0123456789abcdef"
MAIL = ROOT / "tests" / "fixtures" / "mail" / "datto-alert-disk-plain.eml"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    running = Daemon(tmp_path, f'[api]\ntokens = ["{TOKEN}"]\n')
    await running.start()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for n, source in enumerate(("datto", "syncro", "datto")):
            async with client.post(running.url("/api/alerts"), json={
                    "source": source, "uid": f"remote-{n}", "action": "raise",
                    "device": f"PC-{n}", "message": f"Disk {n} \x1b[2J full"}) as answer:
                assert answer.status == 201, await answer.text()
        async with client.post(running.url("/api/alerts"), json={"source": "datto"}) as answer:
            assert answer.status == 422  # kept as a rejected delivery
    yield running
    await running.stop()
    running.close()


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    return {**env, **extra}


@pytest.fixture
def local(daemon: Daemon) -> Run:
    """The CLI on the server: the daemon's configuration and database."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", *args, "--config",
                               str(daemon.config_path)], capture_output=True, text=True,
                              cwd=ROOT, env=environment(), timeout=60)
    return run


@pytest.fixture
def remote(daemon: Daemon, tmp_path: Path) -> Run:
    """The CLI on another machine: no configuration, only the URL and a token file."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str, url: str | None = None, token: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", "--url", url or daemon.url(""),
                               "--token-file", str(token or token_file), *args],
                              capture_output=True, text=True, cwd=elsewhere,
                              env=environment(HOME=str(elsewhere)), timeout=60)
    return run


SAME_OUTPUT = [
    ("tickets", "list"), ("tickets", "list", "--source", "datto", "--json"),
    ("tickets", "list", "--limit", "1"), ("tickets", "show", "1"),
    ("tickets", "show", "2", "--json"), ("alerts", "list"), ("alerts", "list", "--json"),
    ("alerts", "show", "1"), ("alerts", "trail", "remote-0"),
    ("alerts", "trail", "remote-1", "--json"), ("deliveries", "list"),
    ("deliveries", "list", "--status", "rejected", "--json"), ("deliveries", "show", "4"),
    ("outbox", "list"), ("sync", "history"), ("sync", "history", "--json"),
    ("rules", "test", str(MAIL)), ("rules", "test", str(MAIL), "--json"),
    ("tickets", "show", "424242"), ("alerts", "trail", "no-such-uid"),
    ("deliveries", "replay", "1"), ("outbox", "retry", "999"),
]


@pytest.mark.parametrize("args", SAME_OUTPUT, ids=" ".join)
async def test_a_remote_command_prints_what_the_server_prints(local: Run, remote: Run,
                                                              args: tuple[str, ...]) -> None:
    here, there = await asyncio.gather(asyncio.to_thread(local, *args),
                                       asyncio.to_thread(remote, *args))
    assert (there.returncode, there.stdout, there.stderr) == (
        here.returncode, here.stdout, here.stderr)
    assert here.stdout or here.stderr


async def test_remote_actions_act_on_the_daemon(local: Run, remote: Run) -> None:
    noted = await asyncio.to_thread(remote, "tickets", "note", "1", "checked", "--actor", "dana")
    assert noted.returncode == 0 and noted.stdout.startswith("note "), noted.stderr
    closed = await asyncio.to_thread(remote, "tickets", "close", "1", "--actor", "dana",
                                     "--json")
    assert closed.returncode == 0, closed.stderr
    assert json.loads(closed.stdout) == {"ticket_id": 1, "alerts_resolved": [1],
                                         "outbox_ids": [1]}
    shown = json.loads((await asyncio.to_thread(local, "tickets", "show", "1", "--json")).stdout)
    assert (shown["status"], shown["closed_by"]) == ("closed", "agent:dana")
    assert [note["body"] for note in shown["notes"]] == ["checked"]
    again = await asyncio.to_thread(remote, "tickets", "close", "1")
    assert (again.returncode, again.stderr) == (1, "alertd: ticket 1 is already closed\n")
    dropped = await asyncio.to_thread(remote, "outbox", "drop", "1")
    assert dropped.returncode == 0 and dropped.stdout == "outbox 1: dropped\n"
    replayed = await asyncio.to_thread(remote, "deliveries", "replay", "4")
    assert replayed.returncode == 1 and replayed.stdout.startswith(
        "delivery 4: failed: 'uid' must be")


async def test_remote_mistakes_are_told_plainly(remote: Run, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    refused = await asyncio.to_thread(remote, "tickets", "list", token=wrong)
    assert refused.returncode == 1
    assert f"refused the token in {wrong} (401)" in refused.stderr
    missing = await asyncio.to_thread(remote, "tickets", "list", token=tmp_path / "absent")
    assert missing.returncode == 2 and "cannot read it" in missing.stderr
    for url in ("alertd.example:8080", "http://127.0.0.1:port", "http://[::1",
                "http://127.0.0.1:9\x1b[2J"):
        bad_url = await asyncio.to_thread(remote, "tickets", "list", url=url)
        assert bad_url.returncode == 2 and "http(s)://HOST:PORT" in bad_url.stderr, url
        assert "\x1b" not in bad_url.stderr  # shown escaped
    # A path that is no token file: read only so far, and refused.
    zeros = await asyncio.to_thread(remote, "tickets", "list", token=Path("/dev/zero"))
    assert zeros.returncode == 2 and "holds no API token" in zeros.stderr
    # Not loopback: the token would cross a network in clear (0.0.0.0 refuses at once).
    in_clear = await asyncio.to_thread(remote, "tickets", "list", url="http://0.0.0.0:9")
    assert "warning: http:// sends the API token unencrypted to 0.0.0.0" in in_clear.stderr
    unreachable = await asyncio.to_thread(remote, "tickets", "list",
                                          url="http://127.0.0.1:9")
    assert unreachable.returncode == 1
    assert "http://127.0.0.1:9: cannot reach alertd" in unreachable.stderr
    for args in (("db", "upgrade"), ("sync", "datto"), ("rules", "check"), ("run",)):
        here_only = await asyncio.to_thread(remote, *args)
        assert here_only.returncode == 2, args
        assert "works on this machine" in here_only.stderr and "--url reaches" in \
            here_only.stderr
    # A local rules file is tested here, not there.
    with_rules = await asyncio.to_thread(remote, "rules", "test", str(MAIL), "--rules",
                                         str(MAIL))
    assert with_rules.returncode == 2 and "--url reaches" in with_rules.stderr
    with_userinfo = await asyncio.to_thread(remote, "tickets", "list",
                                            url="http://admin:pw@127.0.0.1:9")
    assert with_userinfo.returncode == 2 and "pw" not in with_userinfo.stderr


def test_alertd_url_in_the_environment_leaves_server_commands_local(tmp_path: Path) -> None:
    config = tmp_path / "alertd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n')
    env = environment(ALERTD_URL="http://127.0.0.1:9", ALERTD_TOKEN_FILE=str(tmp_path / "x"))

    def alertd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", *args, "--config", str(config)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    done = alertd("check-config")
    assert done.returncode == 0 and ": OK" in done.stdout, done.stderr
    # A sync runs here and reads its RMM secrets (here: one it cannot read, so it says so).
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[datto]\n'
                      f'api_key = "key"\napi_secret_file = "{tmp_path / "absent"}"\n')
    sync = alertd("sync", "datto", "--preview")
    assert sync.returncode == 2 and "datto.api_secret_file: cannot read" in sync.stderr

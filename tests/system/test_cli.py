"""The `alertd` command against a real database: listings, show, close, note, replay, db."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.core.events import Channel
from daemon.intake.inbound import Inbound
from daemon.intake.pipeline import Pipeline
from daemon.store.database import head_revision
from daemon.tickets.agent import AgentActions
from tests.conftest import database_toml
from tests.helpers import deliver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path: Path, write_config: Callable[..., Path], db_url: str
        ) -> Callable[..., subprocess.CompletedProcess[str]]:
    config = write_config(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                          + database_toml(db_url))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", *args, "--config", str(config)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
    return run


async def test_ticket_commands(pipeline: Pipeline, cli: Callable[..., subprocess.CompletedProcess[str]]
                               ) -> None:
    opened = await deliver(pipeline, "9f1c-uid", device="FS-ACME-01", message="Disk full")
    await deliver(pipeline, "other-uid", source="syncro")
    ticket_id = opened.events[0].ticket_id

    listing = cli("tickets", "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].split() == ["ID", "STATUS", "SOURCE", "ALERT",
                                                      "OPENED", "SUMMARY"]
    assert "FS-ACME-01 - Disk full" in listing.stdout
    as_json = json.loads(cli("tickets", "list", "--json", "--source", "datto").stdout)
    assert [t["alert"]["uid"] for t in as_json["items"]] == ["9f1c-uid"]

    note = cli("tickets", "note", str(ticket_id), "checked the server", "--actor", "dana")
    assert note.returncode == 0 and "added" in note.stdout
    closed = cli("tickets", "close", str(ticket_id), "--note", "freed 20 GB", "--actor", "dana")
    assert closed.returncode == 0, closed.stderr
    assert "alert" in closed.stdout and "upstream resolve queued" in closed.stdout
    again = cli("tickets", "close", str(ticket_id))
    assert again.returncode == 1 and "already closed" in again.stderr

    shown = json.loads(cli("tickets", "show", str(ticket_id), "--json").stdout)
    assert shown["status"] == "closed" and shown["closed_by"] == "agent:dana"
    assert [n["body"] for n in shown["notes"]] == ["checked the server", "freed 20 GB"]
    text = cli("tickets", "show", str(ticket_id)).stdout
    assert "status: closed" in text
    missing = cli("tickets", "show", "424242")
    assert missing.returncode == 1 and "ticket 424242 not found" in missing.stderr


async def test_alert_and_delivery_commands(
        pipeline: Pipeline, cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    await deliver(pipeline, "a-1", channel=Channel.SMTP)
    await deliver(pipeline, "a-1", channel=Channel.WEBHOOK)
    bad = await pipeline.submit(Inbound(Channel.API, "bad", b"not json",
                                                "application/json"))
    await pipeline.process(bad.delivery_id)

    alerts = json.loads(cli("alerts", "list", "--json", "--state", "open").stdout)
    [alert] = alerts["items"]
    assert alert["channels"] == ["smtp", "webhook"] and alert["occurrences"] == 2
    assert "channels: " in cli("alerts", "show", str(alert["id"])).stdout

    failed = json.loads(cli("deliveries", "list", "--status", "failed", "--json").stdout)
    assert [d["id"] for d in failed["items"]] == [bad.delivery_id]
    table = cli("deliveries", "list").stdout
    assert "the payload is not JSON" in table
    shown = json.loads(cli("deliveries", "show", str(bad.delivery_id), "--json").stdout)
    assert shown["payload"] == "not json"
    replay = cli("deliveries", "replay", str(bad.delivery_id))
    assert replay.returncode == 1 and "failed: the payload is not JSON" in replay.stdout
    processed = failed["items"][0]["id"] - 1
    refused = cli("deliveries", "replay", str(processed))
    assert refused.returncode == 1 and "processed already" in refused.stderr


def test_db_commands(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    before = cli("db", "current")
    assert before.returncode == 1 and "current: empty" in before.stdout
    refused = cli("tickets", "list")  # listing commands never migrate
    assert refused.returncode == 1 and "run 'alertd db upgrade'" in refused.stderr
    upgrade = cli("db", "upgrade")
    assert upgrade.returncode == 0 and f"upgraded empty -> {head_revision()}" in upgrade.stdout
    assert "up to date" in cli("db", "upgrade").stdout
    assert cli("db", "current").returncode == 0


def test_usage_errors_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "daemon", "tickets", "frobnicate"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_rules_check_and_test(tmp_path: Path) -> None:
    corpus = ROOT / "tests" / "fixtures" / "mail"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", "rules", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})

    assert "OK, 2 rule(s)" in run("check").stdout
    text = run("test", str(corpus / "datto-resolve-disk-plain.eml"))
    assert text.returncode == 0
    assert "Datto RMM Alert resolved: HIT -> resolve" in text.stdout
    assert "lifecycle: resolve datto alert 3f0c6a51-8d47-4c2b-9d0e-2a6f5b1c7e90" in text.stdout
    report = json.loads(run("test", str(corpus / "newsletter-no-alert.eml"), "--json").stdout)
    assert report["event"] is None and report["ignored_reason"].startswith("no rule matched")

    broken = tmp_path / "rules.toml"
    broken.write_text('[[rule]]\nname = "x"\nsubject = { regex = "(" }\n')
    failed = run("check", "--rules", str(broken))
    assert failed.returncode == 2
    assert f"{broken}:3: rule 'x': subject.regex: invalid regular expression" in failed.stderr
    config = tmp_path / "alertd.toml"
    config.write_text(f'[rules]\npath = "{broken}"\n')
    refused = subprocess.run([sys.executable, "-m", "daemon", "check-config", "--config",
                              str(config)], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "invalid regular expression" in refused.stderr


async def test_outbox_commands(pipeline: Pipeline, agent: AgentActions,
                               cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    for uid in ("uid-to-drop", "uid-to-retry"):
        raised = await deliver(pipeline, uid)
        ticket_id = raised.events[0].ticket_id
        assert ticket_id is not None
        await agent.close(ticket_id, "agent:dana")
    listing = cli("outbox", "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].split() == ["ID", "STATUS", "ACTION", "FOR", "WHAT",
                                                      "ATTEMPTS", "NEXT", "LAST", "ERROR"]
    rows = {r["target"]: r for r in json.loads(cli("outbox", "list", "--json").stdout)["items"]}
    assert {t: r["status"] for t, r in rows.items()} == {"uid-to-drop": "pending",
                                                        "uid-to-retry": "pending"}
    drop_id, retry_id = str(rows["uid-to-drop"]["id"]), str(rows["uid-to-retry"]["id"])

    dropped = cli("outbox", "drop", drop_id)
    assert dropped.returncode == 0 and f"outbox {drop_id}: dropped" in dropped.stdout
    again = cli("outbox", "retry", drop_id)
    assert again.returncode == 1 and "is dropped" in again.stderr
    retried = cli("outbox", "retry", retry_id)
    assert retried.returncode == 0 and "sends it at its next outbox run" in retried.stdout
    missing = cli("outbox", "drop", "424242")
    assert missing.returncode == 1 and "outbox row 424242 not found" in missing.stderr
    pending = json.loads(cli("outbox", "list", "--json", "--status", "pending").stdout)
    assert [r["target"] for r in pending["items"]] == ["uid-to-retry"]


HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202eFS-01\r"


async def test_untrusted_text_is_printed_terminal_safe(
        pipeline: Pipeline, cli: Callable[..., subprocess.CompletedProcess[str]],
        tmp_path: Path) -> None:
    """A mail sender's escape sequences are shown escaped in every human format; JSON is
    exact (json.dumps escapes them itself)."""
    opened = await deliver(pipeline, "esc-uid", device=HOSTILE, message="Disk\x1b[31m full")
    ticket_id = str(opened.events[0].ticket_id)
    for args in (("tickets", "list"), ("tickets", "show", ticket_id),
                 ("alerts", "list"), ("deliveries", "list")):
        shown = cli(*args)
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout, args
        assert "\x07" not in shown.stdout and "\r" not in shown.stdout, args
    # One-line fields were stored with each control run as one space; the bidi override
    # is text, shown escaped.
    assert "]0;owned [2J\\u202eFS-01 - Disk [31m full" in cli("tickets", "list").stdout
    assert "Disk\\x1b[31m full" in cli("tickets", "show", ticket_id).stdout
    exact = json.loads(cli("tickets", "show", ticket_id, "--json").stdout)
    assert "Disk\x1b[31m full" in exact["details"]

    mail = tmp_path / "hostile.eml"
    mail.write_bytes(b"From: rmm@example.com\r\nSubject: =?utf-8?q?Alert_=1B]0;x=07_-_Alert?="
                     b"{3f0c6a51-8d47-4c2b-9d0e-2a6f5b1c7e90}\r\n\r\nbody\r\n")
    tested = cli("rules", "test", str(mail))
    assert tested.returncode == 0, tested.stderr
    assert "\x1b" not in tested.stdout and "\\x1b]0;x\\x07" in tested.stdout


def test_files_alertd_creates_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "alertd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n')
    upgraded = subprocess.run(
        [sys.executable, "-m", "daemon", "db", "upgrade", "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        preexec_fn=lambda: os.umask(0o022))  # a shell's usual umask
    assert upgraded.returncode == 0, upgraded.stderr
    created = [state, *state.iterdir()]
    assert any(path.name == "alertd.db" for path in created)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in created}
    assert modes == {path.name: "0o700" if path.is_dir() else "0o600" for path in created}


def test_each_command_reads_only_the_secrets_it_needs(tmp_path: Path) -> None:
    """The IMAP password and the Datto key as systemd credentials the user cannot read: the
    database commands work, webhook-config reads only [datto]/[syncro], the daemon's own
    commands report the unreadable files."""
    unreadable = tmp_path / "credentials" / "imap-password"  # missing: as good as unreadable
    config = tmp_path / "alertd.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[[imap.accounts]]\nname = "alerts"\nhost = "mail.example.com"\n'
        f'username = "alerts"\npassword_file = "{unreadable}"\n'
        f'[datto]\nwebhook_secret_file = "{tmp_path / "nope"}"\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", *args, "--config", str(config)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    assert run("db", "upgrade").returncode == 0
    listing = run("tickets", "list")
    assert listing.returncode == 0, listing.stderr
    assert run("rules", "check").returncode == 0
    hooks = run("webhook-config", "datto")
    assert hooks.returncode == 2
    assert "datto.webhook_secret_file: cannot read the secret file" in hooks.stderr
    assert "imap" not in hooks.stderr
    checked = run("check-config")
    assert checked.returncode == 2
    assert "imap.accounts[0].password_file: cannot read the secret file" in checked.stderr

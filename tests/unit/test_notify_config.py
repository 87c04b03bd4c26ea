"""`[[notify]]` targets: what is refused, with its line, and secrets never echoed (issue 17)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config
from daemon.config.notify_sections import ChatTarget, EmailTarget, WebhookTarget

HOOK = """\
[[notify]]
name = "ops"
kind = "webhook"
url = "https://hooks.msp.example/alertd"
secret = "0123456789abcdef-secret"
events = ["ticket.opened"]
"""


def problems(write_config: Callable[[str], Path], text: str,
             environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(text), environ=environ or {})
    return str(caught.value)


def test_every_kind_loads(write_config: Callable[[str], Path], tmp_path: Path) -> None:
    (tmp_path / "teams-url").write_text("https://contoso.webhook.office.com/webhookb2/x\n")
    config = load_config(write_config(HOOK + f"""
[[notify]]
name = "chat"
kind = "teams"
url_file = "{tmp_path / 'teams-url'}"
events = ["ticket.opened", "alert.suppressed"]
priorities = ["Critical"]

[[notify]]
name = "slack"
kind = "slack"
url_env = "SLACK_URL"
events = ["ticket.closed"]

[[notify]]
name = "mail"
kind = "email"
smtp_host = "smtp.msp.example"
username = "alertd"
password_env = "SMTP_PASSWORD"
from = "alertd@msp.example"
to = ["noc@msp.example"]
events = ["ticket.opened"]
subject = "{{{{ ticket.title }}}}"
"""), environ={"SLACK_URL": "https://hooks.slack.com/services/T/B/x",
               "SMTP_PASSWORD": "relay-password"})
    hook, teams, slack, mail = config.notify
    assert isinstance(hook, WebhookTarget) and hook.storm_limit_per_minute == 10
    assert isinstance(teams, ChatTarget) and teams.url.get_secret_value().endswith("/x")
    assert isinstance(slack, ChatTarget) and "hooks.slack.com" not in repr(slack)
    assert isinstance(mail, EmailTarget)
    assert (mail.smtp_port, mail.security, mail.mail_from) == (587, "starttls",
                                                               "alertd@msp.example")
    assert "relay-password" not in repr(config)


@pytest.mark.parametrize(("extra", "says"), [
    ('events = ["ticket.openned"]', "alertd.toml:6: notify[0].events[0]: 'ticket.openned' is not one of \"ticket.opened\""),
    ("events = []", "events: expected array of length >= 1"),
    ('name = "Ops Team"', "a name is 1-64 lowercase"),
    ('url = "http://hooks.msp.example/x"', "expected an https:// URL"),
    ('secret = "short"', "at least 16 characters"),
    ('sources = ["Datto RMM"]', "is not a source name"),
    ('template = "{% if ticket %}unclosed"', "template line 1"),
    ('subject = "{{ ticket.title | uper }}"', "No filter named 'uper'"),
    ("storm_limit_per_minute = 0", "storm_limit_per_minute: expected int >= 1"),
])
def test_a_wrong_target_is_refused_with_its_line(
        write_config: Callable[[str], Path], extra: str, says: str) -> None:
    key = extra.split(" =")[0]
    text = "\n".join(line for line in HOOK.splitlines() if not line.startswith(f"{key} ="))
    said = problems(write_config, text + "\n" + extra + "\n")
    assert says in said
    assert "0123456789abcdef-secret" not in said


def test_names_are_unique(write_config: Callable[[str], Path]) -> None:
    assert "notify target names must be unique: ops" in problems(write_config, HOOK + HOOK)


def test_mail_passwords_go_over_tls_only(write_config: Callable[[str], Path]) -> None:
    said = problems(write_config, """\
[[notify]]
name = "mail"
kind = "email"
smtp_host = "smtp.msp.example"
security = "none"
username = "alertd"
password = "relay-password"
from = "alertd@msp.example"
to = ["noc@msp.example", "not an address"]
events = ["ticket.opened"]
""")
    assert "'not an address' is not a mail address" in said
    assert "relay-password" not in said


def test_url_and_secret_are_secrets_in_notify_entries_only(
        write_config: Callable[[str], Path]) -> None:
    said = problems(write_config, '[database]\nurl_file = "/etc/alertd/db-url"\n')
    assert "database.url_file: unknown key" in said


def test_watch_names_channels_alertd_has(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(
        '[datto]\nwebhook_secret = "datto-secret-0123456789"\n'
        '[[imap.accounts]]\nname = "alerts"\nhost = "imap.msp.example"\n'
        'username = "u"\npassword = "p"\n'
        '[watch]\n"webhook:datto" = "6h"\n"imap:alerts" = "2h"\n'), environ={})
    assert config.watch == {"webhook:datto": 6 * 3600, "imap:alerts": 2 * 3600}
    assert "'imap:other' is no channel alertd has" in problems(
        write_config, '[watch]\n"imap:other" = "2h"\n')
    assert "watch.smtp: '1m' is shorter than 5m" in problems(
        write_config, '[watch]\n"smtp" = "1m"\n')
    assert "'webhook:syncro': that webhook is off (no [syncro] webhook_token)" in problems(
        write_config, '[watch]\n"webhook:syncro" = "6h"\n')
    assert "'poll:datto' is no channel alertd has" in problems(
        write_config, '[watch]\n"poll:datto" = "6h"\n')

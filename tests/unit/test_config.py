"""Configuration: defaults, validation errors with key and line, secrets never echoed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config
from daemon.config.base import ListenAddress
from daemon.config.loading import packaged_rules_path


def test_no_file_gives_runnable_defaults(tmp_path: Path) -> None:
    config = load_config(None, environ={"HOME": str(tmp_path)})
    state = tmp_path / ".local/state/alertd"
    assert config.daemon.state_dir == state
    assert config.database.url == f"sqlite:///{state / 'alertd.db'}"
    assert config.http.listen == ListenAddress("127.0.0.1", 8080)
    assert config.smtp.listen == ListenAddress("127.0.0.1", 2525)
    assert config.rules.path == packaged_rules_path()
    assert config.public_url == "http://127.0.0.1:8080"


def test_systemd_state_directory_wins(tmp_path: Path) -> None:
    config = load_config(None, environ={"STATE_DIRECTORY": f"{tmp_path}/a:{tmp_path}/b"})
    assert config.daemon.state_dir == tmp_path / "a"


def issues_of(path: Path, environ: dict[str, str] | None = None) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return [(i.line, i.key, i.message) for i in caught.value.issues]


def test_syntax_error_names_the_line(write_config: Callable[..., Path]) -> None:
    path = write_config("""\
        [http]
        listen = "127.0.0.1:8080"
        public_url = "http://x
        """)
    [(line, key, message)] = issues_of(path)
    assert line == 3
    assert key == ""
    assert "TOML syntax error" in message


def test_unknown_keys_and_wrong_types_all_reported_with_lines(
        write_config: Callable[..., Path]) -> None:
    path = write_config("""\
        # comment line
        [http]
        listen = "127.0.0.1:8080"
        listne = "oops"

        [database]
        pool_size = "five"

        [smtp]
        enabled = "yes please"

        [bogus]
        x = 1
        """)
    assert issues_of(path) == [
        (4, "http.listne", "unknown key"),
        (7, "database.pool_size", "expected int, got str"),
        (10, "smtp.enabled", "expected bool, got str"),
        (12, "bogus", "unknown key"),
    ]


def test_nesting_deeper_than_the_parser_goes_is_an_error(
        write_config: Callable[..., Path]) -> None:
    path = write_config("[api]\ntokens = " + "[" * 5000 + "]" * 5000 + "\n")
    assert issues_of(path) == [(None, "", "TOML syntax error: arrays or tables nested too "
                                         "deeply")]


def test_every_key_of_a_table_is_checked_not_only_the_first(
        write_config: Callable[..., Path]) -> None:
    """msgspec stops at a file's first error; every key's own is reported, in nested tables
    and arrays too, and no secret's value is shown."""
    path = write_config("""\
        [smtp]
        listen = 2525
        tls_cert_file = 7
        users = [{ username = "", password = 5 }]
        [datto]
        api_key = { hidden = "hunter2-value" }
        [[notify]]
        name = "no-kind"
        [lifecycle]
        expire_after = { datto = 30 }
        [watch]
        smtp = 1970-01-01T00:00:00Z
        [sync.datto]
        site_map = { "abc" = { site = "x" } }
        """)
    found = issues_of(path)
    assert [(line, key) for line, key, _ in found] == [
        (2, "smtp.listen"), (3, "smtp.tls_cert_file"), (4, "smtp.users[0].password"),
        (4, "smtp.users[0].username"), (6, "datto.api_key"), (7, "notify[0].kind"),
        (10, "lifecycle.expire_after.datto"), (12, "watch.smtp"),
        (14, "sync.datto.site_map.abc.customer")]
    messages = dict(((line, key), message) for line, key, message in found)
    assert messages[(3, "smtp.tls_cert_file")] == "expected a path, got int"
    assert messages[(4, "smtp.users[0].username")] == "expected str of length >= 1"
    assert messages[(7, "notify[0].kind")] == "required key is missing"  # at its table
    assert "hunter2" not in "\n".join(messages.values())


def test_bad_values_are_explained(write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config(f"""\
        [http]
        listen = "localhost"
        [database]
        url = "mysql://root@localhost/x"
        [rules]
        path = "{tmp_path / 'missing.toml'}"
        [datto]
        api_url = "bordeaux"
        [syncro]
        webhook_auth = "hmac"
        """)
    found = {key: (line, message) for line, key, message in issues_of(path)}
    assert found["http.listen"][0] == 2 and "host:port" in found["http.listen"][1]
    assert found["database.url"][0] == 4 and "sqlite:///" in found["database.url"][1]
    assert found["rules.path"][0] == 6 and "not found" in found["rules.path"][1]
    assert found["datto.api_url"][0] == 8 and "zinfandel" in found["datto.api_url"][1]
    assert found["syncro.webhook_auth"][0] == 10


def test_secrets_by_value_file_and_env(write_config: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file\n")
    (tmp_path / "tokens").write_text("# api tokens\ntoken-number-0001\n\n  # indented comment\ntoken-number-0002\n")
    path = write_config(f"""\
        [api]
        tokens = ["token-number-0000"]
        token_file = "{tmp_path / 'tokens'}"
        [datto]
        api_key = "by-value"
        api_secret_file = "{tmp_path / 'secret'}"
        webhook_secret_env = "DATTO_HOOK"
        """)
    config = load_config(path, environ={"DATTO_HOOK": "from-env"})
    assert [t.get_secret_value() for t in config.api.tokens] == [
        "token-number-0000", "token-number-0001", "token-number-0002"]
    assert config.datto.api_key is not None
    assert config.datto.api_key.get_secret_value() == "by-value"
    assert config.datto.api_secret and config.datto.api_secret.get_secret_value() == "from-file"
    assert config.datto.webhook_secret
    assert config.datto.webhook_secret.get_secret_value() == "from-env"
    assert "by-value" not in repr(config) and "from-file" not in repr(config)


def test_secret_errors_name_the_key_never_the_value(write_config: Callable[..., Path],
                                                     tmp_path: Path) -> None:
    path = write_config(f"""\
        [datto]
        api_key = "hunter2-secret"
        api_key_env = "ALSO"
        api_secret_file = "{tmp_path / 'nope'}"
        [syncro]
        api_key_env = "UNSET_VAR"
        webhook_token = 12345678
        """)
    issues = issues_of(path)
    text = "\n".join(map(str, issues))
    assert (3, "datto.api_key_env", "give only one of api_key, api_key_env") in issues
    assert sum(key == "datto.api_key_env" for _, key, _ in issues) == 1
    assert any(key == "datto.api_secret_file" and line == 4 for line, key, _ in issues)
    assert (6, "syncro.api_key_env", "environment variable 'UNSET_VAR' is not set") in issues
    assert any(key == "syncro.webhook_token" and line == 7 for line, key, _ in issues)
    assert "hunter2" not in text and "12345678" not in text


def test_relative_rules_path_is_relative_to_the_config_file(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "my-rules.toml").write_text("")
    config = load_config(write_config('[rules]\npath = "my-rules.toml"\n'), environ={})
    assert config.rules.path == tmp_path / "my-rules.toml"


async def test_database_password_stays_out_of_the_url_and_logs(
        write_config: Callable[..., Path]) -> None:
    from sqlalchemy.engine import make_url

    from daemon.store.database import open_database, redact_url

    path = write_config("""\
        [database]
        url = "postgresql+asyncpg://alertd@db.example/alertd"
        password_env = "DB_PW"
        """)
    config = load_config(path, environ={"DB_PW": "pa55-word"})
    assert "pa55" not in config.database.url
    db = open_database(config.database)
    try:
        assert make_url(db.url).password == "pa55-word"
        assert "pa55" not in redact_url(db.url) and "pa55" not in db.display_url
    finally:
        await db.dispose()

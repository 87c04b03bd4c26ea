"""Loading the configuration: TOML validated once into a frozen `Config`, every error with its
key and line.

Secrets are given by value (`api_key = "..."`), by file (`api_key_file = "/path"`, first line
used) or by environment variable (`api_key_env = "NAME"`); they are resolved here, at startup,
and held as `SecretStr` so they never print. Nothing else in alertd reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon.config.base import UNREAD_SECRET
from daemon.config.notify_sections import NOTIFY_KINDS
from daemon.config.root import Config
from daemon.core.tomllines import Path_, format_path, line_of, locate_keys, syntax_error_line

SECRET_NAMES = ("api_key", "api_secret", "webhook_secret", "webhook_token",
                "previous_webhook_secret", "previous_webhook_token", "password")
# In [[notify]] entries only: a webhook's signing secret; a chat webhook's URL (a credential).
NOTIFY_SECRET_NAMES = ("secret", "url")


def packaged_rules_path() -> Path:
    """The example rules shipped inside the package (the default `[rules] path`)."""
    return Path(str(resources.files("daemon.rules").joinpath("rules.example.toml")))


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """systemd's $STATE_DIRECTORY when set, else the XDG state home of the user."""
    if environ.get("STATE_DIRECTORY"):
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(base).expanduser() / "alertd"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, as `check-config` prints it."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised by `load_config` with every issue found (not just the first)."""

    def __init__(self, issues: list[ConfigIssue]):
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


def _resolve_secrets(
    table: dict[str, Any], path: Path_, environ: Mapping[str, str],
    issues: list[tuple[Path_, str]], sections: Collection[str] | None = None
) -> None:
    """Replace `X_file` / `X_env` by `X` in place, recursively; record conflicts and misses.

    `sections`: the top-level sections whose secrets are read (None: all). The others get
    `UNREAD_SECRET`, unread: `alertd tickets list` must work where the IMAP password is a
    systemd credential only the service can read."""
    names = SECRET_NAMES + NOTIFY_SECRET_NAMES if path[:1] == ("notify",) else SECRET_NAMES
    for name in names:
        given = [k for k in (name, f"{name}_file", f"{name}_env") if k in table]
        if len(given) > 1:
            issues.append(((*path, given[1]), f"give only one of {', '.join(given)}"))
            for key in given:
                table.pop(key)  # reported once here, not again as unknown keys
            continue
        if not given or given[0] == name:
            continue
        if sections is not None and (not path or path[0] not in sections):
            table.pop(given[0])
            table[name] = UNREAD_SECRET
        elif f"{name}_file" in table:
            key = f"{name}_file"
            try:
                lines = Path(table.pop(key)).expanduser().read_text().splitlines()
            except (OSError, TypeError, UnicodeDecodeError) as err:
                issues.append(((*path, key), f"cannot read the secret file: {type(err).__name__}"))
                continue
            if not lines or not lines[0].strip():
                issues.append(((*path, key), "the secret file's first line is empty"))
            else:
                table[name] = lines[0].strip()
        elif f"{name}_env" in table:
            key = f"{name}_env"
            variable = table.pop(key)
            if not isinstance(variable, str) or not environ.get(variable):
                issues.append(((*path, key), f"environment variable {variable!r} is not set"))
            else:
                table[name] = environ[variable]
    for key, value in table.items():
        if isinstance(value, dict):
            _resolve_secrets(value, (*path, key), environ, issues, sections)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    _resolve_secrets(item, (*path, key, index), environ, issues, sections)


def token_lines(text: str) -> list[str]:
    """Tokens in a token file: one per line; blank lines and # comments are skipped."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _read_token_file(api: dict[str, Any], issues: list[tuple[Path_, str]]) -> None:
    if "token_file" not in api:
        return
    try:
        lines = Path(api["token_file"]).expanduser().read_text().splitlines()
    except (OSError, TypeError, UnicodeDecodeError) as err:
        issues.append((("api", "token_file"), f"cannot read the token file: {type(err).__name__}"))
        return
    extra = token_lines("\n".join(lines))
    if not extra:
        issues.append((("api", "token_file"), "the token file holds no token"))
    tokens = api.get("tokens", [])
    if isinstance(tokens, list):  # anything else is reported by validation
        api["tokens"] = [*tokens, *extra]


def load_config(path: Path | None, environ: Mapping[str, str] | None = None,
                secret_sections: Collection[str] | None = None) -> Config:
    """Read, resolve and validate a configuration file (`None`: defaults only).

    `secret_sections`: the top-level sections whose secret files and variables are read
    (None: every one); the others hold `UNREAD_SECRET`. Raises `ConfigError` listing every
    problem with its file, line and dotted key.
    """
    environ = os.environ if environ is None else environ
    name = str(path) if path else "<defaults>"
    text = ""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError([ConfigIssue(name, None, "", f"cannot read: {err}")]) from err
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line, message = syntax_error_line(err)
        raise ConfigError([ConfigIssue(name, line, "", f"TOML syntax error: {message}")]) from err

    lines = locate_keys(text)
    problems: list[tuple[Path_, str]] = []
    _resolve_secrets(raw, (), environ, problems, secret_sections)
    if isinstance(raw.get("api"), dict) and (secret_sections is None or "api" in secret_sections):
        _read_token_file(raw["api"], problems)

    # Defaults that depend on other values or on the host.
    daemon = raw.setdefault("daemon", {})
    if isinstance(daemon, dict):
        daemon.setdefault("state_dir", str(default_state_dir(environ)))
        state_dir = Path(str(daemon["state_dir"])).expanduser()
        database = raw.setdefault("database", {})
        if isinstance(database, dict):
            database.setdefault("url", f"sqlite:///{state_dir / 'alertd.db'}")
    rules = raw.setdefault("rules", {})
    if isinstance(rules, dict):
        rules.setdefault("path", str(packaged_rules_path()))
        rules["path"] = str(Path(str(rules["path"])).expanduser())
        if path is not None and not Path(str(rules["path"])).is_absolute():
            # Relative paths in a config file are relative to that file, not to the cwd.
            rules["path"] = str(path.parent / str(rules["path"]))

    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        for error in err.errors(include_url=False):
            loc = tuple(error["loc"])
            if len(loc) > 2 and loc[0] == "notify" and loc[2] in NOTIFY_KINDS:
                loc = (*loc[:2], *loc[3:])  # the kind pydantic chose is no key of the file
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif error["type"] == "missing":
                message = "required key is missing"
            problems.append((loc, message.removeprefix("Value error, ")))
    else:
        if not problems:
            return config
    issues = [ConfigIssue(name, line_of(lines, loc), format_path(loc), message)
              for loc, message in problems]
    issues.sort(key=lambda i: (i.line or 0, i.key))
    raise ConfigError(issues)

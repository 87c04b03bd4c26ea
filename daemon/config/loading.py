"""Loading the configuration: TOML validated once into a frozen `Config`, every error with its
key and line.

Secrets are given by value (`api_key = "..."`), by file (`api_key_file = "/path"`, first line
used) or by environment variable (`api_key_env = "NAME"`); they are resolved here, at startup,
and held as `Secret` (daemon.config.base) so they never print. Nothing else in alertd reads
the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from daemon.config.base import UNREAD_SECRET, FieldError, decode_value
from daemon.config.root import Config
from daemon.core.tomllines import (
    Path_,
    TomlError,
    format_path,
    line_of,
    locate_keys,
    parse_toml,
)

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


_AT = re.compile(r"(.*) - at `\$(.*)`", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`", re.S)
_MISSING = re.compile(r"Object missing required field `(.*)`", re.S)


def _concrete(kind: Any, raw: Any) -> Any:
    """`kind` without Annotated, and of a union the member `raw` is (its one type besides
    None, or the struct its `kind` tag names); None when that is not clear."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) not in (Union, UnionType):
        return kind
    options = [option for option in get_args(kind) if option is not type(None)]
    if len(options) == 1:
        return _concrete(options[0], raw)
    tagged = [option for option in options if isinstance(raw, dict) and raw.get(
        option.__struct_config__.tag_field) == option.__struct_config__.tag]
    return tagged[0] if tagged else None


def _problems(kind: Any, raw: Any, path: Path_ = ()) -> list[tuple[Path_, str]]:
    """Every problem of `raw` read as a `kind`. msgspec stops at the first, so a table or
    array that fails is looked into key by key: each key's own problems, else the first."""
    try:
        msgspec.convert(raw, kind, dec_hook=decode_value)
    except msgspec.ValidationError as err:
        first = _problem(err, kind, path)
    else:
        return []
    kind = _concrete(kind, raw)
    found: list[tuple[Path_, str]] = []
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct) and isinstance(raw, dict):
        fields = {info.encode_name: info for info in msgspec.structs.fields(kind)}
        for key, value in raw.items():
            if key in fields:
                found += _problems(fields[key].type, value, (*path, key))
            elif key != kind.__struct_config__.tag_field:
                found.append(((*path, key), "unknown key"))
        found += [((*path, name), "required key is missing")
                  for name, info in fields.items() if info.required and name not in raw]
    elif get_origin(kind) in (list, tuple) and isinstance(raw, list):
        for index, item in enumerate(raw):  # list[X], tuple[X, ...]
            found += _problems(get_args(kind)[0], item, (*path, index))
    elif get_origin(kind) is dict and isinstance(raw, dict):
        for key, value in raw.items():
            found += _problems(get_args(kind)[1], value, (*path, key))
    return found or [first]  # none of its parts: a check of the whole (or a length) failed


def _problem(err: msgspec.ValidationError, kind: Any, path: Path_) -> tuple[Path_, str]:
    """msgspec's error about a value of type `kind` at `path` as (key path, message):
    msgspec says "<message> - at `$.a[0].b`"."""
    text = str(err)
    match = _AT.fullmatch(text)
    message, where = (match.group(1), match.group(2)) if match else (text, "")
    loc: list[str | int] = list(path)
    for step in _STEP.finditer(where):
        if step.group(1) is not None:
            loc.append(step.group(1))
        elif step.group(2) is not None:
            loc.append(int(step.group(2)))
    if isinstance(err.__cause__, FieldError):  # a section's check names its key
        loc.append(err.__cause__.key)
    elif unknown := _UNKNOWN.fullmatch(message):
        loc.append(unknown.group(1))
        message = "unknown key"
    elif missing := _MISSING.fullmatch(message):
        loc.append(missing.group(1))
        message = "required key is missing"
    elif message.startswith("Invalid enum value") and not where and (
            choices := _choices(kind)):
        message = f"{message.removeprefix('Invalid enum value ')} is not one of {choices}"
    # msgspec's "Expected `int` >= 1, got `str`" as a technician reads it.
    return tuple(loc), message.replace("`", "").replace("Expected ", "expected ", 1)


def _choices(kind: Any) -> str:
    """The values a Literal or Enum type takes, as the file writes them ("" if neither)."""
    kind = _concrete(kind, None)
    if get_origin(kind) is Literal:
        values = get_args(kind)
    elif isinstance(kind, type) and issubclass(kind, Enum):
        values = tuple(member.value for member in kind)
    else:
        return ""
    return ", ".join(f'"{value}"' for value in values)


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
        raw = parse_toml(text)
    except TomlError as err:
        raise ConfigError([ConfigIssue(name, err.line, "", f"TOML syntax error: {err.message}")]
                          ) from err

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
        config = msgspec.convert(raw, Config, dec_hook=decode_value)
    except msgspec.ValidationError:
        problems.extend(_problems(Config, raw))
    else:
        if not problems:
            return config
    issues = [ConfigIssue(name, line_of(lines, loc), format_path(loc), message)
              for loc, message in problems]
    issues.sort(key=lambda i: (i.line or 0, i.key))
    raise ConfigError(issues)

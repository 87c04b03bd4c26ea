"""Typed configuration: TOML validated once into frozen objects, every error with key and line.

Secrets are given by value (`api_key = "..."`), by file (`api_key_file = "/path"`, first line
used) or by environment variable (`api_key_env = "NAME"`); they are resolved here, at startup,
and held as `SecretStr` so they never print. Nothing else in alertd reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.tomllines import Path_, format_path, line_of, locate_keys, syntax_error_line
from daemon.webhooks.datto import FieldTarget

SECRET_NAMES = ("api_key", "api_secret", "webhook_secret", "webhook_token", "password")
DATTO_PLATFORMS = ("pinotage", "merlot", "concord", "vidal", "zinfandel", "syrah")


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
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _parse_listen(value: Any) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a string 'host:port'")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected 'host:port' (e.g. '127.0.0.1:8080'), got {value!r}")
    return ListenAddress(host.strip("[]"), int(port))


Listen = Annotated[ListenAddress, BeforeValidator(_parse_listen)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonConfig(Section):
    state_dir: Path
    drain_timeout_s: float = Field(default=10.0, gt=0, le=300)
    watchdog: bool = True

    @field_validator("state_dir")
    @classmethod
    def _expand(cls, path: Path) -> Path:
        return path.expanduser()


class LoggingConfig(Section):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DatabaseConfig(Section):
    url: str
    auto_migrate: bool = True
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    pool_size: int = Field(default=5, ge=1, le=100)
    schema_: str = Field(default="", alias="schema", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    password: SecretStr | None = None  # PostgreSQL: kept out of the URL, e.g. password_file

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+asyncpg://")):
            raise ValueError(
                "expected 'sqlite:///PATH' or 'postgresql+asyncpg://USER@HOST/DB', got "
                f"{url.split('://')[0]!r}://..."
            )
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url).port  # noqa: B018 - parses the port: "54x2" fails here
        except (ArgumentError, ValueError):
            raise ValueError("not a valid database URL (check the host and port)") from None
        return url


class HttpConfig(Section):
    listen: Listen = ListenAddress("127.0.0.1", 8080)
    public_url: str = ""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return url.rstrip("/")


class ApiConfig(Section):
    tokens: tuple[SecretStr, ...] = ()
    token_file: Path | None = None

    @field_validator("tokens")
    @classmethod
    def _long_enough(cls, tokens: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(len(t.get_secret_value()) < 16 for t in tokens):
            raise ValueError("API tokens must be at least 16 characters long")
        return tokens


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class SmtpUser(Section):
    username: str = Field(min_length=1)
    password: SecretStr


class SmtpConfig(Section):
    enabled: bool = True
    listen: Listen = ListenAddress("127.0.0.1", 2525)
    hostname: str = ""  # "" = this host's FQDN
    max_message_bytes: int = Field(default=26_214_400, ge=1024)
    # Addresses (alerts@example.com) or domains (example.com); empty: any recipient.
    accept_recipients: tuple[str, ...] = ()
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    require_tls: bool = False
    users: tuple[SmtpUser, ...] = ()
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _tls_pair(self) -> SmtpConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        if self.require_tls and self.tls_cert_file is None:
            raise ValueError("require_tls needs tls_cert_file and tls_key_file")
        return self


class ImapAccount(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default by tls: 993 / 143
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: str | None = None  # CA bundle for a private CA; default: the system's
    verify_tls: bool = True  # false only for a self-signed test server
    username: str = Field(min_length=1)
    password: SecretStr
    folder: str = "INBOX"
    processed_folder: str = ""  # move processed mail here; "" = flag it as seen
    failed_folder: str = ""  # move mail that cannot be processed here; "" = leave it unread
    idle: bool = True
    poll_interval_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=200, ge=1, le=5000)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> ImapAccount:
        if self.tls == "none" and self.host not in LOOPBACK_HOSTS:
            raise ValueError("tls = \"none\" is allowed only for a loopback host "
                             "(the password would cross the network in clear)")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)


class ImapConfig(Section):
    accounts: tuple[ImapAccount, ...] = ()

    @field_validator("accounts")
    @classmethod
    def _unique_names(cls, accounts: tuple[ImapAccount, ...]) -> tuple[ImapAccount, ...]:
        names = [a.name for a in accounts]
        if len(names) != len(set(names)):
            raise ValueError("account names must be unique")
        return accounts


class RulesConfig(Section):
    path: Path

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        # Its content is checked by the rules loader (check-config, run, SIGHUP, rules check).
        if not path.is_file():
            raise ValueError(f"rules file not found: {path}")
        return path


class PipelineConfig(Section):
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_base_s: float = Field(default=30.0, gt=0)
    sweep_interval_s: float = Field(default=30.0, gt=0)


class DattoConfig(Section):
    api_url: str = ""
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # A key of the webhook body's free `fields` object -> the ticket field it fills.
    webhook_fields: dict[str, FieldTarget] = {}
    # Seconds between polls of the open alerts (0: off). Halo's integration polls about every
    # 15 minutes; the reads cost one request per 250 alerts.
    poll_interval_s: float = Field(default=0.0, ge=0)

    @property
    def api_configured(self) -> bool:
        return bool(self.api_url and self.api_key and self.api_secret)

    @field_validator("api_url")
    @classmethod
    def _platform_or_url(cls, value: str) -> str:
        if value and value not in DATTO_PLATFORMS and not value.startswith(("https://", "http://")):
            raise ValueError(
                f"expected a platform name ({', '.join(DATTO_PLATFORMS)}) or a full API URL"
            )
        return value


class SyncroConfig(Section):
    api_url: str = ""
    api_key: SecretStr | None = None
    webhook_auth: Literal["none", "token"] = "token"
    webhook_token: SecretStr | None = None
    poll_interval_s: float = Field(default=0.0, ge=0)
    # Re-read each webhook's alert by the API and trust its `resolved` flag over the body's.
    verify_webhooks: bool = False

    @field_validator("api_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("expected the API URL, e.g. https://example.syncromsp.com/api/v1")
        return value

    @property
    def api_configured(self) -> bool:
        return bool(self.api_url and self.api_key)


class OutboxConfig(Section):
    """How alertd sends what it owes the RMMs (resolve calls after an agent closes a ticket)."""

    max_attempts: int = Field(default=10, ge=1, le=1000)
    retry_base_s: float = Field(default=30.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)
    lease_s: float = Field(default=300.0, gt=0)
    interval_s: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=64)


# --- sync (daemon.sync): what the daily import writes, and how it matches ---------------------

DEFAULT_MATCH_EXCLUSIONS = ("", "none", "n/a", "na", "null", "unknown", "0",
                            "to be filled by o.e.m.", "default string",
                            "system serial number", "not specified")


class LocalSiteRef(Section):
    """An existing alertd customer (by exact name) and optionally one of its sites (by name;
    default: its first site)."""

    customer: str = Field(min_length=1)
    site: str | None = None


class FieldMapping(Section):
    """One asset field filled from the RMM: `field` (an alertd asset field: `serial`, `name`,
    or any other key, kept in the asset's fields) <- exactly one of `core` (a field of the
    RMM's record, e.g. `asset_serial`, `warrantyDate`), `custom` (a Syncro custom field by its
    exact name) or `udf` (a Datto UDF number)."""

    field: str = Field(min_length=1, max_length=64)
    core: str | None = None
    custom: str | None = None
    udf: int | None = Field(default=None, ge=1, le=300)
    # text | textarea | date | checkbox | dropdown; default: the kind Syncro's /settings names
    # for a custom field, text otherwise.
    kind: Literal["text", "textarea", "date", "checkbox", "dropdown"] | None = None
    only_when_empty: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> FieldMapping:
        given = [name for name in ("core", "custom", "udf") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of core, custom or udf")
        if self.field.endswith("_id") or self.field in ("id", "fields", "active"):
            raise ValueError(f"field {self.field!r} is set by the sync itself; map into "
                             "serial, name or a field name of your own")
        return self


class SyncSourceCommon(Section):
    # What the scheduled sync imports (off until switched on; `alertd sync --customers
    # --assets` can import either by hand).
    customers: bool = False  # Syncro customers and contacts; Datto sites
    assets: bool = False  # Syncro assets; Datto devices
    asset_group: str = Field(default="", max_length=255)  # new asset types are created here
    # How an asset without a stored RMM id finds an existing alertd asset: "serial", "name"
    # or "" (never: always create).
    match_field: Literal["serial", "name", ""] = "serial"
    field_mappings: list[FieldMapping] = []


def _mappings_of(source: str, mappings: list[FieldMapping], refused: str) -> None:
    """Refuse a mapping kind the source does not have (Syncro: no UDFs; Datto: no custom
    fields by name)."""
    for mapping in mappings:
        if getattr(mapping, refused) is not None:
            raise ValueError(f"field {mapping.field!r}: {source} has no {refused} fields; use "
                             + ("custom or core" if refused == "udf" else "udf or core"))


class SyncSyncroConfig(SyncSourceCommon):
    asset_group: str = Field(default="Syncro", max_length=255)
    top_level: str = Field(default="", max_length=255)  # created customers get this
    # Syncro customer id -> the alertd customer (and site) it is.
    customer_map: dict[str, LocalSiteRef] = {}
    # Where assets go whose Syncro customer is neither mapped, matched nor imported.
    default_site: LocalSiteRef | None = None
    deactivate_missing: bool = False  # deactivate assets that disappear from Syncro

    @model_validator(mode="after")
    def _syncro_mappings(self) -> SyncSyncroConfig:
        _mappings_of("Syncro", self.field_mappings, "udf")
        return self


class SyncDattoConfig(SyncSourceCommon):
    asset_group: str = Field(default="Datto RMM", max_length=255)
    match_field: Literal["serial", "name", ""] = "name"
    top_level: str = Field(default="", max_length=255)
    # customer_per_site: each Datto site becomes a customer with one site.
    # sites_under_customer: each new Datto site becomes a site of `customer`.
    site_mode: Literal["customer_per_site", "sites_under_customer"] = "customer_per_site"
    customer: str = Field(default="", max_length=255)
    # Datto site uid -> the alertd customer and site it is (several may share a customer).
    site_map: dict[str, LocalSiteRef] = {}
    fetch_serials: bool = False  # one audit call per device without a known serial
    deactivate_deleted: bool = False
    last_user_as_end_user: bool = False

    @model_validator(mode="after")
    def _datto_mappings(self) -> SyncDattoConfig:
        _mappings_of("Datto", self.field_mappings, "custom")
        return self

    @model_validator(mode="after")
    def _customer_for_mode(self) -> SyncDattoConfig:
        if self.site_mode == "sites_under_customer" and not self.customer:
            raise ValueError("site_mode = \"sites_under_customer\" needs customer = \"<name>\"")
        return self


class SyncConfig(Section):
    # A crontab line (minute hour day month weekday, local time) or "off".
    schedule: str = "30 2 * * *"
    site_name: str = Field(default="Main", min_length=1, max_length=255)
    # The end user of alert tickets with neither an asset user nor a customer default contact
    # (Halo's "New Alert User", created on first use); "" (the default) leaves them without.
    fallback_end_user: str = Field(default="", max_length=255)
    match_exclusions: list[str] = list(DEFAULT_MATCH_EXCLUSIONS)
    syncro: SyncSyncroConfig = SyncSyncroConfig()
    datto: SyncDattoConfig = SyncDattoConfig()

    @field_validator("schedule")
    @classmethod
    def _crontab(cls, value: str) -> str:
        if value != "off":
            try:
                CronTrigger.from_crontab(value)
            except ValueError as err:
                raise ValueError(f"expected a crontab line such as \"30 2 * * *\" or "
                                 f"\"off\": {err}") from None
        return value


class Config(Section):
    """The whole configuration. Build it with `load_config`, never from the environment."""

    daemon: DaemonConfig
    logging: LoggingConfig = LoggingConfig()
    database: DatabaseConfig
    http: HttpConfig = HttpConfig()
    api: ApiConfig = ApiConfig()
    smtp: SmtpConfig = SmtpConfig()
    imap: ImapConfig = ImapConfig()
    rules: RulesConfig
    pipeline: PipelineConfig = PipelineConfig()
    datto: DattoConfig = DattoConfig()
    syncro: SyncroConfig = SyncroConfig()
    outbox: OutboxConfig = OutboxConfig()
    sync: SyncConfig = SyncConfig()

    @property
    def public_url(self) -> str:
        return self.http.public_url or f"http://{self.http.listen}"


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
    table: dict[str, Any], path: Path_, environ: Mapping[str, str], issues: list[tuple[Path_, str]]
) -> None:
    """Replace `X_file` / `X_env` by `X` in place, recursively; record conflicts and misses."""
    for name in SECRET_NAMES:
        given = [k for k in (name, f"{name}_file", f"{name}_env") if k in table]
        if len(given) > 1:
            issues.append(((*path, given[1]), f"give only one of {', '.join(given)}"))
            for key in given:
                table.pop(key)  # reported once here, not again as unknown keys
            continue
        if f"{name}_file" in table:
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
            _resolve_secrets(value, (*path, key), environ, issues)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    _resolve_secrets(item, (*path, key, index), environ, issues)


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


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, resolve and validate a configuration file (`None`: defaults only).

    Raises `ConfigError` listing every problem with its file, line and dotted key.
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
    _resolve_secrets(raw, (), environ, problems)
    if isinstance(raw.get("api"), dict):
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

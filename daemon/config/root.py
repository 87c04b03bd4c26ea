"""The whole configuration: one frozen object of typed sections (see `daemon.config.loading`)."""

from __future__ import annotations

from msgspec import field

from daemon.config.base import FieldError, Section, SilenceS
from daemon.config.http_sections import ApiConfig, ConsoleConfig, HttpConfig
from daemon.config.lifecycle_sections import LifecycleConfig
from daemon.config.mail_sections import ImapConfig, SmtpConfig
from daemon.config.notify_sections import NotifyTarget, unique_names
from daemon.config.rmm_sections import DattoConfig, OutboxConfig, SyncroConfig
from daemon.config.runtime_sections import (
    DaemonConfig,
    DatabaseConfig,
    LoggingConfig,
    PipelineConfig,
    RulesConfig,
)
from daemon.config.sync_sections import SyncConfig
from daemon.config.watch_sections import check_channels


class Config(Section, kw_only=True):
    """The whole configuration. Build it with `load_config`, never from the environment."""

    daemon: DaemonConfig
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    database: DatabaseConfig
    http: HttpConfig = field(default_factory=HttpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    imap: ImapConfig = field(default_factory=ImapConfig)
    rules: RulesConfig
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    datto: DattoConfig = field(default_factory=DattoConfig)
    syncro: SyncroConfig = field(default_factory=SyncroConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    notify: tuple[NotifyTarget, ...] = ()
    # Channel ("webhook:datto", "imap:<account>", ...) -> the longest silence it may have.
    watch: dict[str, SilenceS] = {}

    def __post_init__(self) -> None:
        try:
            unique_names(self.notify)
        except ValueError as err:
            raise FieldError("notify", str(err)) from None
        try:
            check_channels(self.watch, [account.name for account in self.imap.accounts],
                           {"datto": bool(self.datto.webhook_secret),
                            "syncro": bool(self.syncro.webhook_token)})
        except ValueError as err:
            raise FieldError("watch", str(err)) from None

    @property
    def public_url(self) -> str:
        return self.http.public_url or f"http://{self.http.listen}"

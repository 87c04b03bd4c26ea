"""The whole configuration: one frozen object of typed sections (see `daemon.config.loading`)."""

from __future__ import annotations

from pydantic import ValidationInfo, field_validator

from daemon.config.base import Section
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
from daemon.config.watch_sections import SilenceS, check_channels


class Config(Section):
    """The whole configuration. Build it with `load_config`, never from the environment."""

    daemon: DaemonConfig
    logging: LoggingConfig = LoggingConfig()
    database: DatabaseConfig
    http: HttpConfig = HttpConfig()
    api: ApiConfig = ApiConfig()
    console: ConsoleConfig = ConsoleConfig()
    smtp: SmtpConfig = SmtpConfig()
    imap: ImapConfig = ImapConfig()
    rules: RulesConfig
    pipeline: PipelineConfig = PipelineConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    datto: DattoConfig = DattoConfig()
    syncro: SyncroConfig = SyncroConfig()
    outbox: OutboxConfig = OutboxConfig()
    sync: SyncConfig = SyncConfig()
    notify: tuple[NotifyTarget, ...] = ()
    # Channel ("webhook:datto", "imap:<account>", ...) -> the longest silence it may have.
    watch: dict[str, SilenceS] = {}

    _notify = field_validator("notify")(unique_names)

    @field_validator("watch")
    @classmethod
    def _watched_channels_exist(cls, watch: dict[str, int], info: ValidationInfo
                                ) -> dict[str, int]:
        # Sections validated before (declared above); absent when invalid themselves.
        imap, datto, syncro = (info.data.get(name) for name in ("imap", "datto", "syncro"))
        check_channels(watch, [account.name for account in imap.accounts] if imap else [],
                       {"datto": bool(datto and datto.webhook_secret),
                        "syncro": bool(syncro and syncro.webhook_token)})
        return watch

    @property
    def public_url(self) -> str:
        return self.http.public_url or f"http://{self.http.listen}"


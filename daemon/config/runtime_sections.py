"""Sections of the running service itself: `[daemon]`, `[logging]`, `[database]`,
`[pipeline]`, `[rules]`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from daemon.config.base import Section


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


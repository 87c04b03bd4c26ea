"""Sections of the running service itself: `[daemon]`, `[logging]`, `[database]`,
`[pipeline]`, `[rules]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, field
from msgspec.structs import force_setattr

from daemon.config.base import FieldError, Secret, Section


class DaemonConfig(Section, kw_only=True):
    state_dir: Path
    drain_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    watchdog: bool = True

    def __post_init__(self) -> None:
        force_setattr(self, "state_dir", self.state_dir.expanduser())


class LoggingConfig(Section, kw_only=True):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DatabaseConfig(Section, kw_only=True):
    url: str
    auto_migrate: bool = True
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    pool_size: Annotated[int, Meta(ge=1, le=100)] = 5
    schema_: Annotated[str, Meta(pattern=r"^([a-z_][a-z0-9_]{0,62})?$")] = field(
        default="", name="schema")
    password: Secret | None = None  # PostgreSQL: kept out of the URL, e.g. password_file

    def __post_init__(self) -> None:
        if not self.url.startswith(("sqlite://", "postgresql://", "postgresql+asyncpg://")):
            raise FieldError("url", "expected 'sqlite:///PATH' or "
                             "'postgresql+asyncpg://USER@HOST/DB', got "
                             f"{self.url.split('://')[0]!r}://...")
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(self.url).port  # noqa: B018 - parses the port: "54x2" fails here
        except (ArgumentError, ValueError):
            raise FieldError("url", "not a valid database URL (check the host and port)"
                             ) from None


class RulesConfig(Section, kw_only=True):
    path: Path

    def __post_init__(self) -> None:
        # Its content is checked by the rules loader (check-config, run, SIGHUP, rules check).
        if not self.path.is_file():
            raise FieldError("path", f"rules file not found: {self.path}")


class PipelineConfig(Section, kw_only=True):
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 5
    retry_base_s: Annotated[float, Meta(gt=0)] = 30.0
    sweep_interval_s: Annotated[float, Meta(gt=0)] = 30.0

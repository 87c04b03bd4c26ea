"""Sections of the HTTP listener, its API and the web console: `[http]`, `[api]`, `[console]`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from daemon.config.base import Listen, ListenAddress, Section


class HttpConfig(Section):
    listen: Listen = ListenAddress("127.0.0.1", 8080)
    public_url: str = ""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Limits against slow and abusive clients (daemon/http/listener.py): a request head must
    # be complete this long after the accept or its first byte, its body this long after
    # the head; an idle keep-alive connection is closed after keepalive_timeout_s; one
    # connection more than max_connections is answered 503 (file descriptors are finite).
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    keepalive_timeout_s: float = Field(default=75.0, gt=0, le=3600)
    max_connections: int = Field(default=512, ge=1, le=100_000)

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


class ConsoleConfig(Section):
    """The web console at /ui/ (signed in with an API token)."""

    # A session ends after this long without a request (a working day by default: the
    # console stays open on a technician's screen; sign out ends it at once).
    session_idle_s: float = Field(default=28_800.0, ge=60, le=2_592_000)

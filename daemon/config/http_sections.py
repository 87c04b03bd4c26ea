"""Sections of the HTTP listener, its API and the web console: `[http]`, `[api]`, `[console]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from msgspec import Meta
from msgspec.structs import force_setattr

from daemon.config.base import FieldError, ListenAddress, Secret, Section


class HttpConfig(Section, kw_only=True):
    listen: ListenAddress = ListenAddress("127.0.0.1", 8080)
    public_url: str = ""
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 1_048_576
    # Limits against slow and abusive clients (daemon/http/listener.py): a request head must
    # be complete this long after the accept or its first byte, its body this long after
    # the head; an idle keep-alive connection is closed after keepalive_timeout_s; one
    # connection more than max_connections is answered 503 (file descriptors are finite).
    header_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    body_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    keepalive_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 75.0
    max_connections: Annotated[int, Meta(ge=1, le=100_000)] = 512

    def __post_init__(self) -> None:
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise FieldError("public_url", "expected an http:// or https:// URL")
        force_setattr(self, "public_url", self.public_url.rstrip("/"))


class ApiConfig(Section, kw_only=True):
    tokens: tuple[Secret, ...] = ()
    token_file: Path | None = None

    def __post_init__(self) -> None:
        if any(len(t.get_secret_value()) < 16 for t in self.tokens):
            raise FieldError("tokens", "API tokens must be at least 16 characters long")


class ConsoleConfig(Section, kw_only=True):
    """The web console at /ui/ (signed in with an API token)."""

    # A session ends after this long without a request (a working day by default: the
    # console stays open on a technician's screen; sign out ends it at once).
    session_idle_s: Annotated[float, Meta(ge=60, le=2_592_000)] = 28_800.0

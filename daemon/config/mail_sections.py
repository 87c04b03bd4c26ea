"""Sections of the email intake: `[smtp]` and `[[imap.accounts]]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta

from daemon.config.base import LOOPBACK_HOSTS, FieldError, ListenAddress, Secret, Section

NonEmpty = Annotated[str, Meta(min_length=1)]


class SmtpUser(Section, kw_only=True):
    username: NonEmpty
    password: Secret


class SmtpConfig(Section, kw_only=True):
    enabled: bool = True
    listen: ListenAddress = ListenAddress("127.0.0.1", 2525)
    hostname: str = ""  # "" = this host's FQDN
    max_message_bytes: Annotated[int, Meta(ge=1024)] = 26_214_400
    # Addresses (alerts@example.com) or domains (example.com); empty: any recipient.
    accept_recipients: tuple[str, ...] = ()
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    require_tls: bool = False
    users: tuple[SmtpUser, ...] = ()
    # Idle timeout: a session is closed when no command arrives for this long (aiosmtpd's
    # `timeout`; it restarts at each command, so DATA and its storing must fit in it too).
    timeout_s: Annotated[float, Meta(gt=0)] = 60.0
    # Open sessions at once, in all and per client address; a connection over either cap is
    # answered 421 and closed. Senders of alert mail hold one or two sessions; 100 bounds the
    # memory (each may buffer up to max_message_bytes) and 10 per address keeps one client
    # from taking every slot.
    max_sessions: Annotated[int, Meta(ge=1)] = 100
    max_sessions_per_client: Annotated[int, Meta(ge=1)] = 10

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        if self.require_tls and self.tls_cert_file is None:
            raise ValueError("require_tls needs tls_cert_file and tls_key_file")


class ImapAccount(Section, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    host: NonEmpty
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None  # default by tls: 993 / 143
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: str | None = None  # CA bundle for a private CA; default: the system's
    verify_tls: bool = True  # false only for a self-signed test server
    username: NonEmpty
    password: Secret
    folder: str = "INBOX"
    processed_folder: str = ""  # move processed mail here; "" = flag it as seen
    failed_folder: str = ""  # move mail that cannot be processed here; "" = leave it unread
    idle: bool = True
    poll_interval_s: Annotated[float, Meta(gt=0)] = 60.0
    timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    batch_size: Annotated[int, Meta(ge=1, le=5000)] = 200
    # Larger messages are not fetched: they are recorded as rejected deliveries (without
    # their body) and moved to failed_folder. The default matches [smtp] max_message_bytes.
    max_message_bytes: Annotated[int, Meta(ge=1024)] = 26_214_400

    def __post_init__(self) -> None:
        if self.tls == "none" and self.host not in LOOPBACK_HOSTS:
            raise ValueError("tls = \"none\" is allowed only for a loopback host "
                             "(the password would cross the network in clear)")

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)


class ImapConfig(Section, kw_only=True):
    accounts: tuple[ImapAccount, ...] = ()

    def __post_init__(self) -> None:
        names = [a.name for a in self.accounts]
        if len(names) != len(set(names)):
            raise FieldError("accounts", "account names must be unique")

"""The building blocks of every configuration section: frozen pydantic models that refuse
unknown keys, and listen addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_MAIL_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")
# What a secret given by file or environment holds for a command that does not read it.
UNREAD_SECRET = "(not read by this command)"  # noqa: S105 - a placeholder, not a secret


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


def _mail_address(value: Any) -> Any:
    if isinstance(value, str) and not _MAIL_ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not a mail address (the address only, without a "
                         "display name)")
    return value


# A bare mail address ("noc@msp.example"), as SMTP envelopes and From headers compare it.
MailAddress = Annotated[str, BeforeValidator(_mail_address)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


"""The building blocks of every configuration section: frozen msgspec structs that refuse
unknown keys, the value types TOML has no word for (listen addresses, mail addresses, paths,
secrets, durations), and `FieldError` for a check that names its key.

msgspec rather than pydantic: it validates the same TOML tables into the same frozen typed
objects, but costs ~1 MiB of an idle alertd where pydantic and its models cost ~10 (issue 15,
item 5); pydantic stays for the HTTP API's request models, loaded on the API's first request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from daemon.core.durations import parse_duration, parse_expire_after

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_MAIL_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")
# What a secret given by file or environment holds for a command that does not read it.
UNREAD_SECRET = "(not read by this command)"  # noqa: S105 - a placeholder, not a secret


# `kw_only` is each class's own (every section sets it: keys are named, in any order); `frozen`
# and `forbid_unknown_fields` are inherited.
if TYPE_CHECKING:  # msgspec's stub does not tell type checkers that subclasses are frozen
    from typing_extensions import dataclass_transform

    @dataclass_transform(field_specifiers=(msgspec.field,), frozen_default=True)
    class _FrozenStruct(msgspec.Struct, frozen=True, kw_only=True):
        pass
else:
    _FrozenStruct = msgspec.Struct


class Section(_FrozenStruct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A configuration section: its keys are the struct's fields; any other key is refused."""


class FieldError(ValueError):
    """Raised by a section's `__post_init__` about one of its keys: the error is reported at
    that key (and its line), not at the section's table."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Secret:
    """A secret from the configuration: it prints as stars (repr, str, logs, errors) and
    gives its value only when asked by name."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:  # a reload compares sections
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:  # as pydantic's SecretStr: an empty secret is no secret
        return bool(self._value)


class ListenAddress:
    """Where a listener binds. (Not a dataclass: msgspec would read one from a table, and
    the file says "host:port".)"""

    __slots__ = ("host", "port")

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ListenAddress)
                and (other.host, other.port) == (self.host, self.port))

    def __hash__(self) -> int:
        return hash((self.host, self.port))

    def __repr__(self) -> str:
        return f"ListenAddress({self.host!r}, {self.port})"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class MailAddress(str):
    """A bare mail address ("noc@msp.example"), as SMTP envelopes and From headers compare
    it."""

    __slots__ = ()


class DurationS(int):
    """Whole seconds, written with a unit: "0s" (off), "90s", "30m", "1h", "7d"."""

    __slots__ = ()


class ExpireAfterS(int):
    """Whole seconds, at least 1m, written with a unit ("15m", "1h", "7d"; a plain number is
    refused: its unit is unclear)."""

    __slots__ = ()


class SilenceS(int):
    """The longest silence of a watched channel: a duration of at least 5m."""

    __slots__ = ()


MIN_SILENCE_S = 300  # the [watch] check runs every minute; less would flap on a quiet hour


def _listen(value: Any) -> ListenAddress:
    if not isinstance(value, str):
        raise ValueError("expected a string 'host:port'")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected 'host:port' (e.g. '127.0.0.1:8080'), got {value!r}")
    return ListenAddress(host.strip("[]"), int(port))


def _mail_address(value: Any) -> MailAddress:
    if not isinstance(value, str) or not _MAIL_ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not a mail address (the address only, without a "
                         "display name)")
    return MailAddress(value)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what}, got {type(value).__name__}")
    return value


def _silence(value: Any) -> SilenceS:
    seconds = parse_duration(value)
    if seconds < MIN_SILENCE_S:
        raise ValueError(f"{value!r} is shorter than 5m (the check runs every minute)")
    return SilenceS(seconds)


_DECODERS: dict[type, Any] = {
    ListenAddress: _listen,
    MailAddress: _mail_address,
    Path: lambda value: Path(_text(value, "a path")),
    Secret: lambda value: Secret(_text(value, "a string")),
    DurationS: lambda value: DurationS(parse_duration(value)),
    ExpireAfterS: lambda value: ExpireAfterS(parse_expire_after(value)),
    SilenceS: _silence,
}


def decode_value(kind: type, value: Any) -> Any:
    """msgspec's `dec_hook`: TOML's value for a field of one of the types above."""
    try:
        decode = _DECODERS[kind]
    except KeyError:
        raise NotImplementedError(kind) from None
    return decode(value)

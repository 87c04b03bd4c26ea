"""Logging to stdout for journald: plain text or one JSON object per line.

Under systemd, stdout is a stream to the journal (`JOURNAL_STREAM` names its device and
inode). The journal then reads a `<N>` prefix on each line as that line's syslog priority
(sd-daemon(3)), so `journalctl -p warning` finds warnings and errors. It also stores each
line as an entry of its own, so a record of several lines (a traceback in the text format) is
sent as one entry through the journal's native socket (systemd.io/JOURNAL_NATIVE_PROTOCOL),
and written line by line with the prefix only if that socket cannot take it.

The fields a record carries in `extra` (`delivery_id`, `alert_id`, `ticket_id`, `source`,
`channel`, `rule`; see `LOG_FIELDS`) are keys of their own in the JSON format.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import sys
from datetime import UTC, datetime
from typing import IO

# A 20-line formatter instead of a dependency: the JSON shape is ours to keep stable.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# The `extra` keys the daemon's log calls use for what a line is about (documented in
# docs/operations.md); any other `extra` key is written too.
LOG_FIELDS = ("delivery_id", "alert_id", "ticket_id", "source", "channel", "rule")

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "alertd"


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level: 2 crit, 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def is_journal_stream(stream: IO[str], environ: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd connected (`JOURNAL_STREAM` is its
    "device:inode"); a stream redirected elsewhere by the service itself does not match."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        found = os.fstat(stream.fileno())
        return (found.st_dev, found.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


def _journal_field(name: str, value: str) -> bytes:
    encoded = value.encode("utf-8", "replace")
    if b"\n" in encoded:  # the protocol's binary form: name, newline, 64-bit length, value
        return name.encode() + b"\n" + struct.pack("<Q", len(encoded)) + encoded + b"\n"
    return name.encode() + b"=" + encoded + b"\n"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # The `extra` fields; one that is None is not known for this line, so left out.
        entry.update({k: v for k, v in vars(record).items()
                      if k not in _STANDARD and v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class JournalStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line with its `<N>` priority prefix; a record of several lines goes to the
    journal's native socket as one entry (falling back to prefixed lines)."""

    def __init__(self, stream: IO[str], socket_path: str = JOURNAL_SOCKET):
        super().__init__(stream)
        self._socket_path = socket_path
        self._socket: socket.socket | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            priority = syslog_priority(record.levelno)
            if "\n" in text and self._send_native(text, priority, record):
                return
            self.stream.write("".join(f"<{priority}>{line}\n" for line in text.split("\n")))
            self.flush()
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def _send_native(self, text: str, priority: int, record: logging.LogRecord) -> bool:
        fields = [("MESSAGE", text), ("PRIORITY", str(priority)),
                  ("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER), ("LOGGER", record.name)]
        fields += [(key.upper(), str(value)) for key in LOG_FIELDS
                   if (value := getattr(record, key, None)) is not None]
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # Lines already written to the stream go first: journald reads both separately.
            self.flush()
            self._socket.sendto(b"".join(_journal_field(*field) for field in fields),
                                self._socket_path)
            return True
        except OSError:  # no journal socket here, or a record too large for one datagram
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        super().close()


def make_handler(fmt: str, stream: IO[str] | None = None,
                 environ: dict[str, str] | None = None,
                 journal_socket: str = JOURNAL_SOCKET) -> logging.Handler:
    """The handler of `alertd run`'s log: to `stream` (stdout), in `fmt` ("text" or "json"),
    with priority prefixes when that stream is the journal's."""
    stream = sys.stdout if stream is None else stream
    handler: logging.Handler
    if is_journal_stream(stream, environ):
        handler = JournalStreamHandler(stream, journal_socket)
    else:
        handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # No timestamp: journald adds its own; run by hand, `--log-format json` has one.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    return handler


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    # Neither format shows the caller's file and line, the thread or the process: skip
    # collecting them for every record (the logging HOWTO's "Optimization"). The intake logs
    # a line per input, and the caller lookup walked the stack for each one.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [make_handler(fmt)]
    root.setLevel(level)
    # aiosmtpd logs every SMTP command at INFO under "mail.log".
    for noisy in ("aiohttp.access", "alembic", "apscheduler.executors.default",
                  "apscheduler.scheduler", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

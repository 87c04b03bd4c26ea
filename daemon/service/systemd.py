"""The systemd notify protocol (READY=1, STOPPING=1, WATCHDOG=1) over $NOTIFY_SOCKET.

A dozen lines of socket code; the PyPI helpers for this are unmaintained or pull in libsystemd.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to systemd; does nothing when not started by systemd."""

    def __init__(self, environ: Mapping[str, str]):
        address = environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@' and addressed with a NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s: float | None = (
            int(usec) / 1_000_000 / 2 if usec.isdigit() and int(usec) > 0 else None
        )

    def notify(self, state: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(state.encode())
        except OSError as err:  # systemd gone or socket closed: never fatal for the daemon
            log.warning("systemd notify %r failed: %s", state.split("\n")[0], err)

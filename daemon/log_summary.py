"""Repeated refusals as few log lines: the first of each cause at once, then one line per
cause and interval with the count of the others.

A flood of bad requests (wrong webhook secrets, wrong API tokens, protocol garbage) must not
flood the journal, yet the first occurrence must show at once so a set-up mistake is seen.
Causes are fixed texts chosen by alertd (never a value from the request), so the set of open
entries stays as small as the set of causes in use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

# (delay_s, callback) -> anything; `loop.call_later` of the running loop by default.
Schedule = Callable[[float, Callable[[], None]], object]
DEFAULT_INTERVAL_S = 60.0


@dataclass
class _Open:
    subject: str
    cause: str
    level: int
    count: int = 0  # occurrences not logged yet in this interval


class LogSummary:
    """`note(subject, cause)` logs "<subject>: <cause>" for the first occurrence of a cause,
    counts the next ones, and when the interval ends logs "<subject> N more times in the last
    60 s: <cause>" (nothing when there were none; the next one is then logged at once)."""

    def __init__(self, logger: logging.Logger, interval_s: float = DEFAULT_INTERVAL_S,
                 schedule: Schedule | None = None):
        self._log = logger
        self.interval_s = interval_s
        self._schedule = schedule
        self._open: dict[str, _Open] = {}

    def note(self, subject: str, cause: str, level: int = logging.WARNING) -> None:
        key = f"{subject}\x00{cause}"
        entry = self._open.get(key)
        if entry is not None:
            entry.count += 1
            return
        self._log.log(level, "%s: %s", subject, cause)
        if self._start_interval(key):
            self._open[key] = _Open(subject, cause, level)

    def _start_interval(self, key: str) -> bool:
        """Schedule the end of the interval of `key`; False when nothing can be scheduled
        (no running event loop): then every occurrence is logged, none is lost."""
        if self._schedule is not None:
            self._schedule(self.interval_s, lambda: self._flush(key))
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop.call_later(self.interval_s, self._flush, key)
        return True

    def _flush(self, key: str) -> None:
        entry = self._open.get(key)
        if entry is None:
            return
        if entry.count == 0:  # quiet for a whole interval: the next one is logged at once
            del self._open[key]
            return
        self._log.log(entry.level, "%s %d more times in the last %.0f s: %s", entry.subject,
                      entry.count, self.interval_s, entry.cause)
        entry.count = 0
        if not self._start_interval(key):
            del self._open[key]

"""Repeated causes are one log line at once, then one line per interval with the count."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from daemon.log_summary import LogSummary


def test_a_cause_is_logged_once_then_counted_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    timers: list[Callable[[], None]] = []
    summary = LogSummary(logging.getLogger("t"), interval_s=60,
                         schedule=lambda _delay_s, callback: timers.append(callback))
    for _ in range(5):
        summary.note("webhook refused", "wrong token")
    summary.note("webhook refused", "no token")
    assert [r.getMessage() for r in caplog.records] == [
        "webhook refused: wrong token", "webhook refused: no token"]
    caplog.clear()
    for fire in list(timers):
        fire()  # the interval ends
    assert [r.getMessage() for r in caplog.records] == [
        "webhook refused 4 more times in the last 60 s: wrong token"]
    caplog.clear()
    for fire in timers[2:]:
        fire()  # a quiet interval: nothing to say, and the entry is closed
    summary.note("webhook refused", "wrong token")
    assert [r.getMessage() for r in caplog.records] == ["webhook refused: wrong token"]

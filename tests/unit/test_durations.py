"""Durations in configuration and rules (daemon.core.durations)."""

from __future__ import annotations

import pytest

from daemon.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), (" 36h ", 129600), ("0s", 0),
    ("366d", 366 * 86400),
])
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7 d", "1.5h", "1w", "-1h", "1h30m", "H", "367d",
                                  "9999999999s"])
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_number_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(7)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [(604800, "7d"), (5400, "90m"), (7200, "2h"),
                                               (45, "45s"), (0, "0s")])
def test_format(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text

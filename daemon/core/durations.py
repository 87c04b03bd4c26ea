"""Durations as people write them in configuration and rules: "90s", "15m", "1h", "7d"."""

from __future__ import annotations

import re

_DURATION = re.compile(r"([0-9]{1,9})(s|m|h|d)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 366 * 86400  # a year and a day: longer is a typo, not a policy


def parse_duration(text: str) -> int:
    """Whole seconds of `text`: a whole number and one unit (s, m, h, d), e.g. "36h".
    Raises ValueError with what is expected."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f'expected a duration such as "90s", "15m", "1h" or "7d", got {text!r}')
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{text!r} is longer than 366 days")
    return seconds


def format_duration(seconds: int) -> str:
    """`seconds` in the largest unit that divides it ("7d", "90m", "45s")."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


MIN_EXPIRE_AFTER_S = 60  # an alert is not "never clears" after less than a minute


def parse_expire_after(text: str) -> int:
    """An `expire_after` (configuration or rule) in whole seconds: a duration of 1m or more.
    Raises ValueError with what is expected."""
    seconds = parse_duration(text)
    if seconds < MIN_EXPIRE_AFTER_S:
        raise ValueError("must be at least 1m")
    return seconds

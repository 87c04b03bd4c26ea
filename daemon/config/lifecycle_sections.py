"""`[lifecycle]`: how alertd treats the tickets of alerts beyond one ticket per alert (issue 16:
human work, conditions, flapping, maintenance, alerts that never clear)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, field_validator

from daemon.config.base import Section
from daemon.core.durations import parse_duration
from daemon.core.events import is_source_name

# "90s", "15m", "1h", "7d" -> whole seconds (a plain number is refused: its unit is unclear).
DurationS = Annotated[int, BeforeValidator(parse_duration)]


class LifecycleConfig(Section):
    # When an upstream resolve closes its alert's ticket: "untouched" (unless an agent added a
    # note or changed it), "always", or "never" (the ticket is marked resolved upstream).
    auto_close: Literal["untouched", "always", "never"] = "untouched"
    # Per source: an alert open longer is resolved by alertd (an email rule's own
    # `expire_after` wins). Absent: that source's alerts never expire.
    expire_after: dict[str, DurationS] = {}

    @field_validator("expire_after")
    @classmethod
    def _sources(cls, value: dict[str, int]) -> dict[str, int]:
        for source, seconds in value.items():
            if not is_source_name(source):
                raise ValueError(f"{source!r} is not a source name like 'datto' or 'syncro'")
            if seconds < 60:
                raise ValueError(f"expire_after for {source!r} must be at least 1m")
        return value

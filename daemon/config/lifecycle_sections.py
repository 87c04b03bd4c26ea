"""`[lifecycle]`: how alertd treats the tickets of alerts beyond one ticket per alert (issue 16:
human work, conditions, flapping, maintenance, alerts that never clear)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, field_validator

from daemon.config.base import Section
from daemon.core.durations import parse_expire_after
from daemon.core.events import is_source_name
from daemon.core.lifecycle import AutoClose

# "90s", "15m", "1h", "7d" -> whole seconds, at least 1m (a plain number is refused: its unit
# is unclear).
ExpireAfterS = Annotated[int, BeforeValidator(parse_expire_after)]


class LifecycleConfig(Section):
    # When an upstream resolve closes its alert's ticket: "untouched" (unless an agent added a
    # note or changed it), "always", or "never" (the ticket is marked resolved upstream).
    auto_close: AutoClose = AutoClose.UNTOUCHED
    # Per source: an alert open longer is resolved by alertd (an email rule's own
    # `expire_after` wins). Absent: that source's alerts never expire.
    expire_after: dict[str, ExpireAfterS] = {}

    @field_validator("expire_after")
    @classmethod
    def _sources(cls, value: dict[str, int]) -> dict[str, int]:
        for source in value:
            if not is_source_name(source):
                raise ValueError(f"{source!r} is not a source name like 'datto' or 'syncro'")
        return value

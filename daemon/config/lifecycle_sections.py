"""`[lifecycle]`: how alertd treats the tickets of alerts beyond one ticket per alert (issue 16:
human work, conditions, flapping, maintenance, alerts that never clear)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, field_validator

from daemon.config.base import Section
from daemon.core.conditions import ConditionPolicy
from daemon.core.durations import parse_duration, parse_expire_after
from daemon.core.events import is_source_name
from daemon.core.lifecycle import AutoClose

# "90s", "15m", "1h", "7d" -> whole seconds, at least 1m (a plain number is refused: its unit
# is unclear).
ExpireAfterS = Annotated[int, BeforeValidator(parse_expire_after)]
# "0s" (off), "30m", "1h": whole seconds.
DurationS = Annotated[int, BeforeValidator(parse_duration)]


class LifecycleConfig(Section):
    # When an upstream resolve closes its alert's ticket: "untouched" (unless an agent added a
    # note or changed it), "always", or "never" (the ticket is marked resolved upstream).
    auto_close: AutoClose = AutoClose.UNTOUCHED
    # Per source: an alert open longer is resolved by alertd (an email rule's own
    # `expire_after` wins). Absent: that source's alerts never expire.
    expire_after: dict[str, ExpireAfterS] = {}
    # A raise whose condition (source, device, kind of check) has an open ticket joins it
    # instead of opening another; the ticket closes once all its alerts are resolved.
    group_by_condition: bool = True
    # A raise whose condition's ticket closed less than this ago reopens it ("0s": never).
    reopen_window: DurationS = 3600
    # An upstream resolve closes the ticket only after its condition stayed clear this long
    # ("0s": at once); a raise of the condition meanwhile keeps it open.
    close_after_clear: DurationS = 0

    @property
    def conditions(self) -> ConditionPolicy:
        return ConditionPolicy(self.group_by_condition, self.reopen_window)

    @field_validator("expire_after")
    @classmethod
    def _sources(cls, value: dict[str, int]) -> dict[str, int]:
        for source in value:
            if not is_source_name(source):
                raise ValueError(f"{source!r} is not a source name like 'datto' or 'syncro'")
        return value

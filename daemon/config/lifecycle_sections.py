"""`[lifecycle]`: how alertd treats the tickets of alerts beyond one ticket per alert (issue 16:
human work, conditions, flapping, maintenance, alerts that never clear)."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from daemon.config.base import Section
from daemon.core.conditions import ConditionPolicy
from daemon.core.durations import parse_duration, parse_expire_after
from daemon.core.events import is_source_name
from daemon.core.lifecycle import AutoClose
from daemon.core.maintenance import Scope, Weekly, Window, parse_days

# "90s", "15m", "1h", "7d" -> whole seconds, at least 1m (a plain number is refused: its unit
# is unclear).
ExpireAfterS = Annotated[int, BeforeValidator(parse_expire_after)]
# "0s" (off), "30m", "1h": whole seconds.
DurationS = Annotated[int, BeforeValidator(parse_duration)]


MAX_WEEKLY_DURATION_S = 7 * 86400


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone alertd knows (an IANA name such as "
                         "'Europe/Berlin' or 'America/Chicago')") from None
    return name


def _clock_time(text: str) -> str:
    try:
        parsed = time.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f'expected a time of day such as "22:00", got {text!r}') from None
    if parsed.tzinfo is not None:  # the window's time_zone says where; an offset would lie
        raise ValueError(f"{text!r}: give the local time without an offset (time_zone says "
                         "where)")
    return text


class WeeklyWindowConfig(Section):
    """`[[lifecycle.maintenance]]`: a maintenance window every week, in local time."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    scope: Scope
    value: Annotated[str, Field(max_length=255)] = ""  # a customer, site or device name or id
    days: list[str]  # "mon" ... "sun"
    start: Annotated[str, BeforeValidator(_clock_time)]  # "22:00", local time in time_zone
    duration: DurationS  # "4h"; at most 7d
    time_zone: Annotated[str, BeforeValidator(_time_zone)]  # IANA: "Europe/Berlin"
    reason: str = ""

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        parse_days(value)
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: int) -> int:
        if not 60 <= value <= MAX_WEEKLY_DURATION_S:
            raise ValueError("must be from 1m to 7d")
        return value

    @model_validator(mode="after")
    def _value_for_scope(self) -> WeeklyWindowConfig:
        if (self.scope is Scope.ALL) != (not self.value.strip()):
            raise ValueError('scope "all" takes no value; every other scope needs one')
        return self

    def window(self) -> Window:
        return Window(f"weekly window {self.name!r}", self.scope, self.value.strip(),
                      weekly=Weekly(parse_days(self.days), time.fromisoformat(self.start),
                                    timedelta(seconds=self.duration), ZoneInfo(self.time_zone)))


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
    # Weekly maintenance windows ([[lifecycle.maintenance]]); one-off windows are set through
    # the API or `alertd maintenance add`.
    maintenance: list[WeeklyWindowConfig] = []

    @property
    def conditions(self) -> ConditionPolicy:
        return ConditionPolicy(self.group_by_condition, self.reopen_window)

    @field_validator("maintenance")
    @classmethod
    def _unique_names(cls, value: list[WeeklyWindowConfig]) -> list[WeeklyWindowConfig]:
        names = [window.name for window in value]
        if len(set(names)) != len(names):
            raise ValueError("each weekly window needs a name of its own")
        return value

    @field_validator("expire_after")
    @classmethod
    def _sources(cls, value: dict[str, int]) -> dict[str, int]:
        for source in value:
            if not is_source_name(source):
                raise ValueError(f"{source!r} is not a source name like 'datto' or 'syncro'")
        return value

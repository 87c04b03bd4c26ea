"""`[lifecycle]`: how alertd treats the tickets of alerts beyond one ticket per alert (issue 16:
human work, conditions, flapping, maintenance, alerts that never clear)."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Meta

from daemon.config.base import DurationS, ExpireAfterS, FieldError, Section
from daemon.core.conditions import ConditionPolicy
from daemon.core.events import is_source_name
from daemon.core.lifecycle import AutoClose
from daemon.core.maintenance import Scope, Weekly, Window, parse_days

MAX_WEEKLY_DURATION_S = 7 * 86400


def _time_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FieldError("time_zone", f"{name!r} is not a time zone alertd knows (an IANA "
                         "name such as 'Europe/Berlin' or 'America/Chicago')") from None


def _clock_time(text: str) -> None:
    try:
        parsed = time.fromisoformat(text)
    except (TypeError, ValueError):
        raise FieldError("start", f'expected a time of day such as "22:00", got {text!r}'
                         ) from None
    if parsed.tzinfo is not None:  # the window's time_zone says where; an offset would lie
        raise FieldError("start", f"{text!r}: give the local time without an offset "
                         "(time_zone says where)")


class WeeklyWindowConfig(Section, kw_only=True):
    """`[[lifecycle.maintenance]]`: a maintenance window every week, in local time."""

    name: Annotated[str, Meta(min_length=1, max_length=64)]
    scope: Scope
    value: Annotated[str, Meta(max_length=255)] = ""  # a customer, site or device name or id
    days: list[str]  # "mon" ... "sun"
    start: str  # "22:00", local time in time_zone
    duration: DurationS  # "4h"; at most 7d
    time_zone: str  # IANA: "Europe/Berlin"
    reason: str = ""

    def __post_init__(self) -> None:
        try:
            parse_days(self.days)
        except ValueError as err:
            raise FieldError("days", str(err)) from None
        _clock_time(self.start)
        if not 60 <= self.duration <= MAX_WEEKLY_DURATION_S:
            raise FieldError("duration", "must be from 1m to 7d")
        _time_zone(self.time_zone)
        if (self.scope is Scope.ALL) != (not self.value.strip()):
            raise ValueError('scope "all" takes no value; every other scope needs one')

    def window(self) -> Window:
        return Window(f"weekly window {self.name!r}", self.scope, self.value.strip(),
                      weekly=Weekly(parse_days(self.days), time.fromisoformat(self.start),
                                    timedelta(seconds=self.duration), ZoneInfo(self.time_zone)))


class LifecycleConfig(Section, kw_only=True):
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
    reopen_window: DurationS = DurationS(3600)
    # An upstream resolve closes the ticket only after its condition stayed clear this long
    # ("0s": at once); a raise of the condition meanwhile keeps it open.
    close_after_clear: DurationS = DurationS(0)
    # Weekly maintenance windows ([[lifecycle.maintenance]]); one-off windows are set through
    # the API or `alertd maintenance add`.
    maintenance: list[WeeklyWindowConfig] = []

    @property
    def conditions(self) -> ConditionPolicy:
        return ConditionPolicy(self.group_by_condition, self.reopen_window)

    def __post_init__(self) -> None:
        names = [window.name for window in self.maintenance]
        if len(set(names)) != len(names):
            raise FieldError("maintenance", "each weekly window needs a name of its own")
        for source in self.expire_after:
            if not is_source_name(source):
                raise FieldError("expire_after", f"{source!r} is not a source name like "
                                 "'datto' or 'syncro'")

"""Maintenance windows (issue 16, rule 4). Pure: which window, if any, holds back a new alert's
ticket, and when a weekly window is open.

Inside a window, a raise in its scope is kept as a *suppressed* alert: stored, counted, no
ticket. Resolves always pass. When no window covers a suppressed alert that is still open any
more, it gets its ticket (daemon.tickets.maintenance).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class Scope(StrEnum):
    ALL = "all"
    CUSTOMER = "customer"
    SITE = "site"
    DEVICE = "device"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order


@dataclass(frozen=True)
class Weekly:
    """A window that opens every week on `days` at `start` (local time in `zone`) for
    `duration` of real time. Local time: "22:00" stays 22:00 across daylight saving time; a
    start that does not exist that night (the clocks skip it) is read with the offset from
    before the change (02:30 on the night 02:00-03:00 is skipped opens at 03:30)."""

    days: frozenset[int]  # 0 = Monday
    start: time
    duration: timedelta
    zone: ZoneInfo

    def open_at(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence (its start and end, in UTC) that is open at `now`, or None."""
        local_now = now.astimezone(self.zone)
        # An occurrence open now started at most `duration` ago: look back that many days.
        for days_back in range(self.duration.days + 2):
            day = local_now.date() - timedelta(days=days_back)
            if day.weekday() not in self.days:
                continue
            # In UTC before adding: arithmetic on a zone's wall clock would give a window
            # across a clock change an hour more or less than its duration (or none at all).
            starts = datetime.combine(day, self.start, tzinfo=self.zone).astimezone(UTC)
            ends = starts + self.duration
            if starts <= now < ends:
                return starts, ends
        return None


@dataclass(frozen=True)
class Window:
    """A maintenance window as decisions see it: from the API (`id`, `starts_at`, `ends_at`)
    or weekly from the configuration (`weekly`)."""

    label: str  # how the trail and notes name it: "window 3", "weekly window 'patch night'"
    scope: Scope
    value: str  # the name or id the scope is about ("" for all)
    # The id of the synced record that `value` names (a customer, site or asset), if any.
    record_id: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    weekly: Weekly | None = None

    def is_open(self, now: datetime) -> bool:
        if self.weekly is not None:
            return self.weekly.open_at(now) is not None
        assert self.starts_at is not None and self.ends_at is not None
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True)
class Target:
    """What a window's scope is matched against: the alert's own names, and the synced
    records its ticket is (or would be) placed at."""

    customer: str | None = None
    site: str | None = None
    device: str | None = None
    device_ref: str | None = None  # the RMM's own id of the device
    customer_id: int | None = None
    site_id: int | None = None
    asset_id: int | None = None


def covers(window: Window, target: Target) -> bool:
    """Whether `window`'s scope includes `target` (open or not)."""
    if window.scope is Scope.ALL:
        return True
    names, record = {
        Scope.CUSTOMER: ((target.customer,), target.customer_id),
        Scope.SITE: ((target.site,), target.site_id),
        Scope.DEVICE: ((target.device, target.device_ref), target.asset_id),
    }[window.scope]
    if window.record_id is not None and record == window.record_id:
        return True
    value = window.value.casefold()
    return any(name is not None and name.casefold() == value for name in names)


def window_for(windows: Iterable[Window], target: Target, now: datetime) -> Window | None:
    """The first window open at `now` whose scope includes `target`, or None."""
    return next((w for w in windows if w.is_open(now) and covers(w, target)), None)


def parse_days(days: Sequence[str]) -> frozenset[int]:
    """["sat", "sun"] -> {5, 6}; raises ValueError naming what is allowed."""
    found = set()
    for day in days:
        key = day.strip().lower()[:3]
        if key not in WEEKDAYS:
            raise ValueError(f"{day!r} is not a day of the week ({', '.join(WEEKDAYS)})")
        found.add(WEEKDAYS.index(key))
    if not found:
        raise ValueError("name at least one day of the week")
    return frozenset(found)

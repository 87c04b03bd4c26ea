"""Issue 16, rule 4 in the pure core: which window covers an alert, and when a weekly window
is open (local time, across daylight saving time)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.core.maintenance import Scope, Target, Weekly, Window, covers, parse_days, window_for

NOW = datetime(2026, 12, 12, 22, 30, tzinfo=UTC)
OPEN = {"starts_at": NOW - timedelta(hours=1), "ends_at": NOW + timedelta(hours=1)}
ALERT = Target(customer="Acme Dental", site="Main Office", device="FS-ACME-01",
               device_ref="0b1c2d3e-aaaa", customer_id=7, site_id=12, asset_id=40)


@pytest.mark.parametrize(("scope", "value", "record_id", "covered"), [
    (Scope.ALL, "", None, True),
    (Scope.CUSTOMER, "acme dental", None, True),  # its name, without case
    (Scope.CUSTOMER, "Other Co", 7, True),  # the synced customer it is placed at
    (Scope.CUSTOMER, "Other Co", 8, False),
    (Scope.SITE, "MAIN OFFICE", None, True),
    (Scope.SITE, "Main Office", 13, True),  # the name still matches
    (Scope.SITE, "Branch", 13, False),
    (Scope.DEVICE, "fs-acme-01", None, True),
    (Scope.DEVICE, "0B1C2D3E-AAAA", None, True),  # the RMM's id of the device
    (Scope.DEVICE, "WS-OTHER", 40, True),  # the synced asset
    (Scope.DEVICE, "WS-OTHER", None, False),
])
def test_a_window_covers_its_scope(scope: Scope, value: str, record_id: int | None,
                                   covered: bool) -> None:
    window = Window("window 1", scope, value, record_id, **OPEN)
    assert covers(window, ALERT) is covered


def test_an_alert_without_names_is_covered_only_by_all_or_its_records() -> None:
    bare = Target()
    assert covers(Window("w", Scope.ALL, ""), bare)
    assert not covers(Window("w", Scope.CUSTOMER, "Acme Dental", 7), bare)


def test_window_for_takes_the_first_open_window_that_covers() -> None:
    ended = Window("window 1", Scope.ALL, "", starts_at=NOW - timedelta(hours=2), ends_at=NOW)
    other = Window("window 2", Scope.CUSTOMER, "Other Co", **OPEN)
    mine = Window("window 3", Scope.CUSTOMER, "Acme Dental", **OPEN)
    assert window_for([ended, other, mine], ALERT, NOW) is mine
    assert window_for([ended, other], ALERT, NOW) is None
    # The end is exclusive, the start inclusive.
    assert window_for([ended], ALERT, NOW - timedelta(hours=2)) is ended
    assert window_for([ended], ALERT, NOW) is None


BERLIN = ZoneInfo("Europe/Berlin")


def weekly(days: str, start: str, hours: float) -> Weekly:
    return Weekly(parse_days(days.split(",")), time.fromisoformat(start),
                  timedelta(hours=hours), BERLIN)


@pytest.mark.parametrize(("local", "is_open"), [
    (datetime(2026, 12, 12, 21, 59), False),  # Saturday, before 22:00 Berlin
    (datetime(2026, 12, 12, 22, 0), True),
    (datetime(2026, 12, 13, 1, 59), True),  # after midnight: Saturday's window still
    (datetime(2026, 12, 13, 2, 0), False),
    (datetime(2026, 12, 13, 22, 30), False),  # Sunday is not a window day
])
def test_a_weekly_window_opens_in_its_local_time(local: datetime, is_open: bool) -> None:
    window = weekly("sat", "22:00", 4)
    assert (window.open_at(local.replace(tzinfo=BERLIN)) is not None) is is_open


def test_a_weekly_window_keeps_its_local_start_across_daylight_saving() -> None:
    window = weekly("sun", "02:30", 2)
    # 2026-03-29: Berlin's clocks skip 02:00-03:00, so 02:30 does not exist that night; the
    # window starts at 02:30 in the offset before the change (01:30 UTC), for two hours.
    summer = window.open_at(datetime(2026, 3, 29, 2, 0, tzinfo=UTC))
    assert summer == (datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                      datetime(2026, 3, 29, 3, 30, tzinfo=UTC))  # two hours of real time
    # Winter and summer: the same local hour, different UTC hours.
    january = window.open_at(datetime(2026, 1, 4, 1, 45, tzinfo=UTC))  # 02:45 CET
    july = window.open_at(datetime(2026, 7, 5, 0, 45, tzinfo=UTC))  # 02:45 CEST
    assert january is not None and july is not None
    assert january[0].astimezone(UTC).hour == 1 and july[0].astimezone(UTC).hour == 0


@pytest.mark.parametrize(("zone", "night", "start"), [
    ("America/New_York", datetime(2026, 3, 8, 7, 30, tzinfo=UTC), "02:00"),  # clocks forward
    ("Europe/Berlin", datetime(2026, 3, 29, 1, 45, tzinfo=UTC), "02:30"),
    ("Europe/Berlin", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "02:00"),  # clocks back
])
def test_a_window_at_a_clock_change_lasts_its_duration(zone: str, night: datetime,
                                                       start: str) -> None:
    """Starting in the hour the clocks skip or repeat, a one-hour window is open for one
    hour of real time: never zero, never two."""
    window = Weekly(parse_days(["sun"]), time.fromisoformat(start), timedelta(hours=1),
                    ZoneInfo(zone))
    minutes_open = sum(window.open_at(night - timedelta(hours=3) + timedelta(minutes=m))
                       is not None for m in range(0, 6 * 60))
    assert minutes_open == 60


def test_a_window_longer_than_a_day_covers_the_days_after() -> None:
    window = weekly("fri", "18:00", 60)  # Friday evening to Monday morning
    assert window.open_at(datetime(2026, 12, 13, 12, 0, tzinfo=BERLIN)) is not None  # Sunday
    assert window.open_at(datetime(2026, 12, 14, 6, 0, tzinfo=BERLIN)) is None  # Monday 06:00


@pytest.mark.parametrize(("days", "parsed"), [
    (["sat", "sun"], {5, 6}), (["Monday", "FRI"], {0, 4}), (["mon", "mon"], {0})])
def test_parse_days(days: list[str], parsed: set[int]) -> None:
    assert parse_days(days) == parsed


@pytest.mark.parametrize("days", [[], ["someday"], [""]])
def test_parse_days_refuses_what_is_no_day(days: list[str]) -> None:
    with pytest.raises(ValueError, match="day"):
        parse_days(days)

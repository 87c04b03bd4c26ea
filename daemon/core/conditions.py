"""Conditions: which raises share one ticket (issue 16, rules 2 and 3). Pure.

A *condition* is what an alert reports, wherever it comes from: the source, the device and the
kind of check (`AlertEvent.condition`: Datto's category and type, Syncro's trigger, an email
rule's `condition` group). Two alerts of one condition are the same problem seen twice: a disk
check that fires every hour, a service that flaps. One open ticket per condition holds them
all (`group_by_condition`); a raise shortly after its condition's ticket closed reopens that
ticket (`reopen_window`) rather than opening another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from daemon.core.canonical import sha256_hex
from daemon.core.events import AlertEvent, one_line

MAX_CONDITION_CHARS = 255  # the column; longer keys are stored as their hash
# A raise that joins or reopens a ticket less than this after the previous raise of its
# condition is part of the same burst: it is counted, but adds no note of its own.
BURST_GAP = timedelta(minutes=15)


def condition_key(event: AlertEvent) -> str | None:
    """The condition `event` reports: "<source> | <device> | <kind>", or None when the event
    names no device or no kind of check (such alerts are never grouped).

    The device is the RMM's own id where the channel gives one (Datto's device uid, Syncro's
    asset id), else its name without case: a key is stable across one channel's alerts, not
    across channels (a webhook and a mail name the same check differently).
    """
    kind = one_line(event.condition) if event.condition else ""
    device = event.device_ref or (event.device.casefold() if event.device else "")
    device = one_line(device)
    if not kind or not device:
        return None
    key = f"{event.source} | {device} | {kind}"
    if len(key) > MAX_CONDITION_CHARS:
        return "sha256:" + sha256_hex(key.encode())
    return key


@dataclass(frozen=True)
class ConditionPolicy:
    """`[lifecycle] group_by_condition` and `reopen_window` (0: never reopen)."""

    group: bool = True
    reopen_window_s: int = 3600

    @property
    def active(self) -> bool:
        """Whether a new alert's condition can decide its ticket at all."""
        return self.group or self.reopen_window_s > 0


DEFAULT_POLICY = ConditionPolicy()


@dataclass(frozen=True)
class ConditionTicket:
    """The newest ticket of a condition, as the choice needs it."""

    is_open: bool
    closed_at: datetime | None = None


class TicketChoice(StrEnum):
    NEW = "new"  # a ticket of its own
    JOIN = "join"  # another alert of its condition's open ticket
    REOPEN = "reopen"  # its condition's ticket closed a moment ago: opened again
    # A raise that came after its own resolve, its condition's ticket closed a moment ago:
    # counted on that ticket, which stays closed (the alert is over already).
    RECORD = "record"


def choose_ticket(newest: ConditionTicket | None, policy: ConditionPolicy, now: datetime,
                  alert_open: bool = True) -> TicketChoice:
    """Which ticket a new alert of a known condition gets.

    `newest`: its condition's newest ticket (None: none yet). `alert_open` is False for a
    raise that arrives after its own resolve (a late raise): such an alert joins its
    condition's open ticket, or is recorded on the one closed a moment ago, but never
    reopens it (it is over already).
    """
    if newest is None:
        return TicketChoice.NEW
    if newest.is_open:
        return TicketChoice.JOIN if policy.group else TicketChoice.NEW
    if (newest.closed_at is not None
            and now - newest.closed_at < timedelta(seconds=policy.reopen_window_s)):
        return TicketChoice.REOPEN if alert_open else TicketChoice.RECORD
    return TicketChoice.NEW


def starts_burst(last_raised_at: datetime | None, now: datetime) -> bool:
    """Whether a raise joining or reopening a ticket starts a new burst (and so says so in a
    note): the first one, or the first after `BURST_GAP` of quiet."""
    return last_raised_at is None or now - last_raised_at >= BURST_GAP

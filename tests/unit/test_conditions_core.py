"""Issue 16, rules 2 and 3 in the pure core: conditions, the ticket a new alert gets, a ticket
with other open alerts, the close held back until the condition stayed clear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.core.conditions import (
    BURST_GAP,
    ConditionPolicy,
    ConditionTicket,
    TicketChoice,
    choose_ticket,
    condition_key,
    starts_burst,
)
from daemon.core.events import AlertEvent
from daemon.core.lifecycle import (
    AlertAction,
    AlertSnapshot,
    AlertState,
    AutoClose,
    EventDecision,
    Outcome,
    ResolvedBy,
    decide_clear_close,
    decide_event,
    decide_expiry,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def event(**fields: str | None) -> AlertEvent:
    return AlertEvent(source="datto", uid="u1", action=AlertAction.RAISE,
                      **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "key"), [
    ({"device": "FS-01", "device_ref": "dev-guid", "condition": "Disk Usage"},
     "datto | dev-guid | Disk Usage"),  # the RMM's id wins over the name
    ({"device": "FS-01", "condition": "Disk Usage"}, "datto | fs-01 | Disk Usage"),
    ({"device": "fs-01", "condition": "Disk Usage"}, "datto | fs-01 | Disk Usage"),
    ({"device": "FS\r\n01", "condition": "Disk\tUsage"}, "datto | fs 01 | Disk Usage"),
    ({"device": "FS-01"}, None),  # no kind of check: never grouped
    ({"condition": "Disk Usage"}, None),  # no device: never grouped
    ({"device": " ", "condition": "Disk Usage"}, None),
    ({"device": "FS-01", "condition": "\n"}, None),
])
def test_condition_key(fields: dict[str, str], key: str | None) -> None:
    assert condition_key(event(**fields)) == key


def test_a_long_condition_key_is_stored_as_its_hash() -> None:
    key = condition_key(event(device="FS-01", condition="x" * 300))
    assert key is not None and key.startswith("sha256:") and len(key) == 71
    assert key == condition_key(event(device="fs-01", condition="x" * 300))


DEFAULT = ConditionPolicy()
OPEN = ConditionTicket(is_open=True)
CLOSED_10M = ConditionTicket(is_open=False, closed_at=NOW - timedelta(minutes=10))
CLOSED_1H = ConditionTicket(is_open=False, closed_at=NOW - timedelta(hours=1))
CLOSED_2H = ConditionTicket(is_open=False, closed_at=NOW - timedelta(hours=2))
CHOICES = [
    # (name, newest ticket of the condition, policy, alert open, choice)
    ("first of its condition", None, DEFAULT, True, TicketChoice.NEW),
    ("condition open -> join", OPEN, DEFAULT, True, TicketChoice.JOIN),
    ("grouping off -> own ticket", OPEN, ConditionPolicy(group=False), True, TicketChoice.NEW),
    ("closed 10m ago -> reopen", CLOSED_10M, DEFAULT, True, TicketChoice.REOPEN),
    ("closed exactly the window ago -> new", CLOSED_1H, DEFAULT, True, TicketChoice.NEW),
    ("closed 2h ago -> new", CLOSED_2H, DEFAULT, True, TicketChoice.NEW),
    ("reopen off", CLOSED_10M, ConditionPolicy(reopen_window_s=0), True, TicketChoice.NEW),
    ("reopen without grouping", CLOSED_10M, ConditionPolicy(group=False), True,
     TicketChoice.REOPEN),
    ("late raise, condition open -> join", OPEN, DEFAULT, False, TicketChoice.JOIN),
    ("late raise, closed 10m ago -> recorded, stays closed", CLOSED_10M, DEFAULT, False,
     TicketChoice.RECORD),
    ("late raise, closed 2h ago -> its own ticket", CLOSED_2H, DEFAULT, False,
     TicketChoice.NEW),
    ("late raise, nothing yet", None, DEFAULT, False, TicketChoice.NEW),
]


@pytest.mark.parametrize(("newest", "policy", "alert_open", "choice"),
                         [row[1:] for row in CHOICES], ids=[row[0] for row in CHOICES])
def test_choose_ticket(newest: ConditionTicket | None, policy: ConditionPolicy,
                       alert_open: bool, choice: TicketChoice) -> None:
    assert choose_ticket(newest, policy, NOW, alert_open) is choice


def test_a_clock_step_back_reopens_rather_than_misjudging_the_window() -> None:
    # The ticket "closed in the future" (the clock stepped back): less than the window ago.
    ahead = ConditionTicket(is_open=False, closed_at=NOW + timedelta(minutes=5))
    assert choose_ticket(ahead, DEFAULT, NOW) is TicketChoice.REOPEN


def test_policy_activity() -> None:
    assert DEFAULT.active and ConditionPolicy(group=False).active
    assert not ConditionPolicy(group=False, reopen_window_s=0).active


def test_a_burst_is_raises_less_than_the_gap_apart() -> None:
    assert starts_burst(None, NOW)
    assert not starts_burst(NOW - BURST_GAP + timedelta(seconds=1), NOW)
    assert starts_burst(NOW - BURST_GAP, NOW)


OPEN_WITH_OTHERS = AlertSnapshot(AlertState.OPEN, has_ticket=True, others_open=True)
OPEN_ALONE = AlertSnapshot(AlertState.OPEN, has_ticket=True)
OPEN_ALONE_TOUCHED = AlertSnapshot(AlertState.OPEN, has_ticket=True, ticket_touched=True)


@pytest.mark.parametrize("auto_close", list(AutoClose))
@pytest.mark.parametrize("clear_s", [0, 600])
def test_a_resolve_with_other_alerts_open_never_closes_the_ticket(auto_close: AutoClose,
                                                                  clear_s: int) -> None:
    assert decide_event(OPEN_WITH_OTHERS, AlertAction.RESOLVE, auto_close, clear_s) == \
        EventDecision(Outcome.RESOLVED_OTHERS_OPEN, AlertState.RESOLVED, ResolvedBy.UPSTREAM)


def test_close_after_clear_holds_the_close_back() -> None:
    assert decide_event(OPEN_ALONE, AlertAction.RESOLVE, AutoClose.UNTOUCHED, 600) == \
        EventDecision(Outcome.RESOLVED_CLEARING, AlertState.RESOLVED, ResolvedBy.UPSTREAM,
                      close_after_s=600)
    # Human work is left open at once, as without the delay (rule 1 first).
    decision = decide_event(OPEN_ALONE_TOUCHED, AlertAction.RESOLVE, AutoClose.UNTOUCHED, 600)
    assert decision.outcome is Outcome.RESOLVED_LEFT_OPEN and decision.close_after_s == 0
    # Without a delay: closed at once, as before.
    assert decide_event(OPEN_ALONE, AlertAction.RESOLVE, AutoClose.UNTOUCHED, 0).close_ticket


@pytest.mark.parametrize(("touched", "auto_close", "left_open"), [
    (False, AutoClose.UNTOUCHED, None), (True, AutoClose.UNTOUCHED, "it is being worked"),
    (True, AutoClose.ALWAYS, None), (False, AutoClose.NEVER, 'auto_close is "never"'),
])
def test_when_the_clear_time_comes_rule_1_decides_again(touched: bool, auto_close: AutoClose,
                                                        left_open: str | None) -> None:
    assert decide_clear_close(touched, auto_close) == left_open


def test_an_expiry_with_other_alerts_open_leaves_the_ticket_open() -> None:
    assert decide_expiry(OPEN_WITH_OTHERS) == EventDecision(
        Outcome.EXPIRED, AlertState.RESOLVED, ResolvedBy.EXPIRY)

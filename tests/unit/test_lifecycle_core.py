"""Pure lifecycle decisions, one row per transition."""

from __future__ import annotations

import pytest

from daemon.core.lifecycle import (
    AlertAction,
    AlertSnapshot,
    AlertState,
    AutoClose,
    EventDecision,
    Outcome,
    ResolvedBy,
    TicketAlreadyClosed,
    TicketCloseDecision,
    decide_event,
    decide_expiry,
    decide_ticket_close,
)

LEFT_OPEN_TOUCHED = "it is being worked"
LEFT_OPEN_NEVER = 'auto_close is "never"'

OPEN = AlertSnapshot(AlertState.OPEN, has_ticket=True)
OPEN_TOUCHED = AlertSnapshot(AlertState.OPEN, has_ticket=True, ticket_touched=True)
OPEN_NO_TICKET = AlertSnapshot(AlertState.OPEN, has_ticket=False)
TOMBSTONE = AlertSnapshot(AlertState.RESOLVED, ResolvedBy.UPSTREAM, has_ticket=False)
RESOLVED_UPSTREAM = AlertSnapshot(AlertState.RESOLVED, ResolvedBy.UPSTREAM, has_ticket=True)
RESOLVED_BY_TICKET = AlertSnapshot(AlertState.RESOLVED, ResolvedBy.TICKET, has_ticket=True)

EVENT_TABLE = [
    # (name, stored alert, action, expected decision)
    ("raise, no alert yet -> open + ticket", None, AlertAction.RAISE,
     EventDecision(Outcome.OPENED, AlertState.OPEN, open_ticket=True)),
    ("raise while open -> twin, no ticket", OPEN, AlertAction.RAISE,
     EventDecision(Outcome.TWIN, AlertState.OPEN)),
    ("resolve while open -> resolved upstream, ticket closed", OPEN, AlertAction.RESOLVE,
     EventDecision(Outcome.RESOLVED, AlertState.RESOLVED, ResolvedBy.UPSTREAM,
                   close_ticket=True)),
    ("resolve, no alert yet -> tombstone", None, AlertAction.RESOLVE,
     EventDecision(Outcome.TOMBSTONE, AlertState.RESOLVED, ResolvedBy.UPSTREAM)),
    ("raise after a tombstone -> its ticket, recorded closed", TOMBSTONE, AlertAction.RAISE,
     EventDecision(Outcome.LATE_RAISE, AlertState.RESOLVED, open_ticket=True,
                   close_ticket=True)),
    ("second resolve of a tombstone -> no-op", TOMBSTONE, AlertAction.RESOLVE,
     EventDecision(Outcome.ALREADY_RESOLVED, AlertState.RESOLVED)),
    ("raise after upstream resolve -> late twin", RESOLVED_UPSTREAM, AlertAction.RAISE,
     EventDecision(Outcome.LATE_TWIN, AlertState.RESOLVED)),
    ("raise after ticket resolve -> late twin", RESOLVED_BY_TICKET, AlertAction.RAISE,
     EventDecision(Outcome.LATE_TWIN, AlertState.RESOLVED)),
    ("upstream echo after ticket close -> no-op", RESOLVED_BY_TICKET, AlertAction.RESOLVE,
     EventDecision(Outcome.ALREADY_RESOLVED, AlertState.RESOLVED)),
    ("second upstream resolve -> no-op", RESOLVED_UPSTREAM, AlertAction.RESOLVE,
     EventDecision(Outcome.ALREADY_RESOLVED, AlertState.RESOLVED)),
]


@pytest.mark.parametrize(("current", "action", "expected"),
                         [row[1:] for row in EVENT_TABLE], ids=[row[0] for row in EVENT_TABLE])
def test_decide_event(current: AlertSnapshot | None, action: AlertAction,
                      expected: EventDecision) -> None:
    assert decide_event(current, action) == expected


CLOSE_TABLE = [
    ("open alert, resolvable source -> resolve + upstream", OPEN, True,
     TicketCloseDecision(resolve_alert=True, resolve_upstream=True)),
    ("open alert, custom source -> resolve locally only", OPEN, False,
     TicketCloseDecision(resolve_alert=True, resolve_upstream=False)),
    ("alert already resolved upstream -> nothing more", RESOLVED_UPSTREAM, True,
     TicketCloseDecision(resolve_alert=False, resolve_upstream=False)),
    ("ticket without alert -> just close", None, True,
     TicketCloseDecision(resolve_alert=False, resolve_upstream=False)),
]


@pytest.mark.parametrize(("alert", "resolvable", "expected"),
                         [row[1:] for row in CLOSE_TABLE], ids=[row[0] for row in CLOSE_TABLE])
def test_decide_ticket_close(alert: AlertSnapshot | None, resolvable: bool,
                             expected: TicketCloseDecision) -> None:
    assert decide_ticket_close(True, alert, resolvable) == expected


def test_closing_a_closed_ticket_is_refused() -> None:
    with pytest.raises(TicketAlreadyClosed):
        decide_ticket_close(False, OPEN, True)


CLOSED = EventDecision(Outcome.RESOLVED, AlertState.RESOLVED, ResolvedBy.UPSTREAM,
                       close_ticket=True)


def left_open(because: str) -> EventDecision:
    return EventDecision(Outcome.RESOLVED_LEFT_OPEN, AlertState.RESOLVED, ResolvedBy.UPSTREAM,
                         left_open_because=because)


AUTO_CLOSE_TABLE = [
    # (name, auto_close, the open alert, what its upstream resolve decides)
    ("untouched policy, untouched ticket -> closed", AutoClose.UNTOUCHED, OPEN, CLOSED),
    ("untouched policy, worked ticket -> left open", AutoClose.UNTOUCHED, OPEN_TOUCHED,
     left_open(LEFT_OPEN_TOUCHED)),
    ("always -> closed, untouched", AutoClose.ALWAYS, OPEN, CLOSED),
    ("always -> closed, even worked on", AutoClose.ALWAYS, OPEN_TOUCHED, CLOSED),
    ("never -> left open, untouched", AutoClose.NEVER, OPEN, left_open(LEFT_OPEN_NEVER)),
    ("never -> left open, worked on", AutoClose.NEVER, OPEN_TOUCHED,
     left_open(LEFT_OPEN_NEVER)),
    # An open alert without a ticket (no ticket to keep open): resolved as ever.
    ("untouched policy, no ticket -> resolved", AutoClose.UNTOUCHED, OPEN_NO_TICKET, CLOSED),
    ("never, no ticket -> resolved", AutoClose.NEVER, OPEN_NO_TICKET, CLOSED),
]


@pytest.mark.parametrize(("auto_close", "current", "expected"),
                         [row[1:] for row in AUTO_CLOSE_TABLE],
                         ids=[row[0] for row in AUTO_CLOSE_TABLE])
def test_an_upstream_resolve_closes_the_ticket_as_auto_close_says(
        auto_close: AutoClose, current: AlertSnapshot, expected: EventDecision) -> None:
    assert decide_event(current, AlertAction.RESOLVE, auto_close) == expected


@pytest.mark.parametrize("auto_close", list(AutoClose))
@pytest.mark.parametrize(("current", "action"), [
    (snapshot, action)
    for snapshot in (None, OPEN, OPEN_TOUCHED, TOMBSTONE, RESOLVED_UPSTREAM, RESOLVED_BY_TICKET,
                     AlertSnapshot(AlertState.RESOLVED, ResolvedBy.UPSTREAM, has_ticket=True,
                                   ticket_touched=True))
    for action in AlertAction
    if not (snapshot is not None and snapshot.state is AlertState.OPEN
            and action is AlertAction.RESOLVE)
    and not (snapshot is TOMBSTONE and action is AlertAction.RAISE)])
def test_auto_close_changes_nothing_but_the_resolve_of_an_open_alert(
        auto_close: AutoClose, current: AlertSnapshot | None, action: AlertAction) -> None:
    assert decide_event(current, action, auto_close) == decide_event(current, action,
                                                                     AutoClose.ALWAYS)


EXPIRED_CLOSED = EventDecision(Outcome.EXPIRED, AlertState.RESOLVED, ResolvedBy.EXPIRY,
                               close_ticket=True)
EXPIRY_TABLE = [
    # (name, auto_close, stored alert, decision)
    ("open, untouched -> expired, ticket closed", AutoClose.UNTOUCHED, OPEN, EXPIRED_CLOSED),
    ("open, worked on -> expired, ticket left open", AutoClose.UNTOUCHED, OPEN_TOUCHED,
     EventDecision(Outcome.EXPIRED, AlertState.RESOLVED, ResolvedBy.EXPIRY,
                   left_open_because=LEFT_OPEN_TOUCHED)),
    ("always closes, worked on or not", AutoClose.ALWAYS, OPEN_TOUCHED, EXPIRED_CLOSED),
    ("never leaves it open", AutoClose.NEVER, OPEN,
     EventDecision(Outcome.EXPIRED, AlertState.RESOLVED, ResolvedBy.EXPIRY,
                   left_open_because=LEFT_OPEN_NEVER)),
    ("open without a ticket -> expired", AutoClose.UNTOUCHED, OPEN_NO_TICKET, EXPIRED_CLOSED),
    ("resolved upstream meanwhile -> nothing", AutoClose.UNTOUCHED, RESOLVED_UPSTREAM, None),
    ("resolved by its ticket -> nothing", AutoClose.UNTOUCHED, RESOLVED_BY_TICKET, None),
    ("a tombstone -> nothing", AutoClose.UNTOUCHED, TOMBSTONE, None),
]


@pytest.mark.parametrize(("auto_close", "current", "expected"),
                         [row[1:] for row in EXPIRY_TABLE], ids=[row[0] for row in EXPIRY_TABLE])
def test_decide_expiry(auto_close: AutoClose, current: AlertSnapshot,
                       expected: EventDecision | None) -> None:
    assert decide_expiry(current, auto_close) == expected


def test_an_expired_alert_takes_no_later_event_for_a_new_one() -> None:
    """After expiry the alert is resolved: a late resolve changes nothing, a late raise of
    the same id is a late twin (the RMM raises a new id for a new occurrence)."""
    expired = AlertSnapshot(AlertState.RESOLVED, ResolvedBy.EXPIRY, has_ticket=True)
    assert decide_event(expired, AlertAction.RESOLVE).outcome is Outcome.ALREADY_RESOLVED
    assert decide_event(expired, AlertAction.RAISE).outcome is Outcome.LATE_TWIN


@pytest.mark.parametrize(("auto_close", "expected"), [
    (AutoClose.UNTOUCHED, EventDecision(Outcome.LATE_RAISE, AlertState.RESOLVED,
                                        open_ticket=True, close_ticket=True)),
    (AutoClose.ALWAYS, EventDecision(Outcome.LATE_RAISE, AlertState.RESOLVED,
                                     open_ticket=True, close_ticket=True)),
    # Under "never" the order of raise and resolve must not matter: resolve-then-raise leaves
    # the ticket open and marked, as raise-then-resolve does.
    (AutoClose.NEVER, EventDecision(Outcome.LATE_RAISE, AlertState.RESOLVED,
                                    open_ticket=True, left_open_because=LEFT_OPEN_NEVER)),
])
def test_a_late_raise_records_its_ticket_as_auto_close_would_have_left_it(
        auto_close: AutoClose, expected: EventDecision) -> None:
    assert decide_event(TOMBSTONE, AlertAction.RAISE, auto_close) == expected


def _play(order: tuple[str, ...], auto_close: AutoClose) -> tuple[str, bool]:
    """Play raise / resolve / note in `order` through the core's decisions, keeping what the
    database would keep; the alert's state and whether its ticket ends open. A note needs a
    ticket (before the raise there is none to write on)."""
    alert: AlertSnapshot | None = None
    ticket_open: bool | None = None  # None: no ticket
    touched = False
    for step in order:
        if step == "note":
            touched = touched or ticket_open is not None
            continue
        if alert is not None:
            alert = AlertSnapshot(alert.state, alert.resolved_by, ticket_open is not None,
                                  ticket_touched=touched)
        decision = decide_event(alert, AlertAction(step), auto_close)
        if decision.open_ticket:
            ticket_open = not decision.close_ticket
        elif decision.close_ticket and ticket_open:
            ticket_open = False
        alert = AlertSnapshot(decision.new_state, decision.resolved_by or
                              (alert.resolved_by if alert else None))
    assert alert is not None
    return alert.state.value, bool(ticket_open)


ORDERS = [("raise", "resolve", "note"), ("raise", "note", "resolve"),
          ("resolve", "raise", "note"), ("resolve", "note", "raise"),
          ("note", "raise", "resolve"), ("note", "resolve", "raise")]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
@pytest.mark.parametrize("auto_close", list(AutoClose))
def test_every_order_of_raise_resolve_and_note_ends_as_auto_close_says(
        order: tuple[str, ...], auto_close: AutoClose) -> None:
    """The alert always ends resolved. Its ticket ends open only where a person was at work
    on it when the resolve came (untouched), never (always), or always (never)."""
    worked_before_resolve = order == ("raise", "note", "resolve")
    expected_open = {AutoClose.UNTOUCHED: worked_before_resolve, AutoClose.ALWAYS: False,
                     AutoClose.NEVER: True}[auto_close]
    assert _play(order, auto_close) == ("resolved", expected_open)

"""The alert lifecycle as pure decisions: given what is stored and what arrived, what changes.

No I/O here. `daemon.tickets.transitions` loads the current state inside a transaction (with
the alert row locked), asks these functions, and applies the answer in that same transaction,
so the rules hold even when several processes share one database.

States: an alert is `open` or `resolved`. `resolved_by` says who resolved it: `upstream` (the RMM
said so, by any channel) or `ticket` (an agent closed its ticket and alertd resolves it upstream).
A *tombstone* is an alert resolved before any raise was seen: it has no ticket yet. When the raise
of the same id arrives late (email is often slower than a webhook), a ticket is recorded already
closed, so the end state is the same in every order: one alert, one ticket, closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Sources whose RMM has an API call that resolves an alert (sent from the outbox).
UPSTREAM_RESOLVABLE_SOURCES = frozenset({"datto", "syncro"})
_RMM_NAMES = {"datto": "Datto RMM", "syncro": "Syncro"}


def rmm_name(source: str) -> str:
    """A source as people name it in a note ("Datto RMM"); other sources as they are."""
    return _RMM_NAMES.get(source, source)


class AlertAction(StrEnum):
    RAISE = "raise"
    RESOLVE = "resolve"


class AlertState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ResolvedBy(StrEnum):
    UPSTREAM = "upstream"
    TICKET = "ticket"
    EXPIRY = "expiry"  # open longer than its `expire_after`: alertd stopped waiting


class AutoClose(StrEnum):
    """When an upstream resolve closes its alert's ticket (`[lifecycle] auto_close`)."""

    UNTOUCHED = "untouched"  # unless an agent worked on it (a note, a change)
    ALWAYS = "always"
    NEVER = "never"


class Outcome(StrEnum):
    """What an incoming raise/resolve did; stored on the delivery and counted in metrics."""

    OPENED = "opened"  # new alert, new ticket
    JOINED = "joined"  # new alert, joined the open ticket of its condition
    REOPENED = "reopened"  # new alert, reopened its condition's ticket closed a moment ago
    TWIN = "twin"  # raise while open: another channel/occurrence of the same alert
    RESOLVED = "resolved"  # resolve while open: alert resolved, ticket closed
    # Resolve while open, the ticket left open (`auto_close`): it is marked resolved upstream.
    RESOLVED_LEFT_OPEN = "resolved_left_open"
    # Resolve while open, the ticket left open: other alerts of its condition are still open.
    RESOLVED_OTHERS_OPEN = "resolved_others_open"
    # Resolve while open, the ticket to close once its condition stayed clear
    # (`close_after_clear`): a raise of the condition before then keeps it open.
    RESOLVED_CLEARING = "resolved_clearing"
    TOMBSTONE = "tombstone"  # resolve before any raise: resolved alert, no ticket
    LATE_RAISE = "late_raise"  # raise after a tombstone: its ticket is recorded, closed
    LATE_TWIN = "late_twin"  # raise after resolve of an alert that has its ticket: recorded only
    ALREADY_RESOLVED = "already_resolved"  # resolve after resolve (e.g. the echo of ours)
    # Not an event: the alert was open longer than its `expire_after` (resolved by alertd).
    EXPIRED = "expired"
    # New alert inside a maintenance window covering it: stored, counted, no ticket.
    SUPPRESSED = "suppressed"
    # Not an event: a suppressed alert still open when no window covers it any more got its
    # ticket (daemon.tickets.maintenance).
    RELEASED = "released"


@dataclass(frozen=True)
class AlertSnapshot:
    """The stored facts a decision depends on."""

    state: AlertState
    resolved_by: ResolvedBy | None = None
    has_ticket: bool = False
    ticket_touched: bool = False  # an agent added a note to its ticket or changed it
    others_open: bool = False  # other alerts of its ticket (its condition) are still open


@dataclass(frozen=True)
class EventDecision:
    outcome: Outcome
    new_state: AlertState
    resolved_by: ResolvedBy | None = None  # set when this event resolves the alert
    open_ticket: bool = False  # with `close_ticket`: record the ticket already closed
    close_ticket: bool = False
    # Set when the alert is resolved but its ticket stays open: why (said in a note).
    left_open_because: str | None = None
    # Set instead of `close_ticket` when `close_after_clear` holds the close back: seconds.
    close_after_s: int = 0


LEFT_OPEN_TOUCHED = "it is being worked"
LEFT_OPEN_NEVER = 'auto_close is "never"'


def decide_event(current: AlertSnapshot | None, action: AlertAction,
                 auto_close: AutoClose = AutoClose.UNTOUCHED,
                 close_after_clear_s: int = 0) -> EventDecision:
    """Decide what a raise or resolve from the RMM does to the alert it names.

    Every event is also recorded as an occurrence (channel, count, last seen) by the caller;
    this function decides only the state changes. An upstream resolve closes the ticket as
    `auto_close` says: human work is not closed under someone's feet; a ticket with other
    open alerts (its condition's) stays open; with `close_after_clear_s` the close waits
    that long (`decide_clear_close` then decides again).

    Which ticket a new alert gets (its own, or its condition's) is decided by
    `daemon.core.conditions.choose_ticket`.
    """
    if current is None:
        if action is AlertAction.RAISE:
            return EventDecision(Outcome.OPENED, AlertState.OPEN, open_ticket=True)
        return EventDecision(Outcome.TOMBSTONE, AlertState.RESOLVED, ResolvedBy.UPSTREAM)
    if current.state is AlertState.OPEN:
        if action is AlertAction.RAISE:
            return EventDecision(Outcome.TWIN, AlertState.OPEN)
        if current.others_open:
            return EventDecision(Outcome.RESOLVED_OTHERS_OPEN, AlertState.RESOLVED,
                                 ResolvedBy.UPSTREAM)
        left_open_because = _left_open_because(current, auto_close)
        if left_open_because is not None:
            return EventDecision(Outcome.RESOLVED_LEFT_OPEN, AlertState.RESOLVED,
                                 ResolvedBy.UPSTREAM, left_open_because=left_open_because)
        if close_after_clear_s > 0 and current.has_ticket:
            return EventDecision(Outcome.RESOLVED_CLEARING, AlertState.RESOLVED,
                                 ResolvedBy.UPSTREAM, close_after_s=close_after_clear_s)
        return EventDecision(
            Outcome.RESOLVED, AlertState.RESOLVED, ResolvedBy.UPSTREAM, close_ticket=True
        )
    if action is AlertAction.RAISE:
        if not current.has_ticket:
            # Resolve came first (channels race): the alert really was open for a while, so it
            # gets the ticket it would have had in order, as the resolve would have left it
            # (a new ticket is untouched): closed at once, unless `auto_close` keeps it open.
            left_open_because = _left_open_because(
                AlertSnapshot(current.state, current.resolved_by, has_ticket=True), auto_close)
            return EventDecision(Outcome.LATE_RAISE, AlertState.RESOLVED, open_ticket=True,
                                 close_ticket=left_open_because is None,
                                 left_open_because=left_open_because)
        return EventDecision(Outcome.LATE_TWIN, AlertState.RESOLVED)
    # The RMM confirming a resolve we already know of (including the echo of our own
    # resolve call after an agent closed the ticket) changes nothing and sends nothing.
    return EventDecision(Outcome.ALREADY_RESOLVED, AlertState.RESOLVED)


def decide_expiry(current: AlertSnapshot, auto_close: AutoClose = AutoClose.UNTOUCHED
                  ) -> EventDecision | None:
    """An alert open longer than its `expire_after`: resolved by alertd, its ticket closed
    as `auto_close` says (human work stays open). None when it is not open (any more)."""
    if current.state is not AlertState.OPEN:
        return None
    if current.others_open:  # its ticket waits for the other alerts of its condition
        return EventDecision(Outcome.EXPIRED, AlertState.RESOLVED, ResolvedBy.EXPIRY)
    left_open_because = _left_open_because(current, auto_close)
    return EventDecision(Outcome.EXPIRED, AlertState.RESOLVED, ResolvedBy.EXPIRY,
                         close_ticket=left_open_because is None,
                         left_open_because=left_open_because)


def decide_clear_close(ticket_touched: bool, auto_close: AutoClose = AutoClose.UNTOUCHED
                       ) -> str | None:
    """A ticket whose condition stayed clear for `close_after_clear`: None to close it now,
    else why it stays open (an agent started working on it while it waited)."""
    return _left_open_because(AlertSnapshot(AlertState.RESOLVED, has_ticket=True,
                                            ticket_touched=ticket_touched), auto_close)


def _left_open_because(current: AlertSnapshot, auto_close: AutoClose) -> str | None:
    """Why an upstream resolve leaves the alert's ticket open, or None when it closes it."""
    if not current.has_ticket or auto_close is AutoClose.ALWAYS:
        return None
    if auto_close is AutoClose.NEVER:
        return LEFT_OPEN_NEVER
    return LEFT_OPEN_TOUCHED if current.ticket_touched else None


@dataclass(frozen=True)
class TicketCloseDecision:
    resolve_alert: bool
    resolve_upstream: bool


class TicketAlreadyClosed(Exception):
    """Closing a closed ticket is refused rather than silently repeated."""


def decide_ticket_close(
    ticket_open: bool, alert: AlertSnapshot | None, upstream_resolvable: bool
) -> TicketCloseDecision:
    """Decide what an agent closing a ticket does to its alert.

    An open alert is resolved "by ticket" and, when its source has an API that can resolve it
    (`upstream_resolvable`), one "resolve upstream" action is queued. An alert already resolved
    upstream needs nothing more.
    """
    if not ticket_open:
        raise TicketAlreadyClosed
    if alert is None or alert.state is AlertState.RESOLVED:
        return TicketCloseDecision(resolve_alert=False, resolve_upstream=False)
    return TicketCloseDecision(resolve_alert=True, resolve_upstream=upstream_resolvable)

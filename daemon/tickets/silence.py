"""Silent intake channels (`[watch]`; issue 18, item 4; the `channel.silent` notification of
issue 17).

A Datto webhook deleted, a mailbox password changed, a forwarder stopped: the channel goes
quiet and nobody notices. For each watched channel, a job (every minute) compares the time
since its last input with the silence it may have. Past it, alertd raises an alert of its
own (source `alertd`, device = the channel, so a ticket) and tells the `channel.silent`
targets; when input resumes it resolves that alert, which closes the ticket as any upstream
resolve does (`[lifecycle] auto_close`).

- Silence is counted from the last input, or from alertd's start when that is later: the
  hours alertd itself was stopped are not the channel's fault.
- One alert per silence, named by its last input (`silent:<channel>:<last input>`): a ticket
  an agent closed while the channel is still silent is not raised again, a restart does not
  raise it twice, and several processes raise one. Input after the alert was raised
  resolves it (every open one of the channel).
- The last input: the newest delivery of the channel (and source) through the channel
  indexes; for an IMAP account, its checkpoint (moved only by a committed batch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utc_iso, utcnow
from daemon.core.durations import format_duration
from daemon.core.events import AlertEvent, TicketFields
from daemon.core.lifecycle import AlertAction
from daemon.metrics import Metrics
from daemon.store import activity
from daemon.store.database import Database
from daemon.store.models import Alert
from daemon.tickets.notices import CHANNEL_SILENT
from daemon.tickets.transitions import Transitions

log = logging.getLogger(__name__)

SOURCE = "alertd"  # alertd's own alerts
CHANNEL = "watch"  # what their trail names as the channel that reported them


class SilenceWatch:
    """The job of `alertd run` that raises and resolves alertd's silent-channel alerts."""

    def __init__(self, db: Database, transitions: Transitions, limits: Mapping[str, int],
                 metrics: Metrics, started_at: datetime, clock: Clock = utcnow):
        self._db = db
        self._transitions = transitions
        self._limits = dict(limits)  # channel -> the longest silence it may have, seconds
        self._metrics = metrics
        self._started_at = started_at
        self._clock = clock

    async def run_once(self) -> list[str]:
        """Check every watched channel; what changed ("silent smtp", "resumed smtp")."""
        now = self._clock()
        changes = []
        for channel, limit_s in self._limits.items():
            changed = await self._db.write(partial(self._check, channel=channel,
                                                   limit_s=limit_s, now=now))
            if changed:
                changes.append(f"{changed} {channel}")
        return changes

    def _check(self, session: Session, *, channel: str, limit_s: int, now: datetime
               ) -> str | None:
        last_input = activity.last_input(session, channel)
        since = max(last_input or self._started_at, self._started_at)
        silent = now - since > timedelta(seconds=limit_s)
        conn = session.connection()
        open_alerts = session.execute(
            select(Alert.uid, Alert.first_seen_at)
            .where(Alert.source == SOURCE, Alert.device == channel, Alert.state == "open")
            .order_by(Alert.id)).all()
        # Input after an alert was raised ends its silence, whatever this process's start.
        resumed = [alert for alert in open_alerts
                   if last_input is not None and last_input > alert.first_seen_at]
        if resumed:
            for alert in resumed:
                self._transitions.apply_event(conn, CHANNEL, AlertEvent(
                    SOURCE, alert.uid, AlertAction.RESOLVE, device=channel,
                    message=f"Input on {channel} again at {utc_iso(last_input)}"), now)
            self._metrics.channel_silent.labels(channel).set(0)
            log.info("channel %s resumed (input at %s); alert(s) %s resolved", channel,
                     utc_iso(last_input), ", ".join(alert.uid for alert in resumed),
                     extra={"channel": channel, "source": SOURCE})
            return "resumed"
        # Past its silence, or an alert of this silence still open (raised before a restart).
        self._metrics.channel_silent.labels(channel).set(1 if silent or open_alerts else 0)
        if not silent:
            return None
        # One alert per silence, named by the silence: every process that sees it names the
        # same alert, and the (source, uid) index keeps it one. An agent's close of its
        # ticket ends nothing: the alert stays that silence's.
        uid = f"silent:{channel}:{utc_iso(last_input) if last_input else 'never'}"
        if session.scalar(select(Alert.id).where(Alert.source == SOURCE,
                                                 Alert.uid == uid)) is not None:
            return None
        said = (f"No input on {channel} for {format_duration(limit_s)} or more "
                f"(last input: {utc_iso(last_input) if last_input else 'none'}; "
                f"[watch] allows {format_duration(limit_s)})")
        result = self._transitions.apply_event(conn, CHANNEL, AlertEvent(
            SOURCE, uid, AlertAction.RAISE, device=channel, priority="High", message=said,
            ticket=TicketFields(type="alertd", summary=f"alertd: {channel} is silent",
                                details=said)), now)
        if result.ticket_id is None or result.outcome != "opened":
            return None  # raised by another process meanwhile, or held by maintenance
        self._transitions.notices.queue(
            conn, CHANNEL_SILENT, now, source=SOURCE, ticket_id=result.ticket_id,
            alert_id=result.alert_id, channel=channel,
            last_input_at=utc_iso(last_input) if last_input else None)
        log.warning("channel %s silent: %s; alert %s ticket %s", channel, said, result.uid,
                    result.ticket_id, extra={"channel": channel, "source": SOURCE,
                                             "alert_id": result.alert_id,
                                             "ticket_id": result.ticket_id})
        return "silent"

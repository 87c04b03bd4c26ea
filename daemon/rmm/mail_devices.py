"""Datto alert mail placed on its device (issue 17, item 9).

Datto's alert mail names the alert (`Alert{[alertuid]}` in the subject, the packaged rules'
convention) but carries no device id: its email variables name an IP address and a site at
most, and an IP address names no device across customers. A ticket opened from the mail alone
is placed by the names the rules extracted, often on no asset.

With the Datto API configured (as the asset import needs it anyway), a job asks Datto about
each such alert once: `GET /api/v2/alert/{uid}` names the device (`alertSourceInfo`). alertd
records the device on the alert and, when the ticket is still open and on no asset, places it
on the imported asset of that device, with a note. Webhook and polling copies carry the
device already and are never asked about.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from functools import partial
from typing import Protocol

from sqlalchemy import Table, and_, select
from sqlalchemy.orm import Session

from daemon.core.clock import Clock, utcnow
from daemon.core.events import AlertEvent, clamp_event
from daemon.core.lifecycle import AlertAction
from daemon.rmm.datto import DattoAlert
from daemon.rmm.errors import Rejected, RmmError
from daemon.store.database import Database
from daemon.store.models import Asset, Ticket
from daemon.tickets import statements as sql
from daemon.tickets.placement import TicketPlacer

log = logging.getLogger(__name__)

_GUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
MAX_ASKED_PER_RUN = 50  # reads per run (every minute): far under Datto's read limit
# `device_ref` of an alert Datto was asked about and named no device for: never asked again.
NO_DEVICE = ""

_TICKETS: Table = Ticket.__table__  # type: ignore[assignment]
_ASSETS: Table = Asset.__table__  # type: ignore[assignment]
# Open tickets on no asset whose opening alert is Datto's and names no device id (a mail's).
_DUE = (select(sql.ALERTS.c.id, sql.ALERTS.c.uid)
        .select_from(_TICKETS)
        .join(sql.ALERTS, and_(sql.ALERTS.c.id == _TICKETS.c.alert_id,
                               sql.ALERTS.c.source == "datto",
                               sql.ALERTS.c.device_ref.is_(None)))
        .where(_TICKETS.c.status == "open", _TICKETS.c.asset_id.is_(None))
        .order_by(_TICKETS.c.id.desc()))


class AlertReader(Protocol):
    async def alert(self, uid: str) -> DattoAlert | None: ...


class MailAlertDevices:
    """The job of `alertd run` (every minute, with the Datto API configured)."""

    def __init__(self, db: Database, datto: AlertReader, placer: TicketPlacer,
                 clock: Clock = utcnow):
        self._db = db
        self._datto = datto
        self._placer = placer
        self._clock = clock

    async def run_once(self) -> int:
        """Ask Datto about the due alerts (at most `MAX_ASKED_PER_RUN`); how many tickets
        were placed on an asset."""
        due = await self._db.read(lambda s: [
            (int(row.id), str(row.uid)) for row in s.execute(_DUE.limit(MAX_ASKED_PER_RUN))])
        placed = 0
        for alert_id, uid in due:
            found = None
            if _GUID.fullmatch(uid):  # Datto's alert ids; anything else Datto cannot know
                try:
                    found = await self._datto.alert(uid)
                except Rejected as err:  # refused for this alert alone: not asked again
                    log.warning("datto: could not read alert %s for its device (%s)", uid, err)
                except RmmError as err:
                    # Datto unwell, or the key refused: about every alert, not this one. The
                    # next run asks again (after the admin fixed the key, if that was it).
                    log.warning("datto: could not read alert %s for its device (%s)", uid, err)
                    break
            if await self._db.write(partial(self._complete, alert_id=alert_id, found=found,
                                            now=self._clock())):
                placed += 1
        return placed

    def _complete(self, session: Session, *, alert_id: int, found: DattoAlert | None,
                  now: datetime) -> bool:
        """Record the device on the alert; place its open ticket on the device's asset."""
        conn = session.connection()
        alert = sql.LOCK_ALERT_BY_ID.first(conn, {"id": alert_id})
        if alert is None or alert["device_ref"] is not None:
            return False  # a webhook or poll copy named it meanwhile
        if found is None or not found.device_uid:
            sql.UPDATE_ALERT.run(conn, {"row_id": alert_id, "device_ref": NO_DEVICE})
            return False
        # Datto's words fit the alert's columns as any channel's do (one line, cut to size).
        named = clamp_event(AlertEvent(
            "datto", alert["uid"], AlertAction.RAISE, device=alert["device"] or found.device_name,
            site=alert["site"] or found.site_name, customer=alert["customer"],
            device_ref=found.device_uid))
        sql.UPDATE_ALERT.run(conn, {"row_id": alert_id, "device_ref": named.device_ref,
                                    "device": named.device, "site": named.site})
        ticket = conn.execute(select(_TICKETS.c.id, _TICKETS.c.status, _TICKETS.c.asset_id,
                                     _TICKETS.c.customer_id, _TICKETS.c.site_id)
                              .where(_TICKETS.c.alert_id == alert_id)
                              .with_for_update()).first()
        if ticket is None or ticket.status != "open" or ticket.asset_id is not None:
            return False
        placement = self._placer.locate(conn, named)
        if placement.asset_id is None or (ticket.customer_id is not None
                                          and ticket.customer_id != placement.customer_id):
            return False  # not imported, or the ticket was placed at another customer
        sql.UPDATE_TICKET.run(conn, {
            "row_id": ticket.id, "asset_id": placement.asset_id,
            "customer_id": ticket.customer_id or placement.customer_id,
            "site_id": ticket.site_id or placement.site_id})
        name = conn.execute(select(_ASSETS.c.name).where(
            _ASSETS.c.id == placement.asset_id)).scalar_one()
        sql.insert_note(conn, ticket.id, "alertd", (
            f"Placed on asset {name}: Datto RMM names device "
            f"{(found.device_name or '?')[:255]} ({named.device_ref}) as the source of alert "
            f"{alert['uid']}, which arrived by "
            "mail."), now)
        log.info("ticket %s placed on asset %s (datto device %s of mail alert %s)",
                 ticket.id, placement.asset_id, named.device_ref, alert["uid"],
                 extra={"ticket_id": ticket.id, "alert_id": alert_id, "source": "datto"})
        return True

"""Test helpers shared by several test modules."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.core.events import Channel
from daemon.intake.inbound import Inbound, ProcessResult
from daemon.intake.pipeline import Pipeline
from daemon.store.models import (
    Asset,
    AssetGroup,
    AssetType,
    Customer,
    EndUser,
    ExternalRef,
    Site,
    SyncRun,
)


def event_body(uid: str, action: str = "raise", source: str = "datto", **extra: Any
               ) -> dict[str, Any]:
    return {"source": source, "uid": uid, "action": action, **extra}


async def deliver(pipeline: Pipeline, uid: str, action: str = "raise",
                  channel: Channel = Channel.API, source: str = "datto", **extra: Any
                  ) -> ProcessResult:
    """Store one event as a delivery on `channel` and process it; return the result."""
    payload = json.dumps(event_body(uid, action, source, **extra)).encode()
    accepted = await pipeline.submit(Inbound(
        channel=channel, dedupe_key=str(uuid.uuid4()), payload=payload,
        content_type="application/json", source=source))
    result = await pipeline.process(accepted.delivery_id)
    assert result is not None
    return result


def table_counts(session: Session) -> dict[str, int]:
    """Rows in each table the sync writes."""
    return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Customer, Site, EndUser, Asset, AssetType, AssetGroup, ExternalRef,
                          SyncRun)}


def datto_alert_mail(n: int, uid: str, sender: str = "rmm@msp.example",
                     ip: str = "10.0.0.5", body: str = "body") -> Inbound:
    """Datto alert mail over SMTP as the packaged rules expect it: the device's IP address
    in the subject, never its device id."""
    return Inbound(
        channel=Channel.SMTP, dedupe_key=f"mail-{n}", content_type="message/rfc822",
        payload=(f"From: {sender}\r\nTo: alerts@msp.example\r\nSubject: Alert on device: "
                 f"{ip}, reason Disk usage - Alert{{{uid}}}\r\nMessage-ID: <m{n}@x>\r\n\r\n"
                 f"{body}\r\n").encode())

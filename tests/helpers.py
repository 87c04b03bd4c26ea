"""Test helpers shared by several test modules."""

from __future__ import annotations

import json
import uuid
from typing import Any

from daemon.core.events import Channel
from daemon.intake.inbound import Inbound, ProcessResult
from daemon.intake.pipeline import Pipeline


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

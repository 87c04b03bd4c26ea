"""The intake's log lines carry what they are about as fields (issue 18, item 1): the JSON
format writes them as keys, the journal's native entries as fields."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.api_client import Api
from tests.component.test_metrics import raise_alert


async def test_an_alert_line_names_delivery_alert_ticket_source_and_channel(
        app: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon")
    body = await raise_alert(app, "fields-1")
    [event] = body["events"]
    [line] = [record for record in caplog.records if getattr(record, "alert_id", None)]
    fields: dict[str, Any] = {key: getattr(line, key) for key in (
        "delivery_id", "alert_id", "ticket_id", "source", "channel")}
    assert fields == {"delivery_id": body["delivery_id"], "alert_id": event["alert_id"],
                      "ticket_id": event["ticket_id"], "source": "datto", "channel": "api"}

    caplog.clear()
    status, _ = await app.call("POST", f"/api/tickets/{event['ticket_id']}/close",
                               body={"note": "done"})
    assert status == 200
    [closed] = [record for record in caplog.records if "closed by" in record.getMessage()]
    assert (closed.ticket_id, closed.alert_id, closed.source) == (  # type: ignore[attr-defined]
        event["ticket_id"], event["alert_id"], "datto")

"""Values of `POST /api/alerts` that JSON allows in more than one spelling, and text that no
database column can hold: the interpreter and the request model agree on each."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from daemon.core.api_event import parse_api_event
from daemon.core.events import AlertEvent, TicketFields, clamp_event
from daemon.core.lifecycle import AlertAction
from daemon.http.models import AlertEventBody


def body(uid: Any) -> dict[str, Any]:
    return {"source": "datto", "uid": uid, "action": "raise"}


@pytest.mark.parametrize(("uid", "stored"), [(42, "42"), (42.0, "42"), (0.0, "0")])
def test_an_integral_number_is_the_same_uid_however_it_is_spelt(uid: Any, stored: str) -> None:
    assert AlertEventBody.model_validate(body(uid))
    assert parse_api_event(body(uid)).uid == stored


@pytest.mark.parametrize("uid", [42.5, -1.0, 1e19, float("inf"), True])
def test_a_number_that_is_no_id_is_refused_by_both(uid: Any) -> None:
    with pytest.raises(ValidationError):
        AlertEventBody.model_validate(body(uid))
    if not isinstance(uid, bool):  # bool is refused by the interpreter's string rule too
        with pytest.raises(Exception, match="uid"):
            parse_api_event(body(uid))


def test_clamp_drops_nul_from_the_texts_it_stores() -> None:
    """Mail can carry U+0000 (the JSON routes refuse it): dropped before any column sees it."""
    event = AlertEvent(source="datto", uid="u\x00id", action=AlertAction.RAISE,
                       device="FS\x0001", message="disk\x00 full",
                       ticket=TicketFields("T\x00", "sum\x00mary", "det\x00ails"))
    clamped = clamp_event(event)
    assert (clamped.uid, clamped.device, clamped.message) == ("uid", "FS 01", "disk full")
    assert clamped.ticket == TicketFields("T", "summary", "details")

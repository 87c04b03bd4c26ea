"""One-line fields (device, site, customer, summary) hold no line break or control
character: a name sent as "PC\\r\\nBACKUP" must not cut the summary to "PC"."""

from __future__ import annotations

from daemon.core.events import AlertEvent, clamp_event, default_summary, one_line
from daemon.core.lifecycle import AlertAction
from daemon.webhooks import syncro
from tests.webhook_samples import syncro_body


def test_one_line_joins_runs_of_breaks_and_controls_with_one_space() -> None:
    assert one_line(" PC\r\nBACKUP\t\x00-01\u2028x ") == "PC BACKUP -01 x"


def test_a_syncro_computer_name_with_a_line_break_keeps_the_description() -> None:
    body = syncro_body(computer_name="PC\r\nBACKUP", description="Low disk space on C:")
    event = clamp_event(syncro.parse_syncro_webhook(body))
    assert event.device == "PC BACKUP"
    assert event.ticket.summary == "PC BACKUP: Low disk space on C:"


def test_default_summary_is_one_line_with_the_first_line_of_the_message() -> None:
    event = AlertEvent(source="datto", uid="u", action=AlertAction.RAISE,
                       device="FS\n01", message="\n\nDisk C: 97% full\nmore detail")
    assert default_summary(event) == "FS 01 - Disk C: 97% full"
    assert clamp_event(event).device == "FS 01"
    assert clamp_event(event).message == event.message  # details keep their lines

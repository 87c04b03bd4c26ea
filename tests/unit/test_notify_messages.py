"""What a notification says and how it is signed and escaped (issue 17), pure."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from daemon.notify.messages import TemplateFailed, Templates, digest, document
from daemon.notify.transports import shown_url, slack_body, teams_body, webhook_request

TICKET = {"id": 7, "summary": "PC-01 - Disk C: full", "status": "open", "type": "alert",
          "priority": "High", "customer": None, "site": "HQ", "asset": None,
          "opened_at": "2026-12-07T05:00:00Z", "closed_at": None, "closed_by": None,
          "occurrences": 2, "alert": {"device": "PC-01"},
          "alerts": [{"source": "datto", "uid": "u-1", "state": "open"}]}
ALERT = {"id": 3, "source": "datto", "uid": "u-1", "message": "Disk C: full",
         "device": "PC-01", "site": "HQ", "customer": "Acme", "priority": "High",
         "state": "open"}


def doc(event: str = "ticket.opened", **details: str) -> dict[str, object]:
    return document(11, event, "2026-12-07T05:00:00Z", TICKET, ALERT, details,
                    "https://alertd.msp.example")


def test_the_document_names_the_ticket_with_the_alerts_words_where_not_placed() -> None:
    found = doc()
    ticket = found["ticket"]
    assert isinstance(ticket, dict)
    assert ticket["customer"] == "Acme"  # not placed on a synced customer: the alert's
    assert ticket["device"] == "PC-01"
    assert ticket["url"] == "https://alertd.msp.example/ui/tickets/7"
    assert found["details"] == {"closed_by": None, "note": None, "left_open_because": None,
                                "window": None, "channel": None, "last_input_at": None}


def test_default_text_and_a_one_line_subject() -> None:
    subject, text = Templates.of("{{ ticket.title }}\r\nBcc: x@y", "").render(doc())
    assert subject == "PC-01 - Disk C: full Bcc: x@y"
    assert text.startswith("Ticket #7 opened: PC-01 - Disk C: full")
    assert "https://alertd.msp.example/ui/tickets/7" in text
    subject, _ = Templates.of("", "").render(doc("ticket.closed", closed_by="agent:kim"))
    assert subject == "[alertd] Ticket #7 closed: PC-01 - Disk C: full"


def test_alert_text_is_data_and_the_sandbox_holds() -> None:
    hostile = {**ALERT, "message": "{{ 7 * 7 }} {% raw %}"}
    found = document(1, "alert.suppressed", "t", None, hostile, {"window": "weekly:x"}, "u")
    _, text = Templates.of("", "").render(found)
    assert "{{ 7 * 7 }} {% raw %}" in text
    with pytest.raises(TemplateFailed):
        Templates.of("", "{{ ticket.__class__.__mro__[1].__subclasses__() }}").render(doc())
    with pytest.raises(TemplateFailed, match="nope"):
        Templates.of("", "{{ details.nope }}").render(doc())


def test_the_signature_is_the_hmac_of_the_exact_body() -> None:
    body, headers = webhook_request("s3cret-0123456789", {"id": 5, "event": "x"}, now_s=1700)
    assert headers["X-Alertd-Signature"] == "sha256=" + hmac.new(
        b"s3cret-0123456789", body, hashlib.sha256).hexdigest()
    assert headers["X-Alertd-Timestamp"] == "1700" and headers["X-Alertd-Delivery"] == "5"
    assert json.loads(body)["sent_at"] == 1700


def test_chat_bodies() -> None:
    slack = json.loads(slack_body("<@here> s", "a & <b>"))
    assert slack["text"] == "*&lt;@here&gt; s*\na &amp; &lt;b&gt;"
    teams = json.loads(teams_body("s", "line 1\n[a link](https://evil.example)",
                                  "https://x/ui/tickets/7"))
    card = teams["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    runs = [block["inlines"][0] for block in card["body"]]
    assert all(block["type"] == "RichTextBlock" for block in card["body"])
    assert [run["type"] for run in runs] == ["TextRun"] * 3  # plain text: no Markdown link
    assert [run["text"] for run in runs] == ["s", "line 1", "[a link](https://evil.example)"]
    assert runs[0]["weight"] == "Bolder"


def test_a_digest_lists_each_notification() -> None:
    found = digest([doc(), doc("ticket.closed")], 10, "https://a")
    assert found["event"] == "digest" and found["count"] == 2
    assert "ticket #7 PC-01 - Disk C: full" in found["text"]
    assert found["id"] == "digest-" + hashlib.sha256(b"11,11").hexdigest()[:16]


def test_a_long_digest_keeps_its_count_and_link_within_the_text_limit() -> None:
    long_ticket = {**TICKET, "summary": "x" * 500,
                   "alerts": [{"source": "datto", "uid": f"u-{n}", "state": "open"}
                              for n in range(50)]}
    docs = [document(n, "ticket.opened", "t", long_ticket, ALERT, {}, "https://a")
            for n in range(200)]
    found = digest(docs, 10, "https://a")
    text = found["text"]
    assert len(text) <= 4000
    assert text.endswith("https://a/ui/tickets")
    listed = text.count("\n- ") - 1
    assert f"- ... and {200 - listed} more" in text
    assert all(len(n["ticket"]["alerts"]) == 5 for n in found["notifications"])


def test_a_shown_url_has_no_credentials() -> None:
    url = "https://user:pw@hooks.msp.example/alertd/in?token=s3cret"
    assert shown_url(url, with_path=True) == "https://hooks.msp.example/alertd/in"
    assert shown_url(url, with_path=False) == "https://hooks.msp.example"

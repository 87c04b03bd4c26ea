"""The rules engine (pure): loading with errors by rule, key and line; evaluation and trace."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from daemon.config.loading import packaged_rules_path
from daemon.core.lifecycle import AlertAction
from daemon.mail.parse import parse_message
from daemon.rules.engine import evaluate, render_ticket, to_event
from daemon.rules.load import RulesError, compile_rules, load_rules

UID = "3f0c6a51-8d47-4c2b-9d0e-2a6f5b1c7e90"


def message(subject: str, body: str = "Device: FS-01\nSite: Main Office\n",
            sender: str = "Datto RMM <rmm-alerts@example-msp.com>", **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (f"From: {sender}\r\nTo: alerts@example-msp.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@example-msp.com>\r\n{extra}\r\n{body}"
            ).encode()


def rules(text: str):  # type: ignore[no-untyped-def]
    return compile_rules(textwrap.dedent(text), "rules.toml")


def errors(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        rules(text)
    return [str(i) for i in caught.value.issues]


# --- the shipped example ---------------------------------------------------------------

@pytest.mark.parametrize(("subject", "action"), [
    (f"Alert on device: 192.0.2.10, reason Disk C: 97% - Alert{{{UID}}}", AlertAction.RAISE),
    (f"Alert on device: 192.0.2.10 - Alert{{{UID.upper()}}}", AlertAction.RAISE),
    (f"Resolved: Alert on device: 192.0.2.10 - Alert{{{UID}}}", AlertAction.RESOLVE),
    (f"FW: RESOLVED: Alert on device: 192.0.2.10 - Alert{{{UID}}}", AlertAction.RESOLVE),
    (f"RE: Alert on device: 192.0.2.10 - Alert{{{UID}}}", AlertAction.RAISE),
])
def test_example_rules_raise_and_resolve_datto_mail(subject: str, action: AlertAction) -> None:
    parsed = parse_message(message(subject))
    result = evaluate(load_rules(packaged_rules_path()), parsed)
    event = to_event(result, parsed, "fallback")
    assert event is not None
    assert (event.source, event.uid, event.action) == ("datto", UID, action)


def test_example_rules_ignore_other_mail() -> None:
    parsed = parse_message(message("Your invoice for November"))
    result = evaluate(load_rules(packaged_rules_path()), parsed)
    assert result.decided_by is None
    assert [r["hit"] for r in result.trace["rules"]] == [False, False]


def test_every_commented_example_in_the_shipped_file_compiles() -> None:
    text = packaged_rules_path().read_text()
    uncommented = "\n".join(re.sub(r'^# (?=\[|[A-Za-z_"-]+ *= )', "", line)
                            for line in text.splitlines())
    names = [r.name for r in compile_rules(uncommented).rules]
    assert names == ["Datto RMM Alert resolved", "Datto RMM Alerts", "Site from the body",
                     "Backup failures", "Drop auto-replies", "Everything else"]


def test_root_rules_example_is_the_packaged_one() -> None:
    root = Path(__file__).resolve().parents[2] / "rules.example.toml"
    assert root.read_text() == packaged_rules_path().read_text()


# --- evaluation ------------------------------------------------------------------------

CHAIN = """\
    [[rule]]
    name = "site"
    stop = false
    body = { regex = '(?m)^Site:\\s*(?P<site>.+)$' }

    [[rule]]
    name = "noise"
    action = "ignore"
    match = "any"
    subject = { contains = "newsletter" }
    [rule.headers]
    "Auto-Submitted" = { equals = "auto-replied" }

    [[rule]]
    name = "alerts"
    source = "datto"
    action = "raise"
    from = { equals = "rmm-alerts@example-msp.com" }
    subject = [{ regex = 'Alert\\{(?P<alert_uid>[0-9a-f-]{36})\\}' }, { contains = "test", negate = true }]
    body = { regex = '(?m)^Device:\\s*(?P<device>\\S+)' }
    [rule.ticket]
    type = "alert"
    priority = "{% if 'disk' in subject|lower %}High{% else %}Low{% endif %}"
    summary = "{{ device }} at {{ site }}: {{ subject }}"
"""


def test_fields_come_from_several_rules_with_their_origin() -> None:
    parsed = parse_message(message(f"Disk full - Alert{{{UID}}}"))
    result = evaluate(rules(CHAIN), parsed)
    assert result.decided_by is not None and result.decided_by.name == "alerts"
    assert result.trace["fields"] == {
        "site": {"value": "Main Office", "rule": "site", "field": "body"},
        "alert_uid": {"value": UID, "rule": "alerts", "field": "subject"},
        "device": {"value": "FS-01", "rule": "alerts", "field": "body"},
    }
    event = to_event(result, parsed, "fallback")
    assert event is not None
    assert (event.device, event.site, event.priority) == ("FS-01", "Main Office", "High")
    assert event.ticket.summary == f"FS-01 at Main Office: Disk full - Alert{{{UID}}}"
    assert event.ticket.type == "alert"


@pytest.mark.parametrize(("subject", "headers", "decided", "hits"), [
    ("Monthly newsletter", {}, "noise", [True, True]),
    ("Out of office", {"Auto_Submitted": "auto-replied"}, "noise", [True, True]),
    (f"test - Alert{{{UID}}}", {}, None, [True, False, False]),
])
def test_any_all_and_negate(subject: str, headers: dict[str, str], decided: str | None,
                            hits: list[bool]) -> None:
    result = evaluate(rules(CHAIN), parse_message(message(subject, **headers)))
    assert (result.decided_by.name if result.decided_by else None) == decided
    assert [r["hit"] for r in result.trace["rules"]] == hits


def test_wrong_sender_does_not_match_and_the_trace_says_why() -> None:
    parsed = parse_message(message(f"Alert{{{UID}}}", sender="someone@example.org"))
    result = evaluate(rules(CHAIN), parsed)
    assert result.decided_by is None
    alerts = result.trace["rules"][2]
    assert alerts["conditions"] == [
        {"condition": "from equals «rmm-alerts@example-msp.com»", "hit": False}]


def test_templates_treat_mail_content_as_data() -> None:
    ruleset = rules("""\
        [[rule]]
        name = "echo"
        source = "email"
        action = "raise"
        subject = { contains = "" }
        [rule.ticket]
        summary = "{{ subject }}"
        details = "{{ body }}"
        """)
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }} {% for x in range(9) %}x{% endfor %}"
    parsed = parse_message(message(hostile, body=hostile))
    ticket = render_ticket(ruleset.rules[0], parsed, {})
    assert ticket == {"summary": hostile, "details": hostile}


def test_sandbox_blocks_unsafe_template_code() -> None:
    ruleset = rules("""\
        [[rule]]
        name = "evil"
        source = "email"
        action = "raise"
        subject = { contains = "" }
        [rule.ticket]
        summary = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
        """)
    parsed = parse_message(message("hi"))
    with pytest.raises(Exception, match=r"unsafe|not safely|access"):
        render_ticket(ruleset.rules[0], parsed, {})


def test_catch_all_without_uid_keys_the_alert_by_the_message() -> None:
    ruleset = rules("""\
        [[rule]]
        name = "all"
        source = "email"
        action = "raise"
        from = { regex = '.' }
        """)
    parsed = parse_message(message("Printer jammed"))
    event = to_event(evaluate(ruleset, parsed), parsed, "mid:<1@x>")
    assert event is not None and (event.source, event.uid) == ("email", "mid:<1@x>")


# --- loading errors --------------------------------------------------------------------

def test_errors_name_rule_key_and_line() -> None:
    found = errors("""\
        [[rule]]
        name = "one"
        source = "datto"
        action = "raise"
        subject = { regex = 'Alert\\{(?P<uid' }

        [[rule]]
        name = "two"
        action = "explode"
        subjet = { contains = "x" }
        body = { contains = "x", equals = "y" }

        [[rule]]
        name = "three"
        source = "Datto RMM"
        action = "resolve"
        subject = { contains = 5 }
        [rule.ticket]
        summary = "{{ broken"
        colour = "red"
        """)
    assert found[0].startswith("rules.toml:5: rule 'one': subject.regex: invalid regular "
                               "expression")
    assert "rules.toml:9: rule 'two': action: must be raise, resolve or ignore" in found
    assert "rules.toml:10: rule 'two': subjet: unknown key" in found
    assert ("rules.toml:11: rule 'two': body: give exactly one of equals, contains, regex"
            in found)
    assert any(f.startswith("rules.toml:15: rule 'three': source: must be a lower-case")
               for f in found)
    assert "rules.toml:17: rule 'three': subject.contains: must be a string" in found
    assert any(f.startswith("rules.toml:19: rule 'three': ticket.summary: template error")
               for f in found)
    assert any(f.startswith("rules.toml:20: rule 'three': ticket.colour: unknown key")
               for f in found)


def test_nesting_deeper_than_the_parser_goes_is_an_error_not_a_crash() -> None:
    assert errors("[[rule]]\nname = 'x'\nsubject = " + "[" * 5000 + "]" * 5000 + "\n") == [
        "rules.toml: TOML syntax error: arrays or tables nested too deeply"]


def test_a_template_nested_too_deeply_is_an_error_not_a_crash() -> None:
    found = errors('[[rule]]\nname = "x"\naction = "raise"\nsource = "datto"\n'
                   'subject = { contains = "a" }\n[rule.ticket]\nsummary = "{{ '
                   + "(" * 3000 + "x" + ")" * 3000 + ' }}"\n')
    assert found == ["rules.toml:7: rule 'x': ticket.summary: template error: expressions "
                     "nested too deeply (template line 1)"]


def test_syntax_error_and_missing_pieces() -> None:
    assert errors("[[rule]\nname = 'x'\n")[0].startswith("rules.toml:1: TOML syntax error")
    found = errors("""\
        [[rule]]
        source = "datto"

        [[rule]]
        name = "raise without source"
        action = "raise"
        subject = { contains = "x" }

        [[rule]]
        name = "raise without source"
        action = "ignore"
        """)
    assert found[0] == "rules.toml:1: name: rule #1 needs a name"
    assert "rules.toml:6: rule 'raise without source': source: a raise rule needs a source" \
        in found[1] or any("needs a source" in f for f in found)
    assert any("another rule has this name" in f for f in found)
    assert any("needs at least one condition" in f for f in found)


def test_rules_without_action_go_on_and_conditions_run_in_file_order() -> None:
    ruleset = rules("""\
        [[rule]]
        name = "extract"
        body = { regex = '(?m)^Device:\\s*(?P<device>\\S+)' }
        subject = { regex = '(?P<device>FIRST)' }

        [[rule]]
        name = "raise"
        source = "datto"
        action = "raise"
        subject = { regex = 'Alert\\{(?P<alert_uid>[0-9a-f-]{36})\\}' }
        """)
    parsed = parse_message(message(f"FIRST - Alert{{{UID}}}"))
    result = evaluate(ruleset, parsed)
    assert result.decided_by is not None and result.decided_by.name == "raise"
    # body is written before subject in the rule, so its value wins.
    assert result.fields["device"].value == "FS-01"


def test_ticket_fields_on_a_rule_that_opens_no_ticket_are_an_error() -> None:
    assert any("ticket fields are used only by raise rules" in e for e in errors("""\
        [[rule]]
        name = "r"
        source = "datto"
        action = "resolve"
        subject = { contains = "x" }
        [rule.ticket]
        summary = "unused"
        """))


def test_a_failing_template_makes_the_delivery_unprocessable_not_a_crash() -> None:
    from daemon.core.events import Unprocessable

    ruleset = rules("""\
        [[rule]]
        name = "div"
        source = "email"
        action = "raise"
        subject = { contains = "" }
        [rule.ticket]
        summary = "{{ 1 / 0 }}"
        """)
    with pytest.raises(Unprocessable, match="ZeroDivisionError"):
        render_ticket(ruleset.rules[0], parse_message(message("x")), {})


def test_long_extracted_values_are_fitted_to_their_columns() -> None:
    ruleset = rules("""\
        [[rule]]
        name = "long"
        source = "email"
        action = "raise"
        body = { regex = '(?s)(?P<device>.*)' }
        subject = { regex = '(?P<alert_uid>.*)' }
        """)
    parsed = parse_message(message("u" * 300, body="d" * 400))
    event = to_event(evaluate(ruleset, parsed), parsed, "fallback")
    assert event is not None
    assert event.device is not None and len(event.device) == 255
    assert event.uid.startswith("sha256:") and len(event.uid) <= 200


def test_expire_after_goes_from_a_raise_rule_to_its_event() -> None:
    ruleset = rules("""\
        [[rule]]
        name = "stale disk"
        source = "datto"
        action = "raise"
        expire_after = "2d"
        subject = { regex = 'Alert\\{(?P<alert_uid>[-0-9a-f]{36})\\}' }
        """)
    assert ruleset.rules[0].expire_after_s == 2 * 86400
    parsed = parse_message(message(f"Disk full - Alert{{{UID}}}"))
    event = to_event(evaluate(ruleset, parsed), parsed, "fallback")
    assert event is not None and event.expire_after_s == 2 * 86400


def test_expire_after_errors_name_the_rule_and_line() -> None:
    assert errors("""\
        [[rule]]
        name = "r"
        source = "datto"
        action = "raise"
        subject = { contains = "x" }
        expire_after = "2 days"

        [[rule]]
        name = "q"
        source = "datto"
        action = "resolve"
        subject = { contains = "y" }
        expire_after = "30s"
        """) == [
        "rules.toml:6: rule 'r': expire_after: expected a duration such as \"90s\", \"15m\", "
        "\"1h\" or \"7d\", got '2 days'",
        "rules.toml:13: rule 'q': expire_after: is used only by raise rules",
        "rules.toml:13: rule 'q': expire_after: must be at least 1m",
    ]

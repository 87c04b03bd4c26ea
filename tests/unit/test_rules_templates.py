"""Ticket templates (daemon/rules/model.py `TicketTemplate`): text and plain `{{ name }}`
outputs are rendered without Jinja, to exactly what Jinja renders; anything else is Jinja's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import TemplateSyntaxError

from daemon.rules.load import (
    TemplateSyntax,
    _plain_parts,
    jinja_parts,
    template_environment,
    ticket_template,
)

ENV = template_environment()
CONTEXT: dict[str, Any] = {
    "subject": "Disk full - Alert{3f0c6a51}", "from": "rmm@example.com", "body": "a\r\nb\n",
    "to": ["a@b.c", "d@e.f"], "headers": {"x-priority": ["1"]}, "device": "PC-01",
    "none": "shadowed", "message_id": "",
}


@pytest.mark.parametrize(("source", "joined"), [
    ("alert", True),
    ("{{ subject }}", True),
    ("{{subject}}", True),
    ("{{ device }}: {{ subject }}", True),
    ("{{ body }}\r\n-- \n{{ from }}\n", True),
    ("{{- subject -}}  \n", True),
    ("{# a comment #}{{ subject }}", True),
    ("", True),
    ("{{ missing }}", True),  # undefined: Jinja renders it
    ("{{ to }}", True),  # a list: Jinja renders it
    ("{{ none }}", False),  # a constant, whatever the context holds
    ("{{ subject|upper }}", False),
    ("{{ headers['x-priority'][0] }}", False),
    ("{% if device %}{{ device }}{% endif %}", False),
    ("{{ subject ~ '!' }}", False),
])
def test_a_template_renders_as_jinja_does(source: str, joined: bool) -> None:
    template = ticket_template(source)
    assert (template.parts is not None) == joined
    assert template.render(CONTEXT) == ENV.from_string(source).render(CONTEXT)


PIECES = ["{{ subject }}", "{{body}}", "{{ device }}", "{{ missing }}", "{{ to }}", "{{ none }}",
          "{{- from -}}", "{#c#}", "text", " ", "\n", "\r\n", "\r", "\t", "{", "}", "-", "%",
          "{{ True }}", "{{ if }}", "{{ in }}", "{{\tdevice\n}}", "{{ sub ject }}", "{{ 1 }}",
          "{{", "}}", "{%", "%}", "{# #}"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=8).map("".join))
def test_any_template_renders_as_jinja_does(source: str) -> None:
    try:
        expected = ENV.from_string(source).render(CONTEXT)
    except TemplateSyntaxError as err:  # a syntax error: compiling it fails the same way
        with pytest.raises(TemplateSyntax) as caught:
            ticket_template(source)
        assert (caught.value.message, caught.value.lineno) == (err.message, err.lineno)
        return
    assert ticket_template(source).render(CONTEXT) == expected
    plain = _plain_parts(source)  # read without Jinja: the same parts Jinja's parse has
    assert plain is None or plain == jinja_parts(ENV.parse(source))


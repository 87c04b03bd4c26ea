"""Email parsing against the fixture corpus (tests/fixtures/mail/manifest.toml), and the
promise that nothing in a message can crash the parser."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.config.loading import packaged_rules_path
from daemon.core.events import Unprocessable
from daemon.mail.parse import MAX_PARSE_BYTES, dedupe_key, message_id_of, parse_message
from daemon.rules.engine import evaluate, to_event
from daemon.rules.load import load_rules

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "mail"
MANIFEST: list[dict[str, Any]] = tomllib.loads(
    (CORPUS / "manifest.toml").read_text())["message"]
RULES = load_rules(packaged_rules_path())


def test_the_corpus_is_large_and_every_file_is_listed() -> None:
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert len(files) >= 25
    assert files == {m["file"] for m in MANIFEST}


@pytest.mark.parametrize("case", MANIFEST, ids=[m["file"] for m in MANIFEST])
def test_corpus_message(case: dict[str, Any]) -> None:
    raw = (CORPUS / case["file"]).read_bytes()
    parsed = parse_message(raw)
    assert parsed.message_id == (case["message_id"] or None)
    assert message_id_of(raw) == (case["message_id"] or None)
    assert parsed.from_address == case["from_address"]
    assert parsed.original_subject == case["subject"]
    for snippet in case["body_contains"]:
        assert snippet in parsed.body, f"{snippet!r} missing from body"
    for snippet in case["body_excludes"]:
        assert snippet not in parsed.body, f"{snippet!r} must not be in the body"
    event = to_event(evaluate(RULES, parsed), parsed, dedupe_key(raw))
    if case["action"] == "none":
        assert event is None
    else:
        assert event is not None
        assert (event.action.value, event.uid) == (case["action"], case["alert_uid"].lower())


def test_html_only_mail_becomes_readable_text() -> None:
    parsed = parse_message((CORPUS / "html-only-style-script.eml").read_bytes())
    assert not re.search(r"<[a-zA-Z/!]", parsed.body), "tags must not survive"
    assert "{" not in parsed.body.split("Alert{")[0], "CSS must not survive"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash_the_parser(raw: bytes) -> None:
    try:
        parse_message(raw)
    except Unprocessable:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b"Subject: =?utf-8?B?", b"=?iso-8859-1?q?caf=E9?=", b"Content-Type: multipart/mixed;",
    b" boundary=\"b\"", b"--b\r\n", b"--b--\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Type: text/html; charset=x-nope\r\n", b"<p>hi</p><style>x{}</style>", b"\r\n",
    b"\xff\xfe\x80", b"From: =?utf-8?q?=C3=28?= <a@b>\r\n", b"QUJD=\r\n", b"\n\n",
]), max_size=40))
def test_mime_shaped_garbage_never_crashes_the_parser(parts: list[bytes]) -> None:
    try:
        parse_message(b"".join(parts))
    except Unprocessable:
        pass


def test_a_huge_html_body_is_cut_not_processed_for_minutes() -> None:
    html = "<html><body>" + "<p>filler text</p>" * 400_000 + "</body></html>"
    raw = ("From: a@example.com\r\nSubject: big\r\nContent-Type: text/html\r\n\r\n"
           + html).encode()
    parsed = parse_message(raw)
    assert len(parsed.body) <= 1_000_000
    assert f"only the first {MAX_PARSE_BYTES} bytes were parsed" in parsed.defects

"""Email parsing against input built to make it slow or crash: every step is linear, and the
stdlib parsers that are not see bounded input (daemon/mail/parse.py). Exact answers only:
the bounds hold by construction, so no timing is asserted."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.mail.parse import (
    MAX_HEADER_CHARS,
    MAX_HEADERS_CHARS,
    MAX_PARSE_BYTES,
    html_to_text,
    message_id_of,
    parse_message,
    strip_reply_prefixes,
)

MB = 1_000_000
# The prefix pattern as it was: quadratic on "RE" + spaces, right on everything short.
BACKTRACKING_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|rif|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def mail(*headers: bytes, body: bytes = b"body\r\n") -> bytes:
    return b"From: a@example.com\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@pytest.mark.parametrize(("subject", "stripped"), [
    ("RE" + " " * MB + "x", "RE" + " " * MB + "x"),  # no colon: not a prefix
    ("RE" + " " * MB + ": x", "x"),
    ("RE [12]" + " " * MB + "x", "RE [12]" + " " * MB + "x"),
    ("re:" * (MB // 3) + " Disk full", "Disk full"),
    ("AW: WG:  RE [2] : Fwd:Disk full", "Disk full"),
    ("Re:", ""),
    ("Reboot: done", "Reboot: done"),
])
def test_reply_prefixes_are_stripped_in_one_pass(subject: str, stripped: str) -> None:
    assert strip_reply_prefixes(subject) == stripped


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["re", "RE", "fw", "Fwd", "aw", "antw", " ", "\t", ":",
                                 "[3]", "[", "]", "7", "x"]), max_size=12))
def test_the_linear_pattern_strips_what_the_old_one_did(tokens: list[str]) -> None:
    subject = "".join(tokens)
    assert strip_reply_prefixes(subject) == BACKTRACKING_PREFIX.sub("", subject,
                                                                     count=1).strip()


def test_a_megabyte_subject_is_cut_to_the_header_cap() -> None:
    subject = b"RE" + b" " * MB + b"x"
    parsed = parse_message(mail(b"Subject: " + subject))
    assert (parsed.original_subject, parsed.subject) == ("RE", "RE")
    assert parsed.defects == (
        f"1 header field(s) cut to their first {MAX_HEADER_CHARS} characters",)


def test_a_long_subject_keeps_its_first_characters() -> None:
    subject = "Alert{x} " + "y" * (2 * MAX_HEADER_CHARS)
    parsed = parse_message(mail(b"Subject: " + subject.encode()))
    assert parsed.original_subject == subject[:MAX_HEADER_CHARS]


def test_header_fields_past_the_total_cap_are_ignored() -> None:
    filler = b"Received: from relay.example\r\n" * (2 * MAX_HEADERS_CHARS // 30)
    parsed = parse_message(mail(b"Subject: first", filler.rstrip(), b"Subject: late"))
    assert parsed.original_subject == "first"
    # Each field costs its name and raw value: From 4 + 13, Subject 7 + 5, Received 8 + 18.
    assert len(parsed.headers["received"]) == (MAX_HEADERS_CHARS - 17 - 12) // 26
    assert parsed.defects == (
        f"header fields past the first {MAX_HEADERS_CHARS} characters ignored",)


def test_many_repeated_header_fields_are_collected_in_linear_time() -> None:
    parsed = parse_message(mail(*[b"X-A: 1"] * 10_000))
    assert parsed.headers["x-a"] == ("1",) * 10_000


def test_deeply_nested_address_comments_do_not_crash() -> None:
    parsed = parse_message(mail(b"To: " + b"(" * 5_000 + b"a@example.com"))
    assert parsed.to == ()
    assert "unreadable address field ignored" in parsed.defects


def test_a_long_recipient_list_is_read_up_to_the_cap() -> None:
    to = b", ".join(b"user%d@example.com" % n for n in range(20_000))
    parsed = parse_message(mail(b"To: " + to))
    assert parsed.to[:2] == ("user0@example.com", "user1@example.com")
    assert len(parsed.to) == len(to[:MAX_HEADER_CHARS].split(b", ")) - 1  # last one cut
    assert "1 header field(s) cut to their first 8192 characters" in parsed.defects


def test_only_the_first_bytes_of_a_huge_message_are_parsed() -> None:
    raw = mail(b"Subject: big", b"Content-Type: multipart/mixed; boundary=b",
               body=b"--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
                    + b"--b\r\n\r\nx\r\n" * (MAX_PARSE_BYTES // 10))
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.body) == ("big", "first part")
    assert f"only the first {MAX_PARSE_BYTES} bytes were parsed" in parsed.defects


def test_message_id_is_read_from_a_bounded_head() -> None:
    assert message_id_of(b"X: y\r\n" * MB + b"Message-ID: <late@x>\r\n\r\n") is None
    assert message_id_of(b"Message-ID: <m@x>\r\n" + b"X: y\r\n" * MB) == "<m@x>"


def test_control_characters_are_no_part_of_a_message_id() -> None:
    """A NUL or an escape in a Message-ID: the key is stored, and found again, without it."""
    assert message_id_of(b"Message-ID: <a\x00b\x1b[31m@x\x7f>\r\n\r\nbody") == "<ab[31m@x>"


@pytest.mark.parametrize("unit", [
    "<!--", "<a ", "<a b='", '<a b="x" ', "</", "<!", "<?", "<![CDATA[", "</script", "<",
    "<a\t",
])
def test_unterminated_markup_is_read_as_text_in_one_pass(unit: str) -> None:
    markup = unit * 200_000  # the stdlib HTMLParser took minutes on each of these
    text = html_to_text(markup)
    assert text == ("" if unit == "<!--" else re.sub(r"[ \t]+", " ", markup).strip())


@pytest.mark.parametrize(("markup", "text"), [
    ("<p>a</p><p>b</p>", "a\n\nb"),
    ("a<br/>b", "a\n\nb"),
    ("<table><tr><td>x</td><td>y</td></tr></table>", "x y"),
    ("<head><title>T</title></head><body>x &amp; y&nbsp;z</body>", "x & y z"),
    ("<script>if (a<b) {}</script>x<style>p{}</style>", "x"),
    ("a < b <!-- note --> c", "a < b c"),
    ("<!DOCTYPE html><o:p>x</o:p>", "x"),
    ("<p>unclosed comment <!-- rest", "unclosed comment"),
])
def test_html_becomes_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


def test_a_hostile_html_mail_parses_to_its_text() -> None:
    raw = mail(b"Subject: x", b"Content-Type: text/html", body=b"<p>ok</p>" + b"<a " * MB)
    assert parse_message(raw).body == "ok\n" + ("<a " * MB).strip()[:999_997]

"""The cheap readers of daemon/mail/shapes.py against the stdlib parsers they stand in for:
`read_message` builds the message the compat32 feed parser builds, `simple_addresses` gives
the pairs of the modern header parser whenever it answers at all."""

from __future__ import annotations

import email
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.mail import parse
from daemon.mail.parse import _parsed_addresses, parse_message
from daemon.mail.shapes import read_message
from daemon.mail.shapes import simple_addresses as _simple_addresses

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def shape(message: Message) -> list[Any]:
    """Everything of a message alertd can read (not its preamble and epilogue)."""
    return [(part.get_content_type(), list(part.raw_items()), part.get_unixfrom(),
             [type(d).__name__ for d in part.defects],
             None if part.is_multipart() else part.get_payload())
            for part in message.walk()]


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_every_fixture_reads_as_the_feed_parser_reads_it(path: Path) -> None:
    raw = path.read_bytes()
    assert shape(read_message(raw)) == shape(email.message_from_bytes(raw))


@pytest.mark.parametrize("parts", [1, 2, 32, 33, 200])
def test_many_parts_read_as_the_feed_parser_reads_them(parts: int) -> None:
    raw = ("From: a@b.c\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" + "".join(
        f"--B\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n" for n in range(parts))
        + "--B--\r\n").encode()
    assert shape(read_message(raw)) == shape(email.message_from_bytes(raw))


EOLS = ["\r\n", "\n"]
TOP = ["From: a@b.c", "Subject: s", "MIME-Version: 1.0", "X-Note: a\r\n b",
       'Content-Type: multipart/alternative; boundary="B"', "Content-Type: multipart/mixed;"
       " boundary=B", 'Content-Type: multipart/digest; boundary="B"',
       "Content-Type: multipart/alternative", "Content-Type: text/plain; charset=utf-8",
       "Content-Type: message/rfc822", "Content-Transfer-Encoding: base64",
       "Content-Transfer-Encoding: 7bit", "not a header", "From nobody Mon Jan 1", ":x"]
PART = ["Content-Type: text/plain; charset=utf-8", "Content-Type: text/html",
        'Content-Type: multipart/alternative; boundary="C"', "Content-Type: message/rfc822",
        'Content-Type: image/png; name="x.png"', "Content-Transfer-Encoding: quoted-printable",
        "Content-Transfer-Encoding: base64", "Content-Disposition: attachment", "a line"]
BODY = ["--B", "--B--", "--B  ", "--B--\t", "--Bx", " --B", "--C", "--C--", "hello", "",
        "=C3=A9t=C3=A9", "aGVsbG8=", "x\ry", "<p>hi</p>"]


@st.composite
def mime(draw: st.DrawFn) -> bytes:
    """Messages around the shapes `read_message` reads itself, and the odd ones it must not."""
    eol = draw(st.sampled_from(EOLS))
    lines = draw(st.lists(st.sampled_from(TOP), max_size=5))
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(TOP[4:7])))
    lines.append("")
    lines += draw(st.lists(st.sampled_from(BODY), max_size=3))  # preamble
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.sampled_from(["--B", "--B ", "--B\t"])))
        lines += draw(st.lists(st.sampled_from(PART), max_size=3))
        if draw(st.booleans()):
            lines.append("")
        lines += draw(st.lists(st.sampled_from(BODY), max_size=4))
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["--B--", "--B-- ", "--B--x"])))
        lines += draw(st.lists(st.sampled_from(BODY), max_size=2))  # epilogue
    text = eol.join(lines) + draw(st.sampled_from(["", eol]))
    return text.encode("utf-8")


@settings(max_examples=800, deadline=None)
@given(mime())
def test_any_mime_shape_reads_as_the_feed_parser_reads_it(raw: bytes) -> None:
    assert shape(read_message(raw)) == shape(email.message_from_bytes(raw))


@settings(max_examples=300, deadline=None)
@given(mime())
def test_a_message_parses_to_the_same_fields_either_way(raw: bytes) -> None:
    try:
        cheap: Any = parse_message(raw)
    except Exception as err:
        cheap = repr(err)
    original = parse.read_message
    parse.read_message = email.message_from_bytes  # type: ignore[assignment]
    try:
        full: Any = parse_message(raw)
    except Exception as err:
        full = repr(err)
    finally:
        parse.read_message = original
    assert cheap == full

# Shapes the fast path reads, and what the modern parser makes of them.
READ = [
    ("rmm@example.com", [("", "rmm@example.com")]),
    ("Datto RMM <rmm@example.com>", [("Datto RMM", "rmm@example.com")]),
    ("Datto \t  RMM<rmm@example.com>", [("Datto RMM", "rmm@example.com")]),
    ('"Smith, John" <j.smith+alerts@example.co.uk>',
     [("Smith, John", "j.smith+alerts@example.co.uk")]),
    ('"  spaced  " <a@b>', [("  spaced  ", "a@b")]),
    ('"" <a@b.c>', [("", "a@b.c")]),
    ("<a@b.c>", [("", "a@b.c")]),
    ("O'Brien <o'brien@example.com>", [("O'Brien", "o'brien@example.com")]),
    ("  a@b.c  ,  B <b@c.d> ,\"C, D\" <c@d.e>",
     [("", "a@b.c"), ("B", "b@c.d"), ("C, D", "c@d.e")]),
    ("MSP Alerts <ALERTS@Example-MSP.com>", [("MSP Alerts", "ALERTS@Example-MSP.com")]),
]
# Shapes it leaves to the parser: encoded words, comments, obsolete syntax, groups, quoted
# local parts, dots in a phrase, domain literals, non-ASCII, empty list elements.
LEFT = ["=?utf-8?q?M=C3=BCller?= <m@example.com>", "a@b.c (comment)", "John Q. Public <j@x.y>",
        "undisclosed-recipients:;", '"a b"@c.d', "a@[192.0.2.1]", "Müller <m@example.com>",
        "a@b.c,", ",a@b.c", "a@b.c,,d@e.f", "a..b@c.d", "a@b..c", "a@b.c.", "a@b.c <d@e.f>",
        '"x"y <a@b.c>', "A <a@b.c>B", "a@b.c d@e.f", "", "just text", "<a@b.c"]


@pytest.mark.parametrize(("value", "pairs"), READ)
def test_the_fast_path_reads_the_common_shapes(value: str, pairs: list[tuple[str, str]]
                                               ) -> None:
    assert _simple_addresses(value) == pairs
    assert _parsed_addresses(value) == pairs


@pytest.mark.parametrize("value", LEFT)
def test_the_fast_path_leaves_the_rest_to_the_parser(value: str) -> None:
    assert _simple_addresses(value) is None


PIECES = ["a", "Bc", "x.y", "@", ".", "<", ">", '"', ",", " ", "  ", "\t", "(", ")", "\\",
          "=?", "?=", ":", ";", "-", "'", "é", "[1.2.3.4]", "+t", "_", "!", "{x}", "ex.com"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join))
def test_whatever_the_fast_path_reads_the_parser_reads_the_same(value: str) -> None:
    pairs = _simple_addresses(value)
    if pairs is not None:
        assert pairs == _parsed_addresses(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(READ), min_size=1, max_size=4))
def test_lists_of_common_shapes_are_read_like_the_parser(
        picked: list[tuple[str, list[tuple[str, str]]]]) -> None:
    value = ", ".join(text for text, _ in picked)
    assert _simple_addresses(value) == _parsed_addresses(value)


def test_a_message_reads_its_addresses_lower_cased() -> None:
    parsed = parse_message(b"From: Datto RMM <RMM@Example.com>\r\n"
                           b"To: a@b.c, \"Ops, Night\" <Ops@B.C>\r\nCc: x (y) <x@y.z>\r\n"
                           b"Subject: s\r\n\r\nbody\r\n")
    assert (parsed.from_name, parsed.from_address) == ("Datto RMM", "rmm@example.com")
    assert parsed.to == ("a@b.c", "ops@b.c", "x@y.z")

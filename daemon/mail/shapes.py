"""The shapes alert mail nearly always has, read cheaply (pure): a message's MIME structure and
its address fields, each to exactly what the stdlib parsers give, which read everything else.

The stdlib parsers are general and slow: the `compat32` feed parser reads a message line by
line, tests each line against the boundaries open and compiles a regex for each boundary
(unique to its message): ~0.3 ms of a 3 KB multipart alert; the modern header parser
tokenises an address field character by character (~0.2 ms a field). Read here, the same
costs ~0.1 ms and ~5 us. tests/unit/test_parse_shapes.py checks each reader against its
parser.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from email.message import Message
from email.parser import Parser
from email.policy import compat32

_PARSER = Parser(policy=compat32)  # a new feed parser per call: thread-safe
_LONE_CR = re.compile(r"\r(?!\n)")
_BLANK_LINE = re.compile(r"\n\r?\n")
_EOL_AT_END = re.compile(r"(?:\r\n|\r|\n)\Z")  # as email.feedparser.NLCRE_eol
# Alert mail has two or three parts. Thousands of tiny ones (hostile mail) go faster through
# the feed parser, which does not start a parser per part.
MAX_PLAIN_PARTS = 32


def read_message(raw: bytes) -> Message:
    """The message `email.message_from_bytes(raw)` builds (compat32): the same headers,
    defects, parts and payloads (not the preamble and epilogue, which alertd never reads).

    A message that is not multipart (nor message/*) is parsed headers-only: the feed parser
    reads it the same way, the rest of the input becoming the payload. A plain multipart
    (`_plain_parts`) is that, split at its delimiter lines, each part read the same way.
    Anything else: the full parse.
    """
    # As BytesParser does: bytes that are not ASCII stay as surrogate escapes.
    message = _headers_then_payload(raw.decode("ascii", "surrogateescape"))
    maintype = message.get_content_maintype()
    if maintype not in ("multipart", "message"):
        return message
    parts = _plain_parts(message) if maintype == "multipart" else None
    if parts is None:
        return email.message_from_bytes(raw)
    payload: list[Message | str] = [*parts]  # what set_payload takes: parts, or text
    message.set_payload(payload)
    return message


def _plain_parts(message: Message) -> list[Message] | None:
    """The parts of a headers-only parsed multipart, or None unless the feed parser would
    find exactly these and no defect in its structure: a boundary, a 7bit/8bit/binary
    transfer encoding (RFC 2045 6.4), no bare CR ending a line, a first delimiter line that
    opens a part, one delimiter line between parts, a closing delimiter, at most
    `MAX_PLAIN_PARTS` parts, neither multipart nor message/* (no nesting). Not
    multipart/digest, whose parts default to message/rfc822."""
    boundary = message.get_boundary()
    body = message.get_payload()
    if (boundary is None or not isinstance(body, str) or message.get_content_subtype() == "digest"
            or str(message.get("content-transfer-encoding", "8bit")).lower()
            not in ("7bit", "8bit", "binary")
            or _LONE_CR.search(body)):
        return None
    parts: list[Message] = []
    start: int | None = None  # where the text of the part being read begins
    for at, end, closes in _delimiter_lines(body, "--" + boundary):
        if start is None and closes:
            return None  # no opening delimiter
        if start is not None:
            if at == start:
                return None  # delimiter lines in a row: the feed parser skips the extra ones
            part = _plain_part(body[start:at]) if len(parts) < MAX_PLAIN_PARTS else None
            if part is None:
                return None
            parts.append(part)
        if closes:
            return parts  # what follows is the epilogue
        start = end
    return None  # no closing delimiter


def _delimiter_lines(body: str, delimiter: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, closes) of each line the feed parser takes for a delimiter line (RFC 2046
    5.1.1): the delimiter, "--" when it closes, blanks, the line end. Its regex, compiled
    for each boundary (they are unique: a compile per message), is this `find`. Lines start
    after a LF: the body has no bare CR."""
    at = body.find(delimiter)
    while at >= 0:
        end = at + len(delimiter)
        if at == 0 or body[at - 1] == "\n":
            closes = body.startswith("--", end)
            end += 2 if closes else 0
            while body.startswith((" ", "\t"), end):
                end += 1
            if body.startswith("\r\n", end):
                yield at, end + 2, closes
            elif body.startswith("\n", end) or end == len(body):
                yield at, end + (end < len(body)), closes
        at = body.find(delimiter, at + 1)


def _headers_then_payload(text: str) -> Message:
    """`Parser(policy=compat32).parsestr(text, headersonly=True)`: headers, then the rest as
    the payload. The feed parser reads the rest line by line only to join the lines again;
    when its header loop ends at the first blank line (the usual case: no line before it is
    anything but a header field), the rest is sliced off instead."""
    end = 1 if text.startswith("\n") else 2 if text.startswith("\r\n") else None
    if end is None and (blank := _BLANK_LINE.search(text)):
        end = blank.end()
    if end is not None and not _LONE_CR.search(text, 0, end):
        message = _PARSER.parsestr(text[:end], headersonly=True)
        if message.get_payload() == "":  # its header loop ended at that blank line
            message.set_payload(text[end:])
            return message
    return _PARSER.parsestr(text, headersonly=True)


def _plain_part(text: str) -> Message | None:
    """One part's text parsed as the feed parser parses a part: headers, then the payload
    without its last line end (RFC 2046 5.1.1: it belongs to the delimiter)."""
    part = _headers_then_payload(text)
    if part.get_content_maintype() in ("multipart", "message"):
        return None
    payload = part.get_payload()
    if isinstance(payload, str) and (end := _EOL_AT_END.search(payload)):
        part.set_payload(payload[:end.start()])
    return part


# The address fields nearly all alert mail has: `addr`, `Display Name <addr>`,
# `"Quoted, Name" <addr>`, comma-separated, ASCII only. Anything else (comments, encoded
# words, groups, obsolete syntax, empty list elements) is the modern parser's.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
DOT_ATOM = rf"{_ATEXT}++(?:\.{_ATEXT}++)*+"  # RFC 5322 3.2.3 (also the SMTP listener's)
_ADDR_SPEC = rf"{DOT_ATOM}@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*+"
_SIMPLE_MAILBOX = re.compile(rf"""
    [ \t]*+
    (?:
        (?P<bare>{_ADDR_SPEC})
      | (?: (?P<phrase>{_ATEXT}++(?:[ \t]++{_ATEXT}++)*+)
          | "(?P<quoted>[ !\#-\[\]-~]*+)" )?
        [ \t]*+ <(?P<angle>{_ADDR_SPEC})>
    )
    [ \t]*+ (?P<comma>,)?""", re.VERBOSE)


def simple_addresses(value: str) -> list[tuple[str, str]] | None:
    """(display name, addr-spec) pairs of an unfolded address field in the common shapes
    above, exactly as the modern header parser gives them; None for anything else."""
    if not value.isascii() or "=?" in value:
        return None
    pairs = []
    pos, end = 0, len(value)
    while True:
        match = _SIMPLE_MAILBOX.match(value, pos)
        if match is None:
            return None
        if match["bare"] is not None:
            pairs.append(("", match["bare"]))
        else:  # the parser joins the words of a phrase with one space, keeps quoted text
            name = match["quoted"] if match["quoted"] is not None else " ".join(
                (match["phrase"] or "").split())
            pairs.append((name, match["angle"]))
        pos = match.end()
        if match["comma"] is None:
            return pairs if pos == end else None
        if pos == end:  # "a@b," : the parser's call (an obsolete empty element)
            return None

"""Email parsing (pure): raw RFC 5322 bytes -> the fields rules match on.

Built on the stdlib parser with the `compat32` policy, which is several times faster than
`policy.default` on alert-sized mail (../shared/perf-notes.md), decoding by hand what it leaves
encoded: RFC 2047 words in headers, quoted-printable/base64 bodies, charsets. The shapes nearly
all alert mail has (a plain multipart, simple address fields) are read by daemon/mail/shapes.py,
to the same result at a fraction of the cost. Anything odd in a message becomes a note in
`defects`, not an exception; only a message with nothing usable raises `Unprocessable`.
"""

from __future__ import annotations

import codecs
import email
import email.utils
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.headerregistry import HeaderRegistry
from email.message import Message
from html import unescape

from daemon.core.canonical import sha256_hex
from daemon.core.events import Unprocessable
from daemon.mail.shapes import read_message, simple_addresses

# Reply/forward prefixes in English and the common European Outlook locales. Every
# quantifier is possessive: the token after each one cannot start with what it consumed, so
# giving characters back could never help, and a failed match costs one pass, not a
# backtrack over every split of a whitespace run ("RE" + 60,000 spaces took seconds).
_PREFIX = re.compile(r"\s*+(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|rif|antw)\s*+(?:\[\d++\]\s*+)?:\s*+)++",
                     re.IGNORECASE)
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)",
                         re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# Folding whitespace and control characters (a NUL cannot be stored in PostgreSQL's text or
# carried by SQLite's JSON lookups of a batch's keys): never part of a Message-ID's key.
_SPACES_AND_CONTROLS = re.compile(rb"[\s\x00-\x1f\x7f]+")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # a raw 8-bit byte, as `surrogateescape` keeps it

# Bounds on the work one message can cost. The stdlib header and address parsers are not
# linear on every input (nested comments recurse, long address lists cost seconds), so their
# input is cut; the cuts are noted in `defects`. Cutting, not refusing: the alert id sits near
# the start of a subject, and a refused alert is lost (SMTP has limited the size already).
MAX_HEADER_CHARS = 8_192  # one field's value; RFC 5322 2.1.1 wants lines under 1000
MAX_HEADERS_CHARS = 131_072  # all fields together; fields past it are ignored
# The stdlib parser is linear but slow on structure (about 1.7 s per MB of tiny MIME parts),
# and the objects it builds lengthen every full garbage collection while it runs (a pause of
# the whole process: 90 ms at 4 MB of parts). It reads the first 1 MiB only. Headers and text
# parts come first in real mail; what is cut is attachments, which rules never read.
MAX_PARSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str | None
    from_address: str
    from_name: str
    to: tuple[str, ...]
    subject: str  # decoded, unfolded, reply/forward prefixes removed
    original_subject: str  # decoded, unfolded, as written
    body: str  # text/plain preferred; HTML converted to text when it is the only text
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lower-case names
    defects: tuple[str, ...] = ()


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID from the header block, without parsing the whole message (SMTP path).
    Reads at most the first `MAX_HEADERS_CHARS` bytes, as `parse_message` does."""
    end = _HEADER_END.search(raw, 0, MAX_HEADERS_CHARS)  # no copies: this runs on the loop
    match = _MESSAGE_ID.search(raw, 0, end.start() if end else MAX_HEADERS_CHARS)
    if not match:
        return None
    value = _SPACES_AND_CONTROLS.sub(b"", match.group(1)).decode("ascii", "replace")
    return value[:250] or None


def dedupe_key(raw: bytes) -> str:
    """One key per message: its Message-ID, or a hash of its bytes when it has none."""
    message_id = message_id_of(raw)
    return f"mid:{message_id}" if message_id else f"sha256:{sha256_hex(raw)}"


def strip_reply_prefixes(subject: str) -> str:
    """`subject` without leading reply/forward prefixes ("RE: AW: [2]FW:"); linear time."""
    match = _PREFIX.match(subject)
    return (subject[match.end():] if match else subject).strip()


def _fix_8bit(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes: most senders mean UTF-8."""
    if value.isascii() or not _ESCAPED_BYTE.search(value):  # isascii: the common case, in C
        return value
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_header_value(value: str) -> str:
    """RFC 2047 words decoded, folding removed, 8-bit bytes read as UTF-8 (else Latin-1)."""
    value = _unfold(_fix_8bit(value))
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
        # make_header restores the spaces decode_header drops around encoded words.
        return _unfold(str(make_header(
            [(chunk, _known_charset(charset)) for chunk, charset in parts])))
    except Exception:  # malformed encoded words or charsets: keep the text as written
        return value


def _known_charset(charset: str | None) -> str | None:
    if charset is None:
        return None
    try:
        codecs.lookup(charset)
        return charset
    except LookupError:
        return "utf-8"


def _unfold(value: str) -> str:
    if "\n" not in value and "\r" not in value:  # most fields: skip the regex
        return value.strip()
    return re.sub(r"\r?\n[ \t]+", " ", value).replace("\r", "").replace("\n", " ").strip()


def _decode_bytes(data: bytes, charset: str | None) -> str:
    name = (charset or "utf-8").strip().lower()
    if name in ("unknown-8bit", "x-unknown", ""):
        name = "utf-8"
    try:
        codecs.lookup(name)
    except LookupError:
        name = "utf-8"
    try:
        return data.decode(name)
    except UnicodeDecodeError:
        if name == "utf-8":
            return data.decode("latin-1")  # every byte means something in Latin-1
        return data.decode(name, "replace")


# Rules look at the first part of a body; converting or matching megabytes gains nothing and
# would let one huge mail occupy the daemon for minutes.
MAX_BODY_CHARS = 1_000_000

_BLOCK_TAGS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                         "table", "ul", "ol", "pre", "blockquote", "hr", "title"})
_TAG_NAME = re.compile(r"(/?)([a-zA-Z][a-zA-Z0-9:-]*+)")
# Raw-text elements (HTML 5 13.1.2.1): their content runs to the matching end tag.
_RAW_TEXT_END = {"script": re.compile(r"</script", re.IGNORECASE),
                 "style": re.compile(r"</style", re.IGNORECASE)}


def html_to_text(markup: str) -> str:
    """HTML -> readable text: block elements become line breaks; script, style and head are
    dropped; character references are decoded.

    Linear time by construction: each search starts where the previous one ended, and a search
    that finds nothing ends the scan. (The stdlib `HTMLParser` rescans to the end of its input
    at every unterminated `<a` or `<!--`: minutes for a few hundred kB of hostile mail.) A tag
    ends at its first `>`, even inside a quoted attribute value: at worst a few characters of
    an attribute show up as text.
    """
    markup = markup[: 4 * MAX_BODY_CHARS]  # markup is mostly tags: allow more input than output
    parts: list[str] = []
    in_head = 0
    pos, end = 0, len(markup)
    while pos < end:
        lt = markup.find("<", pos)
        lt = end if lt < 0 else lt
        if not in_head:
            parts.append(unescape(markup[pos:lt]))
        if lt == end:
            break
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 4)
            pos = end if close < 0 else close + 3  # unclosed: the rest is comment, as browsers do
            continue
        tag = _TAG_NAME.match(markup, lt + 1)
        if tag is None and markup[lt + 1:lt + 2] not in ("!", "?"):
            parts.append("" if in_head else "<")  # "a < b": text
            pos = lt + 1
            continue
        gt = markup.find(">", lt + 1)
        if gt < 0:  # no tag can end after this: the rest is text
            parts.append("" if in_head else unescape(markup[lt:]))
            break
        pos = gt + 1
        if tag is None:  # <!DOCTYPE ...>, <![CDATA[...]]>, <?xml ...?>
            continue
        closing, name = tag.group(1) == "/", tag.group(2).lower()
        if name in _RAW_TEXT_END and not closing:
            found = _RAW_TEXT_END[name].search(markup, pos)
            gt = markup.find(">", found.end()) if found else -1
            pos = end if gt < 0 else gt + 1
        elif name == "head":
            in_head = max(0, in_head + (-1 if closing else 1))
        elif name in _BLOCK_TAGS:  # "<br/>" opens and closes: two breaks, as HTMLParser gave
            parts.append("\n\n" if markup[gt - 1] == "/" and not closing else "\n")
        elif name == "td" and not closing:
            parts.append(" ")
    text = "".join(parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _is_attachment(part: Message) -> bool:
    disposition_field = part.get("Content-Disposition")
    disposition = (disposition_field or "").split(";")[0].strip().lower()
    if disposition in ("attachment", "inline"):
        return disposition == "attachment"
    # get_param and get_filename parse every parameter of both fields, each call: not needed
    # when neither field holds "name" ("filename", "name*0*" included). (A field with 8-bit
    # bytes comes back as a Header object: the full check, as before.)
    type_field = part.get("Content-Type")
    if all(field is None or (isinstance(field, str) and "name" not in field.lower())
           for field in (type_field, disposition_field)):
        return False
    return bool(part.get_param("name") or part.get_filename())


def _part_text(part: Message, defects: list[str]) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception as err:
        defects.append(f"undecodable body part: {type(err).__name__}")
        return ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset()
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            defects.append(f"unknown charset {charset!r}; read as UTF-8")
    return _decode_bytes(payload, charset)


def _body(message: Message, defects: list[str]) -> str:
    plain: str | None = None
    html: str | None = None
    for part in message.walk():
        if part.is_multipart() or _is_attachment(part):
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = _part_text(part, defects)
        elif kind == "text/html" and html is None:
            html = _part_text(part, defects)
    if plain is not None and plain.strip():
        text = plain.replace("\r\n", "\n").strip()
    elif html is not None:
        text = html_to_text(html)
    else:
        text = (plain or "").strip()
    if len(text) > MAX_BODY_CHARS:
        defects.append(f"body cut to its first {MAX_BODY_CHARS} characters")
        text = text[:MAX_BODY_CHARS]
    return text


_ADDRESS_HEADERS = HeaderRegistry()


def _parsed_addresses(value: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs by the modern header parser, which keeps an encoded
    display name with a comma in one piece. Raises on what it rejects."""
    header = _ADDRESS_HEADERS("to", value)
    return [(a.display_name, a.addr_spec) for a in header.addresses]  # type: ignore[attr-defined]


def _read_addresses(value: str) -> list[tuple[str, str]] | None:
    """A field the common shapes do not cover: by the modern parser, else by the lenient
    split; None when neither can read it."""
    try:
        return _parsed_addresses(value)
    except Exception:  # a header the parser rejects: fall back to the lenient split
        try:
            return email.utils.getaddresses([value])
        except Exception:  # e.g. RecursionError on deeply nested comments
            return None


def _addresses(values: list[str], defects: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-case addr-spec) pairs: the common shapes by `simple_addresses`,
    the rest by the modern header parser, which costs seconds on long lists: it reads
    `MAX_HEADER_CHARS` of them in all."""
    found = []
    budget = MAX_HEADER_CHARS
    for value in values:
        if budget <= 0:
            defects.append(f"address fields past their first {MAX_HEADER_CHARS} characters "
                           "ignored")
            break
        value = _unfold(_fix_8bit(value[:budget]))
        budget -= len(value)
        pairs = simple_addresses(value)
        if pairs is None:
            pairs = _read_addresses(value)
        if pairs is None:
            defects.append("unreadable address field ignored")
            continue
        found += [(name, addr.lower()) for name, addr in pairs if addr and "@" in addr]
    return found


def _header_fields(message: Message, defects: list[str]) -> list[tuple[str, str]]:
    """The raw (name, value) fields, each value cut to `MAX_HEADER_CHARS`, those past
    `MAX_HEADERS_CHARS` in all left out; raw, as compat32 would mangle 8-bit bytes."""
    fields: list[tuple[str, str]] = []
    budget, cut = MAX_HEADERS_CHARS, 0
    for name, value in message.raw_items():
        value = str(value)
        if len(value) > MAX_HEADER_CHARS:
            cut += 1
            value = value[:MAX_HEADER_CHARS]
        budget -= len(name) + len(value)
        if budget < 0:
            defects.append(f"header fields past the first {MAX_HEADERS_CHARS} characters "
                           "ignored")
            break
        fields.append((name, value))
    if cut:
        defects.append(f"{cut} header field(s) cut to their first {MAX_HEADER_CHARS} "
                       "characters")
    return fields


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one message. Raises `Unprocessable` only when nothing usable is in it.

    The work is bounded whatever the input: every step is linear in what it reads; the
    stdlib parser reads at most `MAX_PARSE_BYTES`, the header decoders `MAX_HEADERS_CHARS`
    (`MAX_HEADER_CHARS` a field), the address parser `MAX_HEADER_CHARS`, the body converter
    `4 * MAX_BODY_CHARS`. Each cut is noted in `defects`.
    """
    if not raw.strip():
        raise Unprocessable("empty message")
    try:
        message = read_message(raw[:MAX_PARSE_BYTES])
    except Exception as err:  # the stdlib parser is lenient; guard against the rest
        raise Unprocessable(f"unparseable message: {type(err).__name__}: {err}") from err
    defects = list(dict.fromkeys(type(d).__name__ for d in message.defects))
    if len(raw) > MAX_PARSE_BYTES:
        defects.append(f"only the first {MAX_PARSE_BYTES} bytes were parsed")
    raw_headers = _header_fields(message, defects)
    decoded: dict[str, list[str]] = {}
    for name, value in raw_headers:
        decoded.setdefault(name.strip().lower(), []).append(decode_header_value(value))
    headers = {key: tuple(values) for key, values in decoded.items()}
    if not headers:
        raise Unprocessable("no headers: this is not an email message")
    subjects = headers.get("subject", ())
    if len(subjects) > 1:
        defects.append("several Subject headers; the first is used")
    original_subject = subjects[0] if subjects else ""

    def values_of(*names: str) -> list[str]:
        return [v for k, v in raw_headers if k.strip().lower() in names]

    senders = _addresses(values_of("from"), defects)
    from_name, from_address = senders[0] if senders else ("", "")
    recipients = _addresses(values_of("to", "cc"), defects)
    try:
        body = _body(message, defects)
    except Exception as err:  # a MIME structure the walker chokes on: keep the headers
        defects.append(f"body unreadable: {type(err).__name__}")
        body = ""
    message_ids = headers.get("message-id", ())
    return ParsedMessage(
        message_id=message_ids[0].strip() if message_ids else None,
        from_address=from_address,
        from_name=from_name,
        to=tuple(addr for _, addr in recipients),
        subject=strip_reply_prefixes(original_subject),
        original_subject=original_subject,
        body=body,
        headers=headers,
        defects=tuple(defects),
    )

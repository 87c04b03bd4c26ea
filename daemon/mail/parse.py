"""Email parsing (pure): raw RFC 5322 bytes -> the fields rules match on.

Built on the stdlib parser with the `compat32` policy, which is several times faster than
`policy.default` on alert-sized mail (../shared/perf-notes.md), decoding by hand what it leaves
encoded: RFC 2047 words in headers, quoted-printable/base64 bodies, charsets. Anything odd in a
message becomes a note in `defects`, not an exception; only a message with nothing usable
raises `Unprocessable`.
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
from html.parser import HTMLParser

from daemon.core.canonical import sha256_hex
from daemon.core.events import Unprocessable

# Reply/forward prefixes in English and the common European Outlook locales.
_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|rif|antw)\s*(?:\[\d+\])?\s*:\s*)+",
                     re.IGNORECASE)
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)",
                         re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


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
    """The Message-ID from the header block, without parsing the whole message (SMTP path)."""
    head = _HEADER_END.split(raw, maxsplit=1)[0]
    match = _MESSAGE_ID.search(head)
    if not match:
        return None
    value = re.sub(rb"\s+", b"", match.group(1)).decode("ascii", "replace")
    return value[:250] or None


def dedupe_key(raw: bytes) -> str:
    """One key per message: its Message-ID, or a hash of its bytes when it has none."""
    message_id = message_id_of(raw)
    return f"mid:{message_id}" if message_id else f"sha256:{sha256_hex(raw)}"


def strip_reply_prefixes(subject: str) -> str:
    return _PREFIX.sub("", subject, count=1).strip()


def _fix_8bit(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes: most senders mean UTF-8."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
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


class _HtmlText(HTMLParser):
    """HTML -> readable text: block elements become line breaks; script/style are dropped."""

    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                         "table", "ul", "ol", "pre", "blockquote", "hr", "title"})
    _SKIP = frozenset({"script", "style", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag == "td":
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


# Rules look at the first part of a body; converting or matching megabytes gains nothing and
# would let one huge mail occupy the daemon for minutes.
MAX_BODY_CHARS = 1_000_000


def html_to_text(html: str) -> str:
    html = html[: 4 * MAX_BODY_CHARS]  # markup is mostly tags: allow more input than output
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; this is for the truly broken
        return re.sub(r"<[^>]*>", " ", html)
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _is_attachment(part: Message) -> bool:
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or (
        disposition != "inline" and bool(part.get_param("name") or part.get_filename()))


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


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-case addr-spec) pairs. The modern header parser is used for
    these few headers only: it keeps an encoded display name with a comma in one piece."""
    found = []
    for value in values:
        try:
            header = _ADDRESS_HEADERS("to", _unfold(_fix_8bit(value)))
            pairs = [(a.display_name, a.addr_spec) for a in header.addresses]  # type: ignore[attr-defined]
        except Exception:  # a header the parser rejects: fall back to the lenient split
            pairs = email.utils.getaddresses([_unfold(_fix_8bit(value))])
        found += [(name, addr.lower()) for name, addr in pairs if addr and "@" in addr]
    return found


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one message. Raises `Unprocessable` only when nothing usable is in it."""
    if not raw.strip():
        raise Unprocessable("empty message")
    try:
        message = email.message_from_bytes(raw)
    except Exception as err:  # the stdlib parser is lenient; guard against the rest
        raise Unprocessable(f"unparseable message: {type(err).__name__}: {err}") from err
    defects = [type(d).__name__ for d in message.defects]
    headers: dict[str, tuple[str, ...]] = {}
    raw_headers = list(message.raw_items())  # raw: compat32 would mangle 8-bit bytes
    for name, value in raw_headers:
        key = name.strip().lower()
        headers[key] = (*headers.get(key, ()), decode_header_value(str(value)))
    if not headers:
        raise Unprocessable("no headers: this is not an email message")
    subjects = headers.get("subject", ())
    if len(subjects) > 1:
        defects.append("several Subject headers; the first is used")
    original_subject = subjects[0] if subjects else ""

    def values_of(*names: str) -> list[str]:
        return [str(v) for k, v in raw_headers if k.strip().lower() in names]

    senders = _addresses(values_of("from"))
    from_name, from_address = senders[0] if senders else ("", "")
    recipients = _addresses(values_of("to", "cc"))
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

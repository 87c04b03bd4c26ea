"""SMTP intake: an aiosmtpd server in alertd's own event loop; 250 only after the commit.

alertd is a sink, never a relay: it accepts mail for the configured recipients (any when the
list is empty) and stores each message raw as a delivery before answering. A storage failure
answers 451 so the sending server keeps the message and retries; a retry of a message already
stored (same Message-ID, or same bytes without one) is answered 250 and stored once.

Hostile clients are bounded: an address holding a control character is refused 553 (it can
only be an attack on whatever logs or stores it), open sessions are capped in all and per
client address (421 over a cap), and an idle session is closed after `[smtp] timeout_s`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import ssl
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from daemon.config.base import LOOPBACK_HOSTS
from daemon.config.mail_sections import SmtpConfig
from daemon.core.events import Channel
from daemon.intake.inbound import Inbound
from daemon.intake.pipeline import Pipeline
from daemon.log_summary import LogSummary
from daemon.mail.parse import dedupe_key
from daemon.mail.shapes import DOT_ATOM
from daemon.metrics import ChannelHealth, Metrics

log = logging.getLogger(__name__)

# RFC 5321 4.1.1.4: a line holding only "." ends DATA; the CRLF before it ends the last line.
_END_OF_DATA = b"\r\n.\r\n"
# A reverse or forward path as nearly every sender writes it: <dot-atom@dot-atom>, ASCII.
_PLAIN_PATH = re.compile(rf"<({DOT_ATOM}@{DOT_ATOM})>")
# Unicode categories Cc (C0, DEL, C1) and Cs (surrogates: undecodable bytes), exactly.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Below this size a message's dedupe key (Message-ID, else SHA-256) takes under ~60 µs: less
# than handing it to a thread (~170 µs on a busy 2-core machine), so it is made on the loop.
_KEY_ON_LOOP_BYTES = 64 * 1024


class SmtpHandler:
    """aiosmtpd handler: checks recipients, submits DATA (committed), then answers; the
    delivery worker processes it afterwards. A storage failure is recorded in `health`
    (channel `smtp`)."""

    def __init__(self, pipeline: Pipeline, config: SmtpConfig, metrics: Metrics,
                 health: ChannelHealth | None = None):
        self._pipeline = pipeline
        self._metrics = metrics
        self._health = health
        self._addresses = {r.lower() for r in config.accept_recipients if "@" in r}
        self._domains = {r.lower().lstrip("@") for r in config.accept_recipients
                         if "@" not in r or r.startswith("@")}

    def accepts(self, address: str) -> bool:
        if not self._addresses and not self._domains:
            return True
        address = address.lower()
        return address in self._addresses or address.rpartition("@")[2] in self._domains

    def count_refusal(self, reason: str) -> None:
        self._metrics.smtp_refused.labels(reason).inc()

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if _has_control_characters(address):
            self.count_refusal("address")
            return "553 5.1.7 Control characters are not allowed in an address"
        envelope.mail_from = address  # what aiosmtpd does without this hook
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if _has_control_characters(address):  # checked first: never echoed back below
            self.count_refusal("address")
            return "553 5.1.3 Control characters are not allowed in an address"
        if not self.accepts(address):
            self.count_refusal("recipient")
            return f"550 5.1.1 <{address}>: no such recipient here (alertd is not a relay)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):  # decode_data is off: aiosmtpd gives bytes
            raw = str(raw).encode("utf-8", "surrogateescape")
        # Hashing up to max_message_bytes takes a while: off the loop, unless the mail is small.
        key = (dedupe_key(raw) if len(raw) < _KEY_ON_LOOP_BYTES
               else await asyncio.to_thread(dedupe_key, raw))
        inbound = Inbound(
            channel=Channel.SMTP, dedupe_key=key, payload=raw,
            content_type="message/rfc822",
            meta={"peer": str(session.peer[0]) if session.peer else None,
                  "helo": session.host_name, "mail_from": envelope.mail_from,
                  "rcpt_to": list(envelope.rcpt_tos)},
        )
        try:
            accepted = await self._pipeline.submit(inbound)
        except Exception as err:  # storage failed: the sender must keep the message and retry
            log.exception("smtp: could not store a message from %s", envelope.mail_from)
            self.count_refusal("storage")
            if self._health is not None:
                self._health.record_error("smtp", f"could not store a message (answered 451): "
                                                  f"{type(err).__name__}")
            return "451 4.3.0 Temporary failure storing the message; please retry later"
        return f"250 2.0.0 OK: stored as delivery {accepted.delivery_id}"


def _has_control_characters(address: str) -> bool:
    """C0/C1 controls and DEL (category Cc), or bytes that were not UTF-8 (surrogates, Cs):
    RFC 5321 4.1.2 allows neither in a mailbox, and a NUL cuts strings in C and in logs."""
    return _CONTROL_CHARACTER.search(address) is not None


class _SessionLimits:
    """Open SMTP sessions of one listener, in all and per client address."""

    def __init__(self, max_sessions: int, max_per_client: int,
                 on_refused: Callable[[str], None], refusals: LogSummary):
        self._max_sessions = max_sessions
        self._max_per_client = max_per_client
        self._on_refused = on_refused
        self._refusals = refusals  # a flood of connections must not flood the journal
        self._open: Counter[str] = Counter()

    def admit(self, client: str) -> str | None:
        """Count a new session in; or, over a cap, the 421 reply that refuses it."""
        if self._open.total() >= self._max_sessions:
            refusal = "421 4.7.0 Too many connections; try again later"
        elif self._open[client] >= self._max_per_client:
            refusal = "421 4.7.0 Too many connections from your address; try again later"
        else:
            self._open[client] += 1
            return None
        self._on_refused("sessions")
        self._refusals.note("smtp: refused a connection", refusal, logging.INFO)
        return refusal

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


class _FairReader:
    """The session's stream reader, handing the event loop back every `YIELD_READS` reads.

    `readuntil` returns at once while its buffer holds what it looks for: commands pipelined
    by the thousand (aiosmtpd reads them a line at a time) would hold the loop without this,
    as would the small reads at the start of a DATA section made of blank lines. Everything
    else is the reader's own (STARTTLS swaps `_transport` and clears `_buffer`).
    """

    YIELD_READS = 512  # ~2.5 ms of aiosmtpd's per-line work; a yield costs ~20 µs

    def __init__(self, reader: asyncio.StreamReader):
        self._inner = reader
        self._reads = 0

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        await self._count()
        return await self._inner.readuntil(separator)

    async def readexactly(self, n: int) -> bytes:
        await self._count()
        return await self._inner.readexactly(n)

    async def _count(self) -> None:
        self._reads += 1
        if self._reads % self.YIELD_READS == 0:
            await asyncio.sleep(0)

    @property
    def _transport(self) -> Any:
        return self._inner._transport  # type: ignore[attr-defined]

    @_transport.setter
    def _transport(self, transport: Any) -> None:
        self._inner._transport = transport  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _AlertdSMTP(SMTP):
    # RFC 5321 caps lines at 1000 octets, but HTML-only alert mail from real senders breaks
    # it; refusing with "500 Line too long" would lose the alert. Size is still capped by
    # data_size_limit ([smtp] max_message_bytes).
    line_length_limit = 1 << 20

    def __init__(self, *args: Any, limits: _SessionLimits, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._client: str | None = None  # set while the session is counted in `limits`
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the second call that STARTTLS makes
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
            refusal = self._limits.admit(client)
            if refusal is not None:
                # RFC 5321 3.1: a server that cannot serve may greet with 421 and close.
                # Refused before aiosmtpd starts a session: nothing more is read.
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(f"{refusal}\r\n".encode())
                transport.close()
                return
            self._client = client
        super().connection_made(transport)

    def _cb_client_connected(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        super()._cb_client_connected(reader, writer)  # type: ignore[no-untyped-call]
        self._reader = _FairReader(reader)  # type: ignore[assignment]  # duck-typed

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:  # aiosmtpd never saw this connection
            return
        if self._client is not None:
            self._limits.release(self._client)
            self._client = None
        super().connection_lost(error)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path parsing (MAIL, RCPT) with a short cut: it runs the email package's
        RFC 5322 parser and defines a typing.Protocol class on every call (~60 µs, a quarter
        of the loop's work per message); a plain path is read here with the same result."""
        plain = _PLAIN_PATH.match(arg)
        if plain is None or self.local_part_limit:
            return super()._getaddr(arg)
        rest = arg[plain.end():]
        if rest[:1] in (" ", "\t"):  # the parser drops folding white space after the path
            rest = rest.lstrip()
        if rest.startswith("("):  # and comments
            return super()._getaddr(arg)
        return plain.group(1), rest

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the message read in bulk, not a line at a time: its per-line
        loop held the event loop ~200 ms at the end of a 4 MB mail of 400,000 short lines.
        Answers, limits and the envelope are aiosmtpd's (tests/component/test_smtp_protocol.py
        compares the two) for alertd's settings: decode_data off, a handle_DATA hook."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        size_limit = self.data_size_limit or None
        # Enough to tell which limit a section broke first (`_refusal`): size, line, final ".".
        keep_bytes = size_limit + self.line_length_limit + 3 if size_limit else sys.maxsize
        try:
            section, size = await _read_data(self._reader, keep_bytes)
        except asyncio.IncompleteReadError as err:  # EOF: eof_received cancelled the session
            raise asyncio.CancelledError from err  # which _handle_client ends (as on a reset)
        status: Any = _refusal(section, size, size_limit, self.line_length_limit)
        if status is None:  # within the limits (else nothing is handed on)
            self.envelope.content = self.envelope.original_content = _unstuff(section, size)
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


async def _read_data(reader: Any, keep_bytes: int) -> tuple[bytearray, int]:
    """A DATA section as sent (dot-stuffed), up to and including the "." line that ends it:
    its first `keep_bytes` bytes and its size in bytes.

    `readuntil` finds the end in C, a buffer (up to the reader's limit) at a time. It cannot
    see an end whose first CRLF it did not read itself, which happens only where a section
    starts: on a new line, so ".\r\n" first is the end (an empty message). The start is read
    in steps that stop where the end would (never past it: what follows is the next command)
    until what was read cannot be the beginning of the end; the rest in bulk.
    """
    section, size, bulk = bytearray(), 0, False
    seen = b"\r\n"  # the last bytes read; a section starts on a new line
    while not seen.endswith(_END_OF_DATA):
        begun = next((n for n in (4, 3, 2, 1) if seen.endswith(_END_OF_DATA[:n])), 0)
        bulk = bulk or not begun
        if not bulk:
            chunk = await reader.readexactly(len(_END_OF_DATA) - begun)
        else:
            try:
                chunk = await reader.readuntil(_END_OF_DATA)
            except asyncio.LimitOverrunError as err:
                # No end in the buffer: take all but its last 4 bytes (where an end may begin)
                # or all before an end found beyond the limit, and go on.
                chunk = await reader.readexactly(err.consumed)
        size += len(chunk)
        section += chunk[:keep_bytes - len(section)]
        seen = (seen + chunk[-len(_END_OF_DATA):])[-len(_END_OF_DATA):]
    return section, size


def _refusal(section: bytearray, size: int, size_limit: int | None,
             line_limit: int) -> str | None:
    """aiosmtpd's answer to a DATA section over a limit, None within them. aiosmtpd checks
    the size (without the final ".") at the end of each line and a line's length when its
    stream limit overruns (longer than `line_limit` + 2) or else at its end, after the size;
    the first check that fails decides."""
    content_end = size - len(b".\r\n")
    too_much = size_limit is not None and content_end > size_limit
    # Where the line the size limit falls in starts (past the end: within the limit).
    crlf = section.rfind(b"\r\n", 0, size_limit) if too_much else len(section)
    much_at = crlf + 2 if crlf >= 0 else 0
    line_start = 0
    while content_end - line_start > line_limit and line_start <= much_at:
        # Jump over every line that ends within `line_limit` bytes: they are all short.
        crlf = section.rfind(b"\r\n", line_start, line_start + line_limit)
        if crlf < 0:  # the line at line_start is too long
            overran = section.find(b"\r\n", line_start, line_start + line_limit + 2) < 0
            if line_start < much_at or overran:
                return "500 Line too long (see RFC5321 4.5.3.1.6)"
            break
        line_start = crlf + 2
    return "552 Error: Too much mail data" if too_much else None


def _unstuff(section: bytearray, size: int) -> bytes:
    """The message of a section that ended well: RFC 5321 4.5.2, a line's leading "." is
    removed (aiosmtpd removes it from every line, not only from ".." lines)."""
    start = 1 if section.startswith(b".") else 0
    return bytes(memoryview(section)[start:size - len(b".\r\n")]).replace(b"\r\n.", b"\r\n")


class _Authenticator:
    """AUTH PLAIN/LOGIN against the configured users, compared in constant time."""

    def __init__(self, users: dict[str, str]):
        self._users = {name.encode(): secret.encode() for name, secret in users.items()}

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        expected = self._users.get(auth_data.login, b"")
        ok = hmac.compare_digest(auth_data.password, expected) and bool(expected)
        if not ok:
            log.warning("smtp: failed AUTH for %r from %s",
                        auth_data.login.decode(errors="replace"),
                        session.peer[0] if session.peer else "?")
        # handled=False: aiosmtpd itself answers 535 on failure (its default is handled=True).
        return AuthResult(success=ok, handled=False)


def _tls_context(config: SmtpConfig) -> ssl.SSLContext | None:
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return context


async def start_smtp_server(handler: SmtpHandler, config: SmtpConfig) -> asyncio.Server:
    """Listen on `[smtp] listen` in the running loop (aiosmtpd's Controller is for tests)."""
    tls = _tls_context(config)
    users = {u.username: u.password.get_secret_value() for u in config.users}
    if not users and not config.accept_recipients and config.listen.host not in LOOPBACK_HOSTS:
        log.warning("smtp: listening on %s for any recipient without AUTH: anyone who reaches "
                    "the port can open tickets; set [smtp] accept_recipients or users, or "
                    "firewall the port", config.listen)
    if users and tls is None and config.listen.host not in LOOPBACK_HOSTS:
        log.warning("smtp: AUTH without TLS on %s: passwords cross the network in clear",
                    config.listen)

    loop = asyncio.get_running_loop()
    limits = _SessionLimits(config.max_sessions, config.max_sessions_per_client,
                            handler.count_refusal, LogSummary(log))

    def factory() -> SMTP:
        return _AlertdSMTP(
            handler, hostname=config.hostname or None, ident="alertd ESMTP",
            data_size_limit=config.max_message_bytes, enable_SMTPUTF8=True, decode_data=False,
            tls_context=tls, require_starttls=config.require_tls,
            authenticator=_Authenticator(users) if users else None,
            auth_required=bool(users), auth_require_tls=tls is not None,
            # Without users, AUTH is not offered at all (aiosmtpd would list its mechanisms).
            auth_exclude_mechanism=None if users else ["LOGIN", "PLAIN"],
            timeout=config.timeout_s,  # the idle timeout
            loop=loop, limits=limits,
        )

    return await loop.create_server(factory, host=config.listen.host, port=config.listen.port,
                                    reuse_address=True)

"""SMTP intake: an aiosmtpd server in alertd's own event loop; 250 only after the commit.

alertd is a sink, never a relay: it accepts mail for the configured recipients (any when the
list is empty) and stores each message raw as a delivery before answering. A storage failure
answers 451 so the sending server keeps the message and retries; a retry of a message already
stored (same Message-ID, or same bytes without one) is answered 250 and stored once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from daemon.config.base import LOOPBACK_HOSTS
from daemon.config.mail_sections import SmtpConfig
from daemon.core.events import Channel
from daemon.intake.inbound import Inbound
from daemon.intake.pipeline import Pipeline
from daemon.mail.parse import dedupe_key
from daemon.metrics import ChannelHealth, Metrics

log = logging.getLogger(__name__)


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

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.accepts(address):
            self._metrics.smtp_refused.labels("recipient").inc()
            return f"550 5.1.1 <{address}>: no such recipient here (alertd is not a relay)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):  # decode_data is off: aiosmtpd gives bytes
            raw = str(raw).encode("utf-8", "surrogateescape")
        inbound = Inbound(
            channel=Channel.SMTP, dedupe_key=dedupe_key(raw), payload=raw,
            content_type="message/rfc822",
            meta={"peer": str(session.peer[0]) if session.peer else None,
                  "helo": session.host_name, "mail_from": envelope.mail_from,
                  "rcpt_to": list(envelope.rcpt_tos)},
        )
        try:
            accepted = await self._pipeline.submit(inbound)
        except Exception as err:  # storage failed: the sender must keep the message and retry
            log.exception("smtp: could not store a message from %s", envelope.mail_from)
            self._metrics.smtp_refused.labels("storage").inc()
            if self._health is not None:
                self._health.record_error("smtp", f"could not store a message (answered 451): "
                                                  f"{type(err).__name__}")
            return "451 4.3.0 Temporary failure storing the message; please retry later"
        return f"250 2.0.0 OK: stored as delivery {accepted.delivery_id}"


class _AlertdSMTP(SMTP):
    # RFC 5321 caps lines at 1000 octets, but HTML-only alert mail from real senders breaks
    # it; refusing with "500 Line too long" would lose the alert. Size is still capped by
    # data_size_limit ([smtp] max_message_bytes).
    line_length_limit = 1 << 20


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

    def factory() -> SMTP:
        return _AlertdSMTP(
            handler,
            hostname=config.hostname or None,
            data_size_limit=config.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls,
            require_starttls=config.require_tls,
            authenticator=_Authenticator(users) if users else None,
            auth_required=bool(users),
            auth_require_tls=tls is not None,
            # Without users, AUTH is not offered at all (aiosmtpd would list its mechanisms).
            auth_exclude_mechanism=None if users else ["LOGIN", "PLAIN"],
            timeout=config.timeout_s,
            ident="alertd ESMTP",
            loop=loop,
        )

    return await loop.create_server(factory, host=config.listen.host, port=config.listen.port,
                                    reuse_address=True)

"""SMTP intake against hostile clients, over real sockets on loopback: control characters in
addresses, too many sessions, idle sessions, and a mail built to make parsing slow."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from daemon.config import Config
from daemon.mail.parse import MAX_HEADER_CHARS, ParsedMessage, parse_message
from daemon.store.database import Database
from daemon.store.models import Delivery, Ticket
from tests.component.test_smtp import Smtp, alert_mail, start

CAPS = """
    [api]
    tokens = ["test-token-0123456789"]
    [smtp]
    listen = "127.0.0.1:0"
    max_message_bytes = 2000000
    max_sessions = 3
    max_sessions_per_client = 2
    """


@asynccontextmanager
async def listening(make_config: Callable[..., Config], db: Database, db_url: str,
                    toml: str = CAPS) -> AsyncIterator[Smtp]:
    instance, server = await start(make_config(toml, db_url=db_url), db)
    try:
        yield instance
    finally:
        server.close()
        await instance.worker.drain(5)


@pytest.fixture
async def smtp(make_config: Callable[..., Config], db: Database, db_url: str
               ) -> AsyncIterator[Smtp]:
    async with listening(make_config, db, db_url) as instance:
        yield instance


class Client:
    """One raw SMTP connection: exact replies, no client library smoothing them over."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def reply(self) -> bytes:
        """One reply, multi-line replies joined (the last line has a space after its code)."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def closed_by_server(self) -> bool:
        """Wait for the server to close the connection (EOF), reading what is left."""
        await asyncio.wait_for(self.reader.read(), 10)
        return self.reader.at_eof()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@asynccontextmanager
async def clients(port: int) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Open connections from chosen loopback addresses (127.0.0.x); all closed at the end."""
    opened: list[Client] = []

    async def connect(source: str = "127.0.0.1") -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        opened.append(Client(reader, writer))
        return opened[-1]

    try:
        yield connect
    finally:
        for client in opened:
            await client.close()


async def greeted(client: Client) -> bool:
    return (await client.reply()).startswith(b"220 ")


# --- control characters in addresses ------------------------------------------------------


@pytest.mark.parametrize("control", [b"\x00", b"\x01", b"\x1b", b"\x7f", b"\xc2\x85", b"\xff"],
                         ids=["NUL", "SOH", "ESC", "DEL", "C1-NEL", "not-UTF-8"])
async def test_rcpt_with_a_control_character_gets_553_and_nothing_is_stored(
        smtp: Smtp, control: bytes) -> None:
    async with clients(smtp.port) as connect:
        client = await connect()
        assert await greeted(client)
        assert (await client.command(b"EHLO sender.example")).startswith(b"250-")
        assert await client.command(b"MAIL FROM:<rmm@example-msp.com>") == b"250 OK\r\n"
        assert await client.command(b"RCPT TO:<alerts" + control + b"@example-msp.com>") == (
            b"553 5.1.3 Control characters are not allowed in an address\r\n")
        assert await client.command(b"DATA") == b"503 Error: need RCPT command\r\n"
        assert await client.command(b"QUIT") == b"221 Bye\r\n"
    await smtp.worker.run_until_idle()
    assert (await smtp.count(Delivery), await smtp.count(Ticket)) == (0, 0)
    assert smtp.ctx.metrics.smtp_refused.labels("address")._value.get() == 1


async def test_mail_from_with_a_nul_gets_553(smtp: Smtp) -> None:
    async with clients(smtp.port) as connect:
        client = await connect()
        assert await greeted(client)
        assert (await client.command(b"EHLO sender.example")).startswith(b"250-")
        assert await client.command(b"MAIL FROM:<rmm\x00@example-msp.com>") == (
            b"553 5.1.7 Control characters are not allowed in an address\r\n")
        assert await client.command(b"RCPT TO:<alerts@example-msp.com>") == (
            b"503 Error: need MAIL command\r\n")
    assert await smtp.count(Delivery) == 0


async def test_non_ascii_is_not_a_control_character(smtp: Smtp) -> None:
    async with clients(smtp.port) as connect:
        client = await connect()
        assert await greeted(client)
        assert (await client.command(b"EHLO sender.example")).startswith(b"250-")
        assert await client.command(b"MAIL FROM:<rmm@example-msp.com> SMTPUTF8") == (
            b"250 OK\r\n")
        assert await client.command("RCPT TO:<störung@example-msp.com>".encode()) == (
            b"250 2.1.5 OK\r\n")


# --- session caps and the idle timeout ------------------------------------------------------


async def test_sessions_over_the_caps_get_421_and_are_closed(
        smtp: Smtp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.mail.smtp")
    async with clients(smtp.port) as connect:
        first, second = await connect(), await connect()
        assert await greeted(first) and await greeted(second)
        third = await connect()
        assert await third.reply() == (
            b"421 4.7.0 Too many connections from your address; try again later\r\n")
        assert await third.closed_by_server()
        other = await connect("127.0.0.2")  # another address still gets the last slot
        assert await greeted(other)
        over_total = await connect("127.0.0.3")
        assert await over_total.reply() == b"421 4.7.0 Too many connections; try again later\r\n"
        assert await over_total.closed_by_server()

        # A session that ends gives its slot back.
        assert await first.command(b"QUIT") == b"221 Bye\r\n"
        assert await first.closed_by_server()
        again = await connect()
        assert await greeted(again)
        assert await again.command(b"NOOP") == b"250 OK\r\n"
        for _ in range(20):  # a flood of refused connections is one line per cause
            flood = await connect()
            assert (await flood.reply()).startswith(b"421 ")
    assert smtp.ctx.metrics.smtp_refused.labels("sessions")._value.get() == 22
    assert [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()
            ] == ["smtp: refused a connection: 421 4.7.0 Too many connections from your "
                  "address; try again later",
                  "smtp: refused a connection: 421 4.7.0 Too many connections; try again later"]


async def test_an_idle_session_is_closed_and_its_slot_freed(
        make_config: Callable[..., Config], db: Database, db_url: str) -> None:
    toml = CAPS.replace("max_sessions_per_client = 2", "max_sessions_per_client = 1"
                        ) + "timeout_s = 0.2\n"
    async with listening(make_config, db, db_url, toml) as smtp, clients(smtp.port) as connect:
        idle = await connect()
        assert await greeted(idle)
        assert await idle.closed_by_server()  # it sent nothing after the greeting
        after = await connect()
        assert await greeted(after), "the idle session's slot was given back"


def test_the_defaults_of_the_limits(make_config: Callable[..., Config]) -> None:
    smtp = make_config().smtp
    assert (smtp.max_sessions, smtp.max_sessions_per_client, smtp.timeout_s) == (100, 10, 60.0)


# --- hostile content -------------------------------------------------------------------------

HOSTILE_SUBJECT = "RE" + " " * 1_000_000 + "x"  # the prefix regex once took minutes on this


@pytest.fixture
def parse_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event,
                                                                    threading.Event,
                                                                    list[int]]]:
    """Make the email interpreter's parse wait for `release`; `entered` is set when it is
    inside, and the parsing thread's id is recorded."""
    entered, release, threads = threading.Event(), threading.Event(), []

    def gated(raw: bytes) -> ParsedMessage:
        threads.append(threading.get_ident())
        entered.set()
        release.wait(10)
        return parse_message(raw)

    monkeypatch.setattr("daemon.rules.email_interpreter.parse_message", gated)
    yield entered, release, threads
    release.set()


async def test_a_mail_being_parsed_does_not_block_the_listener(
        smtp: Smtp, parse_gate: tuple[threading.Event, threading.Event, list[int]]) -> None:
    entered, release, threads = parse_gate
    mail = alert_mail(HOSTILE_SUBJECT, "<hostile@x>")
    assert await smtp.asend(mail) == {}
    processing = asyncio.create_task(smtp.worker.run_until_idle())
    assert await asyncio.to_thread(entered.wait, 10)
    # The parse is stuck in its thread: the event loop still answers a new session.
    async with clients(smtp.port) as connect:
        client = await connect()
        assert await greeted(client)
        assert await client.command(b"NOOP") == b"250 OK\r\n"
    release.set()
    await processing
    await smtp.worker.run_until_idle()
    assert threading.get_ident() not in threads, "mail is parsed off the event loop"
    delivery = await smtp.ctx.queries.delivery(1)
    assert delivery is not None
    assert (delivery["status"], delivery["error"]) == ("ignored", "no rule matched")
    assert delivery["trace"]["message"]["subject"] == "RE"  # cut, then trailing blanks folded
    assert delivery["trace"]["message"]["defects"] == [
        f"1 header field(s) cut to their first {MAX_HEADER_CHARS} characters"]

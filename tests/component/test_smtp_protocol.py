"""alertd's short cuts through aiosmtpd against aiosmtpd itself: DATA read in bulk
(`_AlertdSMTP.smtp_DATA`) gives the same answers and the same message as aiosmtpd's
line-by-line DATA for every section, whatever TCP writes it arrives in (both on loopback);
plain MAIL/RCPT paths read the same; then big messages through alertd itself."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from daemon.config import Config
from daemon.log_summary import LogSummary
from daemon.mail.smtp import (
    _CONTROL_CHARACTER,
    _PLAIN_PATH,
    _AlertdSMTP,
    _has_control_characters,
    _SessionLimits,
)
from daemon.store.database import Database
from daemon.store.models import Delivery
from tests.component.test_smtp import Smtp, alert_mail
from tests.component.test_smtp_hostile import Client, clients, greeted, listening

# Small limits, so that sections of a few hundred bytes break them and end the bulk reader's
# chunks (its stream limit is the line limit) at every kind of place.
LINE_LIMIT = 64
SIZE_LIMIT = 300
END = b"\r\n.\r\n"


class Recorder:
    def __init__(self) -> None:
        self.envelopes: list[tuple[Any, Any]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append((envelope.content, envelope.original_content))
        return "250 OK"


@asynccontextmanager
async def serving(protocol: Callable[[Recorder], SMTP], recorder: Recorder
                  ) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: protocol(recorder), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def smtp(make_config: Callable[..., Config], db: Database, db_url: str
               ) -> AsyncIterator[Smtp]:
    """alertd's listener, max_message_bytes = 2,000,000."""
    async with listening(make_config, db, db_url) as instance:
        yield instance


def stock(line_limit: int, size_limit: int) -> Callable[[Recorder], SMTP]:
    """aiosmtpd itself, its line limit (and stream limit) set as alertd sets its own."""
    protocol = type("Stock", (SMTP,), {"line_length_limit": line_limit})
    return lambda recorder: protocol(recorder, data_size_limit=size_limit)


def bulk(line_limit: int, size_limit: int) -> Callable[[Recorder], SMTP]:
    """alertd's protocol with the same limits."""
    protocol = type("Bulk", (_AlertdSMTP,), {"line_length_limit": line_limit})
    limits = _SessionLimits(10, 10, lambda _reason: None, LogSummary(logging.getLogger(__name__)))
    return lambda recorder: protocol(recorder, data_size_limit=size_limit, limits=limits)


async def answers(protocol: Callable[[Recorder], SMTP], sections: list[tuple[bytes, list[int]]]
                  ) -> list[tuple[bytes, bytes, Any]]:
    """For each section, sent in writes cut at the given offsets with a NOOP right behind it
    (never to be read as part of the message): the answer to DATA, to the NOOP, and the
    envelope's (content, original_content) when it was accepted."""
    recorder = Recorder()
    results = []
    async with serving(protocol, recorder) as port, clients(port) as connect:
        client = await connect()
        assert await greeted(client)
        assert (await client.command(b"HELO sender.example")).startswith(b"250 ")
        for section, cuts in sections:
            assert (await client.command(b"MAIL FROM:<a@example.com>")).startswith(b"250")
            assert (await client.command(b"RCPT TO:<b@example.com>")).startswith(b"250")
            assert (await client.command(b"DATA")).startswith(b"354")
            wire = section + b"NOOP\r\n"
            for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
                client.writer.write(wire[start:end])
                await client.writer.drain()
                await asyncio.sleep(0)  # the server reads what has come so far
            before = len(recorder.envelopes)
            reply, noop = await client.reply(), await client.reply()
            envelope = recorder.envelopes[-1] if len(recorder.envelopes) > before else None
            results.append((reply, noop, envelope))
    return results


def section_of(body: bytes) -> bytes | None:
    """`body` made a DATA section (a CRLF and the "." line after it), or None when a "."
    line inside it would end the section early."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    section = body + b".\r\n"
    return section if (b"\r\n" + section).find(END) == len(section) - 3 else None


HAND_PICKED = [
    b".\r\n",  # an empty message
    b"\r\n.\r\n",  # one empty line
    b"a\r\n.\r\n",
    b"..\r\n.\r\n",  # a line of one "." (stuffed)
    b".a\r\n..b\r\n...\r\n.\r\n",  # every line's first "." goes (aiosmtpd), not only ".."'s
    b"\r\n\r\n\r\n\r\n.\r\n",
    b"\r\r\n.\r\n",
    b"\r.\r\n.\r\r\n.\r\n",
    b"a\n.\n.\r.\r\n\r\n.\r\n",  # a bare LF or CR ends no line
    (b"s" * 40 + b"\r\n") * 7 + b".\r\n",  # 294 bytes
    (b"s" * 40 + b"\r\n") * 8 + b".\r\n",  # 336 bytes: 552
    # Lines around the line limit (64 with its CRLF; aiosmtpd's stream limit overruns past
    # 66), alone, and as the line that crosses the size limit (after 270 or 290 bytes).
    *(b"y" * n + b"\r\n.\r\n" for n in range(LINE_LIMIT - 4, LINE_LIMIT + 4)),
    *((b"s" * 8 + b"\r\n") * 27 + b"y" * n + b"\r\n.\r\n"
      for n in range(LINE_LIMIT - 4, LINE_LIMIT + 4)),
    *((b"s" * 8 + b"\r\n") * 29 + b"y" * n + b"\r\n.\r\n"
      for n in range(LINE_LIMIT - 4, LINE_LIMIT + 4)),
    b"y" * 100 + b"\r\n" + (b"s" * 8 + b"\r\n") * 40 + b".\r\n",  # too long, then too much
    (b"s" * 8 + b"\r\n") * 40 + b"y" * 100 + b"\r\n.\r\n",  # too much, then too long
    *(b"y" * n + b"\r\n" + (b"s" * 8 + b"\r\n") * 40 + b".\r\n"
      for n in range(LINE_LIMIT - 4, LINE_LIMIT + 4)),  # the first line crosses size 40
]


def random_sections(count: int, seed: int) -> list[tuple[bytes, list[int]]]:
    rng = random.Random(seed)
    tokens = [b"a", b"b" * 30, b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"c" * 70]
    sections: list[tuple[bytes, list[int]]] = []
    while len(sections) < count:
        section = section_of(b"".join(rng.choices(tokens, k=rng.randrange(0, 30))))
        if section is not None:
            cuts = sorted(rng.sample(range(1, len(section) + 6), k=min(len(section), 4)))
            sections.append((section, cuts))
    return sections


# alertd's size limit may be below its line limit (1 KiB and 1 MiB at the least).
@pytest.mark.parametrize("size_limit", [SIZE_LIMIT, 40])
async def test_bulk_data_answers_and_stores_what_aiosmtpd_does(size_limit: int) -> None:
    sections = [(section, cuts) for section in HAND_PICKED
                for cuts in ([], list(range(1, len(section) + 6)))]  # whole, byte by byte
    sections += random_sections(300, seed=15)
    expected = await answers(stock(LINE_LIMIT, size_limit), sections)
    got = await answers(bulk(LINE_LIMIT, size_limit), sections)
    for (section, _), want, have in zip(sections, expected, got, strict=True):
        assert have == want, section
    replies = {reply[:3] for reply, _, _ in expected}
    assert replies == {b"250", b"500", b"552"}, "the sections reach every answer"
    assert {noop for _, noop, _ in expected} == {b"250 OK\r\n"}


def test_the_hand_picked_sections_are_sections() -> None:
    assert all(section_of(s[:-3]) == s for s in HAND_PICKED if s != b".\r\n")


async def test_a_big_message_across_chunks_is_stored_unstuffed(smtp: Smtp) -> None:
    """1.5 MB of short lines, every tenth starting with "." (smtplib doubles it on the wire):
    stored byte for byte, read in chunks of the 1 MiB stream limit."""
    body = "".join(f".{n}\r\n" if n % 10 == 0 else f"line {n}\r\n" for n in range(140_000))
    mail = alert_mail("big", "<big@x>", body=body)
    on_the_wire = len(mail) + mail.count(b"\r\n.")
    assert 1_500_000 < on_the_wire < 2_000_000  # max_message_bytes
    assert await smtp.asend(mail) == {}
    stored = await smtp.ctx.db.read(lambda s: s.scalar(select(Delivery.payload)))
    assert stored == mail


async def test_after_552_the_session_goes_on(smtp: Smtp) -> None:
    async with clients(smtp.port) as connect:
        client: Client = await connect()
        assert await greeted(client)
        assert (await client.command(b"EHLO sender.example")).startswith(b"250-")
        for size, answer in ((2_100_000, b"552 Error: Too much mail data\r\n"),
                             (1_000, b"250 2.0.0 OK: stored as delivery 1\r\n")):
            assert await client.command(b"MAIL FROM:<rmm@example-msp.com>") == b"250 OK\r\n"
            assert await client.command(b"RCPT TO:<alerts@example-msp.com>") == (
                b"250 2.1.5 OK\r\n")
            assert (await client.command(b"DATA")).startswith(b"354 ")
            mail = alert_mail(f"{size}", f"<{size}@x>", body=("x" * 78 + "\r\n") * (size // 80))
            assert await client.command(mail + b".") == answer
        assert await client.command(b"QUIT") == b"221 Bye\r\n"
    assert await smtp.count(Delivery) == 1


PATHS = [
    "", "<>", "<a@b>", "<a@b.c>", "<rmm-alerts@example-msp.com> SIZE=1023 BODY=8BITMIME",
    "<a@b.c>  (a comment) SIZE=1", "<a@b.c>\x0c SIZE=1", "<a@b.c> \x0c(x)", "<a@b.c>x",
    "<a@b.c>\u3000 x", " <a@b.c>", "a@b.c", '<"a b"@c.d>', "<a..b@c>", "<.a@c>", "<a.@c>",
    "<a@b..c>", "<a@b.>", "<a@-b>", "<a@[192.0.2.1]>", "<a@b", "<é@b.c>", "<a@é.c>",
    "<@relay.example:a@b.c>", "<a(c)@b.c>", "<a@b.c>\t\tSMTPUTF8", "<A!#$%&'*+/=?^_`{|}~-@B>",
]


def random_paths(count: int, seed: int) -> list[str]:
    """Paths near the plain form: a character that is not atext anywhere, or none."""
    rng = random.Random(seed)
    atext = ["a", "B", "0", "-", "!", "~", "."]
    odd = ["é", '"', " ", "(", ")", "[", "]", "\\", ",", "@", "<", ">", "\x0c", ""]
    tail = ["", " ", "  ", "\t", "\x0c", " (c)", "x", " SIZE=10", "\u3000", ">", "(", " ("]

    def part() -> str:
        text = "".join(rng.choices(atext, k=rng.randrange(1, 6)))
        spot = rng.randrange(len(text) + 1)
        return text[:spot] + rng.choice(odd) * (rng.random() < 0.3) + text[spot:]

    return [rng.choice(["<", "<", "<", "", " <"]) + part() + "@" + part()
            + rng.choice([">", ">", ">", ""]) + "".join(rng.choices(tail, k=rng.randrange(3)))
            for _ in range(count)]


async def test_plain_paths_read_as_aiosmtpd_reads_them() -> None:
    recorder = Recorder()
    theirs, ours = stock(LINE_LIMIT, SIZE_LIMIT)(recorder), bulk(LINE_LIMIT, SIZE_LIMIT)(recorder)

    def outcome(server: SMTP, arg: str) -> object:
        try:
            return server._getaddr(arg)
        except Exception as err:  # the same failure is the same behaviour
            return type(err)

    paths = PATHS + random_paths(3000, seed=15)
    assert [outcome(ours, p) for p in paths] == [outcome(theirs, p) for p in paths]
    assert sum(_PLAIN_PATH.match(p) is not None for p in paths) > 300, "the short cut is taken"


def test_control_characters_are_the_unicode_categories_cc_and_cs() -> None:
    controls = {chr(c) for c in range(sys.maxunicode + 1)
                if unicodedata.category(chr(c)) in ("Cc", "Cs")}
    assert {chr(c) for c in range(sys.maxunicode + 1)
            if _CONTROL_CHARACTER.match(chr(c))} == controls
    assert _has_control_characters("alerts\udcff@example.com")
    assert not _has_control_characters("störung@example.com")

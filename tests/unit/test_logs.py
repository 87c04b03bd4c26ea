"""The daemon's log under journald (issue 18, item 1): `<N>` priorities when stdout is the
journal's stream, a traceback as one entry through the native socket, and the JSON format's
fields."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from daemon.service.logs import (
    JournalStreamHandler,
    is_journal_stream,
    make_handler,
    syslog_priority,
)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[IO[str]]:
    with open(tmp_path / "stdout", "w+", encoding="utf-8") as stream:
        yield stream


def journal_env(stream: IO[str]) -> dict[str, str]:
    found = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"}


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for /run/systemd/journal/socket."""
    path = str(tmp_path / "journal.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def logger_with(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test.logs.{id(handler)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def written(stream: IO[str]) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def parse_native(datagram: bytes) -> dict[str, str]:
    """The journal's native protocol: `KEY=value\\n`, or `KEY\\n<le64 length><value>\\n`."""
    fields: dict[str, str] = {}
    while datagram:
        line, _, rest = datagram.partition(b"\n")
        if b"=" in line:
            key, _, text = line.partition(b"=")
            fields[key.decode()] = text.decode()
            datagram = rest
        else:
            (length,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8:8 + length].decode()
            assert rest[8 + length:9 + length] == b"\n"
            datagram = rest[9 + length:]
    return fields


def test_priorities_follow_syslog() -> None:
    assert [syslog_priority(level) for level in (
        logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
    ] == [7, 6, 4, 3, 2]


def test_the_journal_stream_is_told_by_device_and_inode(out: IO[str], tmp_path: Path) -> None:
    assert is_journal_stream(out, journal_env(out))
    with open(tmp_path / "other", "w", encoding="utf-8") as other:
        assert not is_journal_stream(other, journal_env(out))  # redirected elsewhere
    assert not is_journal_stream(out, {})
    assert not is_journal_stream(out, {"JOURNAL_STREAM": "garbage"})


def test_each_line_on_the_journal_starts_with_its_priority(out: IO[str]) -> None:
    handler = make_handler("text", out, journal_env(out))
    assert isinstance(handler, JournalStreamHandler)
    log = logger_with(handler)
    log.info("delivery 1 accepted")
    log.warning("imap acme: reconnecting")
    log.error("datto: 403")
    log.debug("details")
    assert written(out) == [f"<6>INFO {log.name}: delivery 1 accepted",
                            f"<4>WARNING {log.name}: imap acme: reconnecting",
                            f"<3>ERROR {log.name}: datto: 403",
                            f"<7>DEBUG {log.name}: details"]


def test_off_the_journal_lines_have_no_prefix(out: IO[str]) -> None:
    log = logger_with(make_handler("text", out, {}))
    log.warning("plain")
    [line] = written(out)
    assert line.endswith("plain") and not line.startswith("<")


def test_a_traceback_is_one_journal_entry(out: IO[str],
                                          journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    log = logger_with(make_handler("text", out, journal_env(out), journal_socket=path))
    log.info("before")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("delivery %s processing error", 7,
                      extra={"delivery_id": 7, "channel": "smtp", "ticket_id": None})
    entry = parse_native(sock.recv(65536))
    assert entry["PRIORITY"] == "3" and entry["SYSLOG_IDENTIFIER"] == "alertd"
    assert entry["MESSAGE"].startswith("ERROR ")
    assert "delivery 7 processing error\nTraceback" in entry["MESSAGE"]
    assert entry["MESSAGE"].rstrip().endswith("RuntimeError: boom")
    assert (entry["DELIVERY_ID"], entry["CHANNEL"]) == ("7", "smtp")
    assert "TICKET_ID" not in entry  # not known for this line
    assert written(out) == [f"<6>INFO {log.name}: before"]  # nothing of it on the stream


def test_without_the_journal_socket_a_traceback_is_prefixed_line_by_line(
        out: IO[str], tmp_path: Path) -> None:
    log = logger_with(make_handler("text", out, journal_env(out),
                                   journal_socket=str(tmp_path / "absent.sock")))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = written(out)
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>RuntimeError: boom"


def test_json_lines_carry_the_fields_and_a_priority_on_the_journal(out: IO[str]) -> None:
    log = logger_with(make_handler("json", out, journal_env(out)))
    log.info("delivery 3 channel=webhook alert 5", extra={
        "delivery_id": 3, "alert_id": 5, "ticket_id": 9, "source": "datto",
        "channel": "webhook", "rule": None})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("oops", extra={"delivery_id": 4})
    first, second = written(out)
    assert first.startswith("<6>{") and second.startswith("<3>{")
    entry = json.loads(first[3:])
    assert {key: entry[key] for key in ("delivery_id", "alert_id", "ticket_id", "source",
                                        "channel")} == {
        "delivery_id": 3, "alert_id": 5, "ticket_id": 9, "source": "datto",
        "channel": "webhook"}
    assert "rule" not in entry  # not known
    failed = json.loads(second[3:])
    assert failed["delivery_id"] == 4 and "ValueError: bad" in failed["exception"]
